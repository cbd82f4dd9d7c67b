"""ASHA: Tune's asynchronous successive halving, stopping weak trials at epoch rungs, refilled on resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from .. import constants as C
from .kinds import PriorMetrics, SchedulerKind


class AshaScheduler(SchedulerKind):
    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        """Tune's ``ASHAScheduler`` deciding on the job's metric at epoch rungs, refilled from ``prior`` (``replaying``)."""
        from ray.tune.schedulers import ASHAScheduler

        spec = self.spec
        scheduler = replaying(ASHAScheduler, spec.metric, prior)(
            time_attr=C.EPOCH,
            metric=spec.metric,
            mode=spec.mode,
            max_t=spec.budget.max_epochs,
            grace_period=spec.asha.grace_period_epochs,
            reduction_factor=spec.asha.reduction_factor,
            brackets=spec.asha.brackets,
        )
        return replay_ended(scheduler, ended)


def replaying(base: type, metric: str, prior: Optional[PriorMetrics]) -> type:
    """``base`` (a Tune scheduler with rungs) that replays ``prior`` into its rungs.

    ``prior`` ({trial id: [(epoch, metric), ...]}, from an earlier driver of the same run) is
    replayed through the scheduler's own ``on_trial_add`` and ``on_trial_result``: Tune saves no
    scheduler state, and without it a resumed sweep would judge its trials against empty rungs.
    A trial's history is replayed when Tune adds it, and the ended trials, which this driver
    never runs, by ``replay_ended``. A trial the replay would cut at a rung (it may have reached
    the rung after the old driver's last look) is stopped at its first result. The scheduler's
    ``stopped`` holds the ids this driver's rungs stopped: what "stopped early" counts.
    """
    from ray.tune.schedulers import TrialScheduler

    history = dict(prior or {})
    cut_by_replay: set[str] = set()

    class Replaying(base):
        stopped: set[str]
        replay_history = history

        def on_trial_add(self, tune_controller, trial):
            super().on_trial_add(tune_controller, trial)
            for epoch, value in history.pop(trial.trial_id, ()):
                result = {C.EPOCH: epoch, **(value if isinstance(value, Mapping) else {metric: value})}
                if super().on_trial_result(tune_controller, trial, result) == TrialScheduler.STOP:
                    cut_by_replay.add(trial.trial_id)

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            action = TrialScheduler.STOP if trial.trial_id in cut_by_replay else action
            if action == TrialScheduler.STOP:
                self.stopped.add(trial.trial_id)
            return action

    Replaying.__name__ = Replaying.__qualname__ = f"Resumable{base.__name__}"
    return Replaying


def replay_ended(scheduler: Any, ended: Iterable[str]) -> Any:
    """``scheduler`` (a ``replaying`` class's) with the ``ended`` trials' history replayed into its rungs now."""
    scheduler.stopped = set()
    history, ended = scheduler.replay_history, set(ended)
    for trial_id in [t for t in history if t in ended]:
        replayed = _Replayed(trial_id)
        scheduler.on_trial_add(None, replayed)
        # the base's removal: it forgets the trial's bookkeeping, the rungs keep its values
        super(type(scheduler), scheduler).on_trial_remove(None, replayed)
    return scheduler


@dataclass(frozen=True)
class _Replayed:
    """An ended trial of an earlier driver, as the scheduler's rungs know a trial: by its id."""

    trial_id: str
