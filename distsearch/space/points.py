"""Points of a space, checked and named for a model-based searcher.

A point is what trials.parquet holds for a trial: ``{"lr": 0.01, "model": "mlp", "model.depth": 2}``
(conditional sub-parameters as ``<param>.<sub>``, present only under their option). A searcher
that learns needs names that do not change meaning between options, so ``searcher_names`` gives
each sub-parameter its option too (``model.mlp.depth``). Pure: no Ray, no Optuna.
"""

from __future__ import annotations

from typing import Any, Mapping

from .params import Param


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
            for option, option_space in p.sub_spaces().items():
                walk(option_space, f"{key}.", on and point.get(key) == option)

    walk(space, "", True)
    problems = []
    for key, value in point.items():
        if key not in known:
            problems.append(f"{key}: not a parameter of the space; fix: use one of {sorted(known)}")
        elif key not in active:
            problems.append(f"{key}: set, but its option is not the one chosen; fix: drop it or choose its option")
        elif (why := active[key].value_problem(value)) is not None:
            problems.append(f"{key}: got {value!r}; fix: {why}")
    return problems


def searcher_names(space: Mapping[str, Param], point: Mapping[str, Any], prefix: str = "", qualified: str = "") -> dict[str, Any]:
    """``point`` with each conditional sub-parameter renamed ``<param>.<option>.<sub>``; fixed
    parameters dropped (nothing to learn about them)."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        key, qkey = f"{prefix}{name}", f"{qualified}{name}"
        if key not in point or not p.learnable:
            continue
        out[qkey] = point[key]
        option = point[key]
        if option in p.sub_spaces():
            out.update(searcher_names(p.sub_spaces()[option], point, f"{key}.", f"{qkey}.{option}."))
    return out
