"""The job's search space as Ray Tune domains, and the flat view trials and Parquet use.

Pure: builds Tune domain objects (``ray.tune.search.sample``) but never starts Ray.

A conditional parameter becomes ``tune.choice`` over one dict per option; Tune resolves the
domains nested inside the chosen dict. The option's name sits under ``OPTION_KEY`` in that
dict, and ``flatten`` turns the nested config back into ``{"model": "mlp", "model.depth": 2}``.
"""

from __future__ import annotations

from typing import Any, Mapping

from ray import tune

from .spec import Choice, Conditional, Fixed, Param, RandInt, Uniform

OPTION_KEY = "__option__"  # not a valid parameter name, so it cannot collide


def to_tune(space: Mapping[str, Param]) -> dict[str, Any]:
    """Translate a parsed space into Tune's ``param_space``."""
    return {name: _domain(p) for name, p in space.items()}


def _domain(p: Param) -> Any:
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Choice):
        return tune.choice(list(p.values))
    if isinstance(p, Conditional):
        return tune.choice([{OPTION_KEY: opt, **to_tune(sub)} for opt, sub in p.options.items()])
    if isinstance(p, Uniform):
        if p.kind == "uniform":
            return tune.uniform(p.low, p.high)
        if p.kind == "loguniform":
            return tune.loguniform(p.low, p.high)
        if p.kind == "quniform":
            return tune.quniform(p.low, p.high, p.q)
        return tune.qloguniform(p.low, p.high, p.q)
    if isinstance(p, RandInt):
        if p.kind == "randint":
            return tune.randint(p.low, p.high)
        return tune.qrandint(p.low, p.high, p.q)
    raise TypeError(f"unknown parameter type {type(p).__name__}")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A resolved Tune config as flat ``{name: value}``; conditional sub-parameters get ``<param>.<sub>``."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and OPTION_KEY in value:
            flat[key] = value[OPTION_KEY]
            flat.update(flatten({k: v for k, v in value.items() if k != OPTION_KEY}, prefix=f"{key}."))
        else:
            flat[key] = value
    return flat


def param_types(space: Mapping[str, Param], prefix: str = "") -> dict[str, type]:
    """Every flat parameter name mapped to the Python type of its values (bool, int, float or str)."""
    types: dict[str, type] = {}
    for name, p in space.items():
        key = f"{prefix}{name}"
        if isinstance(p, Fixed):
            types[key] = type(p.value)
        elif isinstance(p, Choice):
            kinds = {type(v) for v in p.values}
            types[key] = kinds.pop() if len(kinds) == 1 else (float if kinds <= {int, float} else str)
        elif isinstance(p, Conditional):
            types[key] = str
            for opt, sub in p.options.items():
                types.update(param_types(sub, prefix=f"{key}."))
        elif isinstance(p, Uniform):
            types[key] = float
        else:
            types[key] = int
    return types
