"""Successive halving with promotion: trials pause at each rung and resume from their checkpoint when promoted.

ASHA as Li et al. (MLSys 2020, Algorithm 2) state it, where Tune's ``ASHAScheduler`` stops
instead: a trial that reaches a rung is recorded there and paused, and a free slot resumes the
best paused trial among the top ``1/reduction_factor`` of its rung (the highest rung first),
else starts a new trial. A trial that is among those top trials as it arrives goes on in place,
without the pause. A paused trial keeps its Ray Train checkpoints and its kept worker group goes
back to the pool; resumed, it is the same trial, and Ray Train goes on from its latest
checkpoint. With ``asha.brackets`` above 1 the trials are dealt to Hyperband's brackets in turn,
bracket ``s`` with its first rung at ``grace_period_epochs * reduction_factor**s``.

Pausing needs the sweep's concurrency to count running trials only: a paused trial holds no
slot. Tune's searchers count every trial they handed out until it completes, so the searcher is
built with room for every trial and ``SlotLimit`` (the search Tune runs) holds the concurrency,
drawing no new trial while a promotion waits. Once no trial runs, nothing is left to draw and no
paused trial can be promoted, the paused trials are stopped where they are.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Iterable, Mapping, Optional

from .. import constants as C
from .kinds import PriorMetrics, SchedulerKind


def bracket_levels(grace_period_epochs: int, reduction_factor: float, max_epochs: int, brackets: int) -> list[list[int]]:
    """Each bracket's rung epochs, ascending, ``max_epochs`` last: bracket ``s`` starts at
    ``grace_period_epochs * reduction_factor**s``; the first bracket whose first rung would reach
    ``max_epochs`` runs its trials to it unjudged, as Hyperband's last bracket does, and none comes after it."""
    out = []
    for s in range(brackets):
        first = grace_period_epochs * reduction_factor**s
        levels = sorted({int(round(first * reduction_factor**k)) for k in range(64) if round(first * reduction_factor**k) < max_epochs})
        out.append(levels + [max_epochs])
        if not levels:
            break
    return out


class PromotionRungs:
    """Promotion ASHA's decisions, with no Ray. ``arrive`` a trial's result: ``continue`` or
    ``pause``; ``next_promotion`` names the paused trial a free slot resumes. Values are compared
    as given in ``mode`` (``max``: higher is better)."""

    def __init__(self, levels: list[list[int]], reduction_factor: float, mode: str):
        self.levels, self.reduction_factor, self.sign = levels, reduction_factor, 1.0 if mode == "max" else -1.0
        self.recorded: list[list[dict[str, float]]] = [[{} for _ in b] for b in levels]
        self.promoted: list[list[set[str]]] = [[set() for _ in b] for b in levels]
        self.bracket: dict[str, int] = {}
        self.paused: dict[str, tuple[int, int]] = {}  # trial -> (bracket, rung) it waits at
        self._deal = itertools.cycle(range(len(levels)))

    def add(self, trial_id: str) -> None:
        self.bracket.setdefault(trial_id, next(self._deal))

    def arrive(self, trial_id: str, epoch: int, value: float) -> str:
        """Record ``value`` if ``epoch`` is a rung of the trial's bracket it has not reached before;
        ``continue`` if it may train on now, ``pause`` if it waits for a promotion."""
        self.add(trial_id)
        self.paused.pop(trial_id, None)  # a result from a paused trial: a driver resumed it
        b = self.bracket[trial_id]
        levels = self.levels[b]
        rung = next((i for i in reversed(range(len(levels))) if epoch >= levels[i] and trial_id not in self.recorded[b][i]), None)
        if rung is None or rung == len(levels) - 1:
            return "continue"
        self.recorded[b][rung][trial_id] = self.sign * value if math.isfinite(value) else -math.inf
        if trial_id in self._promotable(b, rung):
            self.promoted[b][rung].add(trial_id)
            return "continue"
        self.paused[trial_id] = (b, rung)
        return "pause"

    def _promotable(self, b: int, rung: int) -> list[str]:
        """The trials of rung ``rung`` of bracket ``b`` among its top ``1/reduction_factor``, not yet promoted, best first."""
        recorded = self.recorded[b][rung]
        top = sorted(recorded, key=lambda t: -recorded[t])[: int(len(recorded) / self.reduction_factor)]
        return [t for t in top if t not in self.promoted[b][rung]]

    def next_promotion(self, ready: Callable[[str], bool] = lambda t: True) -> Optional[str]:
        """The paused trial (for which ``ready``) a free slot resumes, marked promoted; the highest rung's first."""
        best = None
        for t, (b, rung) in self.paused.items():
            if ready(t) and t in self._promotable(b, rung):
                key = (self.levels[b][rung], self.recorded[b][rung][t])
                best = (key, t) if best is None or key > best[0] else best
        if best is None:
            return None
        t = best[1]
        b, rung = self.paused.pop(t)
        self.promoted[b][rung].add(t)
        return t

    def can_promote(self, ready: Callable[[str], bool] = lambda t: True) -> bool:
        return any(ready(t) and t in self._promotable(b, rung) for t, (b, rung) in self.paused.items())

    def forget(self, trial_id: str) -> None:
        """The trial ended: it waits for nothing (its recorded values stay, as Tune's ASHA keeps them)."""
        self.paused.pop(trial_id, None)


class PromoteScheduler(SchedulerKind):
    holds_limit = True

    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        """A Tune scheduler over ``PromotionRungs`` on the job's metric and ASHA's rungs, refilled
        from ``prior``: an ended trial's values go into the rungs now, an unfinished one's as Tune
        adds it, which then runs on to its next rung (it held a slot when its driver ended)."""
        from ray.tune.experiment import Trial
        from ray.tune.schedulers import FIFOScheduler, TrialScheduler

        spec = self.spec
        a = spec.asha
        history, ended = dict(prior or {}), set(ended)

        def replay(rungs: PromotionRungs, trial_id: str) -> None:
            for epoch, value in history.pop(trial_id, ()):
                rungs.arrive(trial_id, int(epoch), float(value[spec.metric] if isinstance(value, Mapping) else value))
            rungs.forget(trial_id)

        class PromotionASHA(FIFOScheduler):
            def __init__(self):
                super().__init__()
                levels = bracket_levels(a.grace_period_epochs, a.reduction_factor, spec.budget.max_epochs, a.brackets)
                self.rungs = PromotionRungs(levels, a.reduction_factor, spec.mode)
                self.trials: dict[str, Any] = {}
                self.active: set[str] = set()  # trials that hold a slot: added, not paused, not ended
                self.concurrency: Optional[int] = None  # set by SlotLimit
                self.stopped: set[str] = set()  # paused trials stopped where they waited
                for trial_id in [t for t in history if t in ended]:
                    replay(self.rungs, trial_id)

            def on_trial_add(self, tune_controller, trial):
                self.trials[trial.trial_id] = trial
                self.active.add(trial.trial_id)
                self.rungs.add(trial.trial_id)
                replay(self.rungs, trial.trial_id)

            def on_trial_result(self, tune_controller, trial, result):
                if C.EPOCH not in result or spec.metric not in result:
                    return TrialScheduler.CONTINUE
                self.active.add(trial.trial_id)
                if self.rungs.arrive(trial.trial_id, int(result[C.EPOCH]), float(result[spec.metric])) == "pause":
                    self.active.discard(trial.trial_id)
                    return TrialScheduler.PAUSE
                return TrialScheduler.CONTINUE

            def on_trial_complete(self, tune_controller, trial, result):
                self._end(trial)

            def on_trial_error(self, tune_controller, trial):
                self._end(trial)

            def on_trial_remove(self, tune_controller, trial):
                self._end(trial)

            def _end(self, trial) -> None:
                self.active.discard(trial.trial_id)
                self.rungs.forget(trial.trial_id)

            def promote(self, ready: Callable[[str], bool] = lambda t: True) -> Optional[Any]:
                """The paused trial a free slot resumes now, or None; it holds a slot from here."""
                if self.concurrency is not None and len(self.active) >= self.concurrency:
                    return None
                trial_id = self.rungs.next_promotion(ready)
                if trial_id is None:
                    return None
                self.active.add(trial_id)
                return self.trials[trial_id]

            def left_paused(self, search_finished: bool) -> list[Any]:
                """The paused trials no promotion can reach any more (none runs, none is left to draw),
                counted as stopped by this scheduler: the caller stops them."""
                if self.active or not search_finished or self.rungs.can_promote():
                    return []
                self.stopped.update(self.rungs.paused)
                return [self.trials[t] for t in self.rungs.paused]

            def choose_trial_to_run(self, tune_controller):
                def ready(trial_id: str) -> bool:  # paused for good, its pause's save done
                    return self.trials[trial_id].status == Trial.PAUSED

                trial = self.promote(ready)
                if trial is not None:
                    return trial
                if not any(self.trials[t].status != Trial.PAUSED for t in self.rungs.paused):
                    for trial in self.left_paused(tune_controller.search_alg.is_finished()):
                        tune_controller.stop_trial(trial)
                return None

            def debug_string(self) -> str:
                return f"promotion ASHA: {len(self.rungs.paused)} paused, {len(self.active)} running"

        return PromotionASHA()

    def searcher_concurrency(self, concurrency: int) -> int:
        # a paused trial stays live to Tune's searchers until it ends: SlotLimit holds the limit
        return max(concurrency, self.spec.budget.num_trials)

    def limit_search(self, search: Any, scheduler: Any, concurrency: int) -> Any:
        scheduler.concurrency = concurrency
        return slot_limit(search, scheduler)

    def pauses(self, scheduler: Any) -> Callable[[str], bool]:
        return lambda trial_id: trial_id in scheduler.rungs.paused


def slot_limit(search: Any, scheduler: Any) -> Any:
    """``search`` as Tune runs it beside a ``PromoteScheduler``'s ``scheduler``: it draws a new trial
    only while fewer than the scheduler's concurrency hold a slot and no promotion waits; and a
    paused trial stopped at the end is reported to ``search`` with its last result, which Tune
    leaves out for a trial it stops while paused."""
    from ray.tune.search import SearchAlgorithm, Searcher, SearchGenerator

    class SlotLimit(SearchAlgorithm):
        def __init__(self):
            self.inner = SearchGenerator(search) if isinstance(search, Searcher) else search
            self.last: dict[str, dict] = {}

        @property
        def metric(self):
            return self.inner.metric

        @property
        def total_samples(self) -> int:
            return self.inner.total_samples

        def set_search_properties(self, metric, mode, config, **spec) -> bool:
            return self.inner.set_search_properties(metric, mode, config, **spec)

        def add_configurations(self, experiments) -> None:
            self.inner.add_configurations(experiments)

        def next_trial(self):
            if len(scheduler.active) >= scheduler.concurrency or scheduler.rungs.can_promote():
                return None
            return self.inner.next_trial()

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            self.last[trial_id] = result
            self.inner.on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
            self.inner.on_trial_complete(trial_id, result=result or self.last.pop(trial_id, None), error=error)
            self.last.pop(trial_id, None)

        def is_finished(self) -> bool:
            return self.inner.is_finished()

        def set_finished(self) -> None:
            self.inner.set_finished()

        def has_checkpoint(self, dirpath: str) -> bool:
            return self.inner.has_checkpoint(dirpath)

        def save_to_dir(self, dirpath: str, **kwargs) -> None:
            self.inner.save_to_dir(dirpath, **kwargs)

        def restore_from_dir(self, dirpath: str) -> None:
            self.inner.restore_from_dir(dirpath)

    return SlotLimit()
