"""The job's several objectives: ``objectives``, ``constraints`` and how trials measure ``costs``.

A single-metric job names ``metric`` and ``mode`` only. A multi-objective job also lists
``objectives`` (one ``metric: mode`` pair each, the job's metric among them, which still picks the
single model and the ensemble) and may bound any reported metric with ``constraints``. The cost
metrics (``constants.COST_METRICS``) are measured by each trial on its own device
(``distsearch.train.costs``), and only when an objective or a constraint names one.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from pydantic import Field

from .. import constants as C
from .sections import _Section


class Bound(_Section):
    min: Optional[float] = Field(None, allow_inf_nan=False, description="the least value a trial may have (same unit as the metric)")
    max: Optional[float] = Field(None, allow_inf_nan=False, description="the most value a trial may have (same unit as the metric)")


class Costs(_Section):
    latency_batch_size: int = Field(1, ge=1, le=65_536, description="rows per forward pass whose latency_ms is measured (count, 1..65536)")
    latency_warmup_passes: int = Field(5, ge=0, le=1000, description="untimed forward passes before the timed ones (count, 0..1000)")
    latency_passes: int = Field(
        20, ge=1, le=10_000, description="timed forward passes; latency_ms is their median, on the trial's own device (count, 1..10000)"
    )


def pairs(objectives: list[Mapping[str, str]]) -> list[tuple[str, str]]:
    """``objectives`` as ``(metric, mode)`` pairs, in order."""
    return [next(iter(o.items())) for o in objectives]


def problems(metric: str, mode: str, objectives: list[Mapping[str, Any]], constraints: Mapping[str, Bound], variant: str) -> list[str]:
    """What is wrong with a job's objectives and constraints, each with the fix; the task's own
    metric names are checked by ``distsearch.validate``, which knows them."""
    out = []
    for name, b in constraints.items():
        if b.min is None and b.max is None:
            out.append(f"constraints.{name}: got no bound; fix: give min, max or both, e.g. {name}: {{max: 5}}")
        elif b.min is not None and b.max is not None and b.min > b.max:
            out.append(f"constraints.{name}: min {b.min:g} > max {b.max:g}; fix: swap them")
    for i, o in enumerate(objectives):
        if len(o) != 1:
            out.append(f"objectives[{i}]: got {dict(o)}; fix: one metric: mode pair per entry, e.g. - latency_ms: min")
    if constraints and not objectives:
        out.append(
            f"constraints: given without objectives; fix: list objectives, the job's metric among them (e.g. - {metric}: {mode}, "
            "- latency_ms: min), so that the rungs, the searcher and selection rank trials by them"
        )
    if any(len(o) != 1 for o in objectives):
        return out
    given = pairs(objectives)
    names = [n for n, _ in given]
    if len(given) == 1:
        out.append(f"objectives: got only {names[0]}; one objective is the job's metric and mode; fix: add a second, or drop objectives")
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"objectives: {name} is listed {names.count(name)} times; fix: list each metric once")
    for i, (name, m) in enumerate(given):
        if name in C.COST_METRICS and m != "min":
            out.append(f"objectives[{i}]: {name}: got {m}; a cost is better when lower; fix: {name}: min")
    if given and (metric, mode) not in given:
        out.append(
            f"objectives: the job's metric {metric} ({mode}) is not among them; it picks the single model and the ensemble; "
            f"fix: add - {metric}: {mode}, or set metric and mode to one of the objectives"
        )
    if given and variant != "asha":
        out.append(f"asha.variant: got {variant!r} with objectives; fix: set asha.variant: asha (its rungs then rank trials by Pareto order)")
    return out


def measured_costs(objectives: list[Mapping[str, str]], constraints: Mapping[str, Any]) -> list[str]:
    """The cost metrics the job names, which each trial then measures."""
    named = {n for n, _ in pairs(objectives)} | set(constraints)
    return [c for c in C.COST_METRICS if c in named]


def bounds(constraints: Mapping[str, Bound]) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """``constraints`` as ``{metric: (min, max)}``, either None where not given."""
    return {name: (b.min, b.max) for name, b in constraints.items()}


def read_metrics(objectives: list[tuple[str, str]], bounded: Iterable[str]) -> list[str]:
    """Every objective's metric, then every bounded metric that is not one: what MOASHA and the
    multi-objective searchers read of a result."""
    names = [n for n, _ in objectives]
    return names + [n for n in bounded if n not in names]


def result_metrics(metric: str, objectives: list[Mapping[str, str]], constraints: Mapping[str, Any]) -> list[str]:
    """The reported metrics a job's searcher and scheduler read: its metric alone, or
    ``read_metrics`` of its objectives and constraints."""
    return read_metrics(pairs(objectives), constraints) if objectives else [metric]
