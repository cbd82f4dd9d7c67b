"""The flat view of a trial's parameters that trials, checkpoints and Parquet use.

A sampled config nests a conditional parameter's sub-space in a dict whose option name sits
under ``OPTION_KEY`` (distsearch.sweep.search builds that form for Tune); ``flatten`` turns it
back into ``{"model": "mlp", "model.depth": 2}``. Pure: no Ray.
"""

from __future__ import annotations

from typing import Any, Mapping

from .params import Choice, Conditional, Fixed, Param, Uniform

OPTION_KEY = "__option__"  # not a valid parameter name, so it cannot collide


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
            for sub in p.options.values():
                types.update(param_types(sub, prefix=f"{key}."))
        elif isinstance(p, Uniform):
            types[key] = float
        else:
            types[key] = int
    return types
