"""The job's `search:` section, and points of its space checked and named for a model-based searcher.

A point is what trials.parquet holds for a trial: ``{"lr": 0.01, "model": "mlp", "model.depth": 2}``
(conditional sub-parameters as ``<param>.<sub>``, present only under their option). A searcher
that learns needs names that do not change meaning between options, so ``searcher_names`` gives
each sub-parameter its option too (``model.mlp.depth``). Pure: no Ray, no Optuna.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field

from .params import Choice, Conditional, Fixed, Param, RandInt, Uniform

#: Searchers a job can name; ``Search.algorithm``.
SEARCH_ALGORITHMS = ("random", "tpe")


class Search(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Literal["random", "tpe"] = Field(
        "tpe",
        description="who proposes each trial's parameters: random (Tune's random sampling) or tpe (Optuna's TPE, which learns from "
        "ended trials, told which ASHA stopped and at which epoch); the seed is the job's seed",
    )
    startup_trials: int = Field(10, ge=1, le=100_000, description="tpe: trials drawn at random before TPE models the results (count, >= 1)")
    multivariate: bool = Field(
        True, description="tpe: model the parameters jointly, grouped by conditional sub-space (true), or each on its own (false)"
    )
    constant_liar: bool = Field(
        True, description="tpe: count running trials as bad results while sampling, so that trials running at once spread out (true)"
    )
    warm_start: list[str] = Field(
        default_factory=list,
        description="tpe: earlier runs (run directories or URIs) of a job with the same metric whose trials seed the searcher; "
        "trials whose parameters do not fit this space are skipped and counted",
    )
    points_to_evaluate: list[dict[str, Any]] = Field(
        default_factory=list,
        description="tpe: configurations to run first, with flat names as in trials.parquet (model.depth); parameters left out are sampled",
    )


def describe(search: Search, seed: int) -> dict[str, Any]:
    """What run.json records of the searcher: its name and the settings that shaped it."""
    if search.algorithm == "random":
        return {"algorithm": "random", "seed": seed}
    return {
        "algorithm": search.algorithm,
        "seed": seed,
        **search.model_dump(mode="json", exclude={"algorithm", "warm_start", "points_to_evaluate"}),
        "warm_start_runs": list(search.warm_start),
        "points_to_evaluate": len(search.points_to_evaluate),
    }


def _value_problem(p: Param, v: Any) -> Optional[str]:
    """Why ``v`` is not a value ``p`` can produce, or None."""
    if isinstance(p, Fixed):
        return None if v == p.value else f"the space fixes it at {p.value!r}"
    if isinstance(p, Choice):
        return None if v in p.values else f"choose one of {list(p.values)}"
    if isinstance(p, Conditional):
        return None if v in p.options else f"choose one of the options {list(p.options)}"
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "give a finite number"
    if isinstance(p, RandInt):
        high_ok = v < p.high if p.kind == "randint" else v <= p.high
        if v != int(v) or not (p.low <= v and high_ok):
            return f"give an integer in [{p.low}, {p.high}{')' if p.kind == 'randint' else ']'}"
        return None
    assert isinstance(p, Uniform)
    return None if p.low <= v <= p.high else f"give a number in [{p.low}, {p.high}]"


def point_problems(space: Mapping[str, Param], point: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``point`` (flat names) for ``space``: unknown names, values out of
    their domain, sub-parameters of an option not chosen. Missing parameters are fine: a
    searcher samples them."""
    active: dict[str, Param] = {}  # flat name -> the parameter it is under the chosen options
    known: set[str] = set()

    def walk(sub: Mapping[str, Param], prefix: str, on: bool) -> None:
        for name, p in sub.items():
            key = f"{prefix}{name}"
            known.add(key)
            if on:
                active[key] = p
            if isinstance(p, Conditional):
                for option, option_space in p.options.items():
                    walk(option_space, f"{key}.", on and point.get(key) == option)

    walk(space, "", True)
    problems = []
    for key, value in point.items():
        if key not in known:
            problems.append(f"{key}: not a parameter of the space; fix: use one of {sorted(known)}")
        elif key not in active:
            problems.append(f"{key}: set, but its option is not the one chosen; fix: drop it or choose its option")
        elif (why := _value_problem(active[key], value)) is not None:
            problems.append(f"{key}: got {value!r}; fix: {why}")
    return problems


def searcher_names(space: Mapping[str, Param], point: Mapping[str, Any], prefix: str = "", qualified: str = "") -> dict[str, Any]:
    """``point`` with each conditional sub-parameter renamed ``<param>.<option>.<sub>``; fixed
    parameters dropped (nothing to learn about them)."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        key, qkey = f"{prefix}{name}", f"{qualified}{name}"
        if key not in point or isinstance(p, Fixed):
            continue
        out[qkey] = point[key]
        if isinstance(p, Conditional) and point[key] in p.options:
            option = point[key]
            out.update(searcher_names(p.options[option], point, f"{key}.", f"{qkey}.{option}."))
    return out
