"""ASHA: Tune's asynchronous successive halving, stopping weak trials at epoch rungs, refilled on resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from .. import constants as C
from .kinds import PriorMetrics, SchedulerKind


class AshaScheduler(SchedulerKind):
    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        """Tune's ``ASHAScheduler`` deciding on the job's metric at epoch rungs.

        ``prior`` ({trial id: [(epoch, metric), ...]}, from an earlier driver of the same run) is
        replayed into the rungs through the scheduler's own ``on_trial_add`` and ``on_trial_result``:
        Tune saves no scheduler state, and without it a resumed sweep would judge its trials
        against empty rungs. The ``ended`` trials, which this driver never runs, are replayed now;
        the others as Tune adds each. A trial the replay would cut at a rung (it may have reached
        the rung after the old driver's last look) is stopped at its first result.
        """
        from ray.tune.schedulers import ASHAScheduler, TrialScheduler

        spec = self.spec
        history = dict(prior or {})
        cut_by_replay: set[str] = set()

        class ResumableASHA(ASHAScheduler):
            def on_trial_add(self, tune_controller, trial):
                super().on_trial_add(tune_controller, trial)
                for epoch, value in history.pop(trial.trial_id, ()):
                    if super().on_trial_result(tune_controller, trial, {C.EPOCH: epoch, spec.metric: value}) == TrialScheduler.STOP:
                        cut_by_replay.add(trial.trial_id)

            def on_trial_result(self, tune_controller, trial, result):
                action = super().on_trial_result(tune_controller, trial, result)
                action = TrialScheduler.STOP if trial.trial_id in cut_by_replay else action
                if action == TrialScheduler.STOP:
                    self.stopped.add(trial.trial_id)
                return action

        scheduler = ResumableASHA(
            time_attr=C.EPOCH,
            metric=spec.metric,
            mode=spec.mode,
            max_t=spec.budget.max_epochs,
            grace_period=spec.asha.grace_period_epochs,
            reduction_factor=spec.asha.reduction_factor,
            brackets=spec.asha.brackets,
        )
        scheduler.stopped = set()  # trial ids this driver's rungs stopped: what "stopped early" counts
        for trial_id in [t for t in history if t in set(ended)]:
            replayed = _Replayed(trial_id)
            scheduler.on_trial_add(None, replayed)
            ASHAScheduler.on_trial_remove(scheduler, None, replayed)
        return scheduler


@dataclass(frozen=True)
class _Replayed:
    """An ended trial of an earlier driver, as the scheduler's rungs know a trial: by its id."""

    trial_id: str
