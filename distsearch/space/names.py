"""The flat view of a trial's parameters that trials, checkpoints and Parquet use.

A sampled config nests a conditional parameter's sub-space in a dict whose option name sits
under ``OPTION_KEY`` (distsearch.search.tune_space builds that form for Tune); ``flatten`` turns it
back into ``{"model": "mlp", "model.depth": 2}``. Pure: no Ray.
"""

from __future__ import annotations

from typing import Any, Mapping

from .. import constants as C
from .params import OPTION_KEY, Param, walk


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


def hp_column(name: str) -> str:
    """The trials.parquet column of hyperparameter ``name``: ``hp_`` + name, dots as ``__``."""
    return C.HP_PREFIX + name.replace(".", "__")


def param_name(column: str) -> str:
    """The hyperparameter name of trials.parquet column ``column``: the inverse of ``hp_column``."""
    return column[len(C.HP_PREFIX) :].replace("__", ".")


def param_types(space: Mapping[str, Param]) -> dict[str, type]:
    """Every flat parameter name mapped to the Python type of its values (bool, int, float or str)."""
    return {key: p.python_type() for key, p in walk(space)}
