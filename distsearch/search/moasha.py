"""MOASHA: ASHA whose rungs rank trials by Pareto order over several objectives, not by one metric.

As in ASHA, a trial that reaches a rung is compared with the trials recorded there before it and
goes on only if it is among the top ``1 / reduction_factor`` of them (at least the first). The
order at a rung is Syne Tune's MOASHA with NSGA-II's tie-break (``distsearch.search.pareto``):
trials that meet the constraints first, then by non-dominated front, then by crowding distance,
so a rung keeps the extremes of its front (the most accurate and the cheapest) before trials in
its crowded middle. A scalar weighted sum, Ray Tune's suggestion for several objectives, cannot
keep a trade-off that lies in a concave part of the front; this order can.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .. import constants as C
from ..spec.objectives import bounds, pairs, read_metrics
from .asha import replay_ended, replaying
from .kinds import PriorMetrics, SchedulerKind
from .pareto import Bounds, Objectives, as_minimised, pareto_order, violation


class ParetoRungs:
    """MOASHA's decisions, with no Ray: ``decide`` a trial's result at an epoch, ``continue`` or ``stop``.

    ``levels``: the rung epochs, ascending (``max_epochs`` is not a rung: a trial there ends anyway).
    ``objectives``: ``(metric, mode)`` pairs; ``bounds``: the constraints, ``{metric: (low, high)}``."""

    def __init__(self, levels: list[int], reduction_factor: float, objectives: Objectives, bounds: Optional[Bounds] = None):
        self.levels, self.reduction_factor = list(levels), float(reduction_factor)
        self.objectives, self.bounds = list(objectives), dict(bounds or {})
        self.recorded: list[dict[str, Mapping[str, float]]] = [{} for _ in self.levels]

    def keeps(self, count: int) -> int:
        """How many of ``count`` trials at a rung go on: the top ``1 / reduction_factor``, at least one."""
        return max(1, math.ceil(count / self.reduction_factor - 1e-9))

    def decide(self, trial_id: str, epoch: int, value: Mapping[str, float]) -> str:
        level = next((i for i in reversed(range(len(self.levels))) if epoch >= self.levels[i] and trial_id not in self.recorded[i]), None)
        if level is None:
            return "continue"
        recorded = self.recorded[level]
        # the new trial first: a tie with an earlier one goes its way, as ASHA's cutoff lets an equal value on
        values = [value, *recorded.values()]
        order = pareto_order(as_minimised(values, self.objectives), [violation(v, self.bounds) for v in values])
        position = int(np.flatnonzero(order == 0)[0])
        recorded[trial_id] = dict(value)
        return "continue" if position < self.keeps(len(values)) else "stop"


def moasha_class(levels: list[int], reduction_factor: float, objectives: Objectives, bounds: Optional[Bounds] = None) -> type:
    """A Tune scheduler class over ``ParetoRungs``: a result that lacks an objective, a bounded
    metric or its epoch goes on."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    names = read_metrics(list(objectives), bounds or {})

    class MOASHA(FIFOScheduler):
        def __init__(self):
            super().__init__()
            self.rungs = ParetoRungs(levels, reduction_factor, objectives, bounds)

        def on_trial_result(self, tune_controller, trial, result):
            if C.EPOCH not in result or any(n not in result for n in names):
                return TrialScheduler.CONTINUE
            decision = self.rungs.decide(trial.trial_id, int(result[C.EPOCH]), {n: float(result[n]) for n in names})
            return TrialScheduler.STOP if decision == "stop" else TrialScheduler.CONTINUE

        def debug_string(self) -> str:
            counts = ", ".join(f"{level}: {len(r)}" for level, r in zip(self.rungs.levels, self.rungs.recorded, strict=True))
            return f"MOASHA on {', '.join(f'{n} ({m})' for n, m in objectives)}; trials per rung {counts}"

    return MOASHA


class MoashaScheduler(SchedulerKind):
    """ASHA's rungs ranked by Pareto order over the job's ``objectives``: the plan's scheduler when
    a job lists them and ``asha.variant`` is asha."""

    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        """A ``moasha_class`` scheduler on ASHA's rungs, refilled from ``prior`` (a dict of the metrics it reads per epoch)."""
        from .bohb_plan import rung_epochs

        spec = self.spec
        cls = moasha_class(rung_epochs(spec)[:-1], spec.asha.reduction_factor, pairs(spec.objectives), bounds(spec.constraints))
        return replay_ended(replaying(cls, spec.metric, prior)(), ended)
