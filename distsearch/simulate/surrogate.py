"""Curves for configurations a table lacks: the nearest tabulated one in the normalised space.

Each numeric parameter is scaled to [0, 1] over its range (a log range on the log scale); a choice
counts 0 when equal and 1 when not, as does a parameter one configuration has and the other lacks
(a conditional's sub-parameters). The distance is the Euclidean norm over the parameters. A
configuration at distance 0 is the table's own; any other is a surrogate answer, counted as such.
``leave_one_out`` measures the surrogate on the table itself.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Optional

from ..space.params import walk
from .table import Curve, Table


class Nearest:
    """The nearest-neighbour surrogate over ``table``'s curves."""

    def __init__(self, table: Table):
        from ..spec.model import JobSpec

        self.table = table
        self.scales = {}
        for name, p in walk(JobSpec.model_validate(table.job).space):
            low, high = getattr(p, "low", None), getattr(p, "high", None)
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and high > low:
                log = bool(getattr(p, "log", False))
                self.scales[name] = (math.log(low), math.log(high), True) if log else (float(low), float(high), False)
        self._exact = {_key(c.params): i for i, c in enumerate(table.curves)}

    def _coord(self, name: str, v: Any) -> float:
        low, high, log = self.scales[name]
        x = math.log(v) if log else float(v)
        return (x - low) / (high - low)

    def distance(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        total = 0.0
        for name in set(a) | set(b):
            if name not in a or name not in b:
                total += 1.0
            elif name in self.scales:
                total += (self._coord(name, a[name]) - self._coord(name, b[name])) ** 2
            else:
                total += 0.0 if a[name] == b[name] else 1.0
        return math.sqrt(total)

    def curve(self, params: Mapping[str, Any], exclude: Optional[int] = None, min_epochs: int = 1) -> tuple[Curve, bool]:
        """The curve for ``params`` with at least ``min_epochs`` epochs: the table's own (True), or
        the nearest configuration's that has them (False)."""
        exact = self._exact.get(_key(params))
        curves = self.table.curves
        if exact is not None and exact != exclude and len(curves[exact].metrics) >= min_epochs:
            return curves[exact], True
        candidates = [i for i in range(len(curves)) if i != exclude and len(curves[i].metrics) >= min_epochs] or [
            max((i for i in range(len(curves)) if i != exclude), key=lambda i: len(curves[i].metrics))
        ]
        best = min(candidates, key=lambda i: self.distance(params, curves[i].params))
        return curves[best], False


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items()))


def leave_one_out(table: Table, metric: str, mode: str) -> Optional[dict[str, float]]:
    """The surrogate's error on the table: each configuration that reached max_epochs, answered by
    its nearest other one; the mean and median absolute error of the best metric, and how often
    the two fall on the same side of the table's median. None with fewer than two such configurations."""
    full = [i for i, c in enumerate(table.curves) if len(c.metrics) >= table.max_epochs]
    if len(full) < 2:
        return None
    sur = Nearest(table)
    pick = max if mode == "max" else min

    def best(c: Curve) -> float:
        return pick(m[metric] for m in c.metrics if metric in m)

    truth = {i: best(table.curves[i]) for i in full}
    median = sorted(truth.values())[len(truth) // 2]
    errors, agree = [], 0
    for i in full:
        guess = best(sur.curve(table.curves[i].params, exclude=i)[0])
        errors.append(abs(guess - truth[i]))
        agree += (guess >= median) == (truth[i] >= median)
    return {
        "configurations": len(full),
        "mean_abs_error": sum(errors) / len(errors),
        "median_abs_error": statistics.median(errors),
        "same_half": agree / len(full),
    }
