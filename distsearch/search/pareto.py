"""Pareto order: non-dominated sorting, crowding distance, constraint violation and hypervolume.

Every function takes points as an ``(n, m)`` array where lower is better in every column: a
caller turns a ``max`` objective into ``min`` by negating it (``as_minimised``). No Ray and no
Optuna here, so the rules that a multi-objective scheduler and the results share are tested in
milliseconds.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

#: ``(metric, mode)`` pairs, e.g. ``[("val_accuracy", "max"), ("latency_ms", "min")]``.
Objectives = Sequence[tuple[str, str]]
#: ``{metric: (low, high)}``: a value outside is a violation by its distance (either may be None).
Bounds = Mapping[str, tuple[Optional[float], Optional[float]]]


def as_minimised(values: Sequence[Mapping[str, float]], objectives: Objectives) -> np.ndarray:
    """The ``(n, m)`` array of each result's objectives, negated where the mode is ``max``."""
    sign = np.array([-1.0 if mode == "max" else 1.0 for _, mode in objectives])
    return np.array([[float(v[name]) for name, _ in objectives] for v in values], dtype=float).reshape(len(values), len(objectives)) * sign


def excess(x: float, low: Optional[float], high: Optional[float]) -> float:
    """How far ``x`` lies outside ``[low, high]`` (positive), or inside its nearer end (not);
    either end may be None."""
    return max((low - x) if low is not None else -math.inf, (x - high) if high is not None else -math.inf)


def violation(value: Mapping[str, float], bounds: Bounds) -> float:
    """How far ``value`` lies outside ``bounds``, summed over its metrics; 0 when it meets them all.
    A metric the value lacks counts as infinitely far: a bound that cannot be checked is not met."""
    total = 0.0
    for name, (low, high) in bounds.items():
        if name not in value or not np.isfinite(value[name]):
            return float("inf")
        total += max(0.0, excess(float(value[name]), low, high))
    return total


def non_dominated_ranks(points: np.ndarray) -> np.ndarray:
    """Each point's front, from 0 (no point dominates it); NaN counts as worst in its column."""
    p = np.where(np.isnan(points), np.inf, points)
    ranks = np.full(len(p), -1, dtype=int)
    remaining = np.arange(len(p))
    front = 0
    while remaining.size:
        q = p[remaining]
        no_worse = (q[:, None, :] <= q[None, :, :]).all(axis=-1)  # [j, i]: j is no worse than i anywhere
        better = (q[:, None, :] < q[None, :, :]).any(axis=-1)  # [j, i]: j is better than i somewhere
        dominated = (no_worse & better).any(axis=0)
        ranks[remaining[~dominated]] = front
        remaining = remaining[dominated]
        front += 1
    return ranks


def crowding_distances(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its own set (one front): the ends of each
    column are infinitely far, so a front keeps its extremes."""
    n, m = points.shape
    out = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        col = points[order, k]
        span = col[-1] - col[0]
        out[order[0]] = out[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            out[order[1:-1]] += (col[2:] - col[:-2]) / span
    return out


def pareto_order(points: np.ndarray, violations: Optional[Sequence[float]] = None) -> np.ndarray:
    """Indices of ``points``, best first: points that meet the constraints before those that do
    not (those by how far they miss), then by front, then by crowding distance, the most isolated
    first; ties keep their given order."""
    n = len(points)
    v = np.zeros(n) if violations is None else np.asarray(violations, dtype=float)
    feasible = v <= 0
    ranks = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    crowd = np.zeros(n)
    idx = np.flatnonzero(feasible)
    if idx.size:
        ranks[idx] = non_dominated_ranks(points[idx])
        for r in np.unique(ranks[idx]):
            members = idx[ranks[idx] == r]
            crowd[members] = crowding_distances(points[members])
    # lexsort: the last key is the primary one
    return np.lexsort((np.arange(n), -crowd, ranks, np.where(feasible, 0.0, v)))


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The volume that ``points`` dominate up to ``reference`` (lower is better in every column);
    points that do not dominate the reference add nothing. Exact, by slicing along the last
    column: fine for the few objectives and the hundreds of points a sweep has."""
    ref = np.asarray(reference, dtype=float)
    p = np.asarray(points, dtype=float).reshape(-1, len(ref))
    p = p[(p < ref).all(axis=1)]
    if not len(p):
        return 0.0
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    p = p[np.argsort(p[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(p)):
        upper = p[i + 1, -1] if i + 1 < len(p) else ref[-1]
        if upper > p[i, -1]:
            volume += (upper - p[i, -1]) * hypervolume(p[: i + 1, :-1], ref[:-1])
    return volume
