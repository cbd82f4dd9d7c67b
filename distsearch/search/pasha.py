"""PASHA: ASHA whose maximum epochs grow only while the ranking of the two top rungs keeps changing.

PASHA (Bohdal et al., ICLR 2023) starts with a maximum of the second rung's epochs. When a trial
reaches the current maximum, the trials at the top two rungs are ranked at each; if the ranking
is the same, up to a noise level ``epsilon``, training longer would not change the choice, and
the trial stops there. If it changed, the maximum grows to the next rung (at most
``max_epochs``), and the trial goes on if ASHA's rule at that rung keeps it.

``epsilon`` is learnt as the sweep goes: the 90th percentile of the gaps, at the lower rung,
between pairs of trials whose order the higher rung swapped in earlier checks (so the first swap
always grows the maximum). Two trials closer than that are a tie, as in the paper's soft ranking. Tune's controller stops trials rather than pausing them,
so this is the stopping variant: a trial stopped at the old maximum is not resumed when the
maximum grows (the paper's promotion variant would resume it).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

from .. import constants as C
from .asha import replay_ended, replaying
from .kinds import PriorMetrics, SchedulerKind

#: The percentile of swapped pairs' gaps taken as the noise level.
EPSILON_PERCENTILE = 90


class PashaRungs:
    """PASHA's decisions, with no Ray: ``decide`` a trial's result at an epoch, ``continue`` or ``stop``.

    ``levels``: the rung epochs, ascending, ``max_epochs`` last. Values are compared as given in
    ``mode`` (``max``: higher is better)."""

    def __init__(self, levels: list[int], reduction_factor: float, mode: str):
        self.levels, self.reduction_factor, self.sign = list(levels), reduction_factor, 1.0 if mode == "max" else -1.0
        self.top = min(1, len(self.levels) - 1)  # index of the current maximum in levels
        self.recorded: list[dict[str, float]] = [{} for _ in self.levels]
        self.gaps: dict[tuple[int, str, str], float] = {}  # (rung, trial, trial) -> a swapped pair's gap at the lower rung

    @property
    def max_epochs_now(self) -> int:
        return self.levels[self.top]

    def epsilon(self) -> float:
        return float(np.percentile(list(self.gaps.values()), EPSILON_PERCENTILE)) if self.gaps else 0.0

    def decide(self, trial_id: str, epoch: int, value: float) -> str:
        level = next((i for i in reversed(range(len(self.levels))) if epoch >= self.levels[i] and trial_id not in self.recorded[i]), None)
        if level is None or level == len(self.levels) - 1:
            return "stop" if epoch >= self.max_epochs_now and self.top < len(self.levels) - 1 else "continue"
        v = self.sign * value
        recorded = self.recorded[level]
        cutoff = np.nanpercentile(list(recorded.values()), (1 - 1 / self.reduction_factor) * 100) if recorded else None
        recorded[trial_id] = v
        if level >= self.top and not self._grow():
            return "stop"  # the ranking holds: this trial has had the epochs it needs
        return "stop" if cutoff is not None and v < cutoff else "continue"

    def _grow(self) -> bool:
        """Whether the top two rungs rank their common trials differently; if so the maximum grows."""
        if self.top == len(self.levels) - 1:
            return True
        upper, lower = self.recorded[self.top], self.recorded[self.top - 1]
        common = [t for t in upper if t in lower]
        by_upper = sorted(common, key=lambda t: -upper[t])
        by_lower = sorted(common, key=lambda t: -lower[t])
        eps = self.epsilon()  # from the swaps seen before this one: the first swap always counts
        for i, a in enumerate(by_upper):
            self.gaps.update({(self.top, a, b): lower[b] - lower[a] for b in by_upper[i + 1 :] if lower[a] < lower[b]})
        if all(abs(lower[a] - lower[b]) <= eps for a, b in zip(by_upper, by_lower, strict=True)):
            return False
        self.top += 1
        return True


class PashaScheduler(SchedulerKind):
    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        """A Tune scheduler over ``PashaRungs`` on the job's metric and ASHA's rungs, refilled from ``prior``."""
        from ray.tune.schedulers import FIFOScheduler, TrialScheduler

        from .bohb_plan import rung_epochs

        spec = self.spec

        class PASHA(FIFOScheduler):
            def __init__(self):
                super().__init__()
                self.rungs = PashaRungs(rung_epochs(spec), spec.asha.reduction_factor, spec.mode)

            def on_trial_result(self, tune_controller, trial, result):
                if C.EPOCH not in result or spec.metric not in result:
                    return TrialScheduler.CONTINUE
                decision = self.rungs.decide(trial.trial_id, int(result[C.EPOCH]), float(result[spec.metric]))
                return TrialScheduler.STOP if decision == "stop" else TrialScheduler.CONTINUE

            def on_trial_complete(self, tune_controller, trial, result):
                if result and C.EPOCH in result and spec.metric in result:
                    self.rungs.decide(trial.trial_id, int(result[C.EPOCH]), float(result[spec.metric]))

            def debug_string(self) -> str:
                return f"PASHA: maximum {self.rungs.max_epochs_now} epochs, epsilon {self.rungs.epsilon():.4g}"

        return replay_ended(replaying(PASHA, spec.metric, prior)(), ended)
