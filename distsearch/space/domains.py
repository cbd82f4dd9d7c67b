"""Hyperparameter domains: the values each parameter the loop and the model families read accepts.

``check_space`` holds every value a space can produce (constants, choice options, the bounds of
each distribution) against its parameter's domain before Ray starts, so that a word where a
number belongs, or a dropout of 1.5, fails validation instead of every trial. A custom task can
declare its own parameters' domains as ``param_domains`` (name -> ``Options`` or ``Number``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from ..models import ACTIVATIONS, FAMILY_PARAM
from .params import Param


@dataclass(frozen=True)
class Options:
    """One of a fixed set of words."""

    values: tuple[str, ...]

    def problem(self, value: Any) -> Optional[str]:
        return None if value in self.values else f"use one of {', '.join(self.values)}"


@dataclass(frozen=True)
class Number:
    """An int (``integer``) or a finite float from ``low`` to ``high``; ``low_open``/``high_open``
    exclude that end."""

    integer: bool
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (self.integer and float(value) != int(value)):
            return f"use {'a whole number' if self.integer else 'a number'} {self.range()}".rstrip()
        if not math.isfinite(value):
            return f"use a finite number {self.range()}".rstrip()
        below = value <= self.low if self.low_open else value < self.low
        above = value >= self.high if self.high_open else value > self.high
        return f"use a value {self.range()}" if below or above else None

    def problem_below(self, high: float) -> Optional[str]:
        """The problem of values drawn up to, not including, ``high`` (a uniform's upper end)."""
        return f"use a value {self.range()}" if high > self.high else None

    def range(self) -> str:
        lo = "" if self.low == -math.inf else f"{'above' if self.low_open else 'from'} {_num(self.low)}"
        hi = "" if self.high == math.inf else f"{'below' if self.high_open else 'up to'} {_num(self.high)}"
        return " ".join(p for p in (lo, hi) if p)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


Domain = Union[Options, Number]

#: The training recipe's parameters (distsearch.train.loop) and the model families' (distsearch.models).
DOMAINS: dict[str, Domain] = {
    "lr": Number(False, 0.0, low_open=True),
    "batch_size": Number(True, 1),
    "optimizer": Options(("sgd", "adam", "adamw")),
    "momentum": Number(False, 0.0, 1.0, high_open=True),
    "weight_decay": Number(False, 0.0),
    "lr_schedule": Options(("none", "cosine", "linear")),
    "warmup_fraction": Number(False, 0.0, 1.0, high_open=True),
    "depth": Number(True, 0),
    "width": Number(True, 1),
    "channels": Number(True, 1),
    "heads": Number(True, 1),
    "activation": Options(tuple(ACTIVATIONS)),
    "dropout": Number(False, 0.0, 1.0, high_open=True),
}


def _problem(domain: Domain, p: Param) -> Optional[tuple[Any, str]]:
    """The first value of ``p`` outside ``domain``, with the fix; None if all fit."""
    for value in p.ends():
        fix = domain.problem(value)
        if fix:
            return value, fix
    high = p.open_high()
    if high is not None and isinstance(domain, Number):
        fix = domain.problem_below(high)
        if fix:
            return high, fix
    return None


def check_space(space: Mapping[str, Param], extra: Optional[Mapping[str, Domain]] = None, prefix: str = "space") -> list[str]:
    """One problem line for each value of ``space`` outside its parameter's domain."""
    domains = {**DOMAINS, **(extra or {})}
    problems = []
    for name, p in space.items():
        for option, sub in p.sub_spaces().items():
            problems += check_space(sub, extra, f"{prefix}.{name}.choice.{option}")
        if p.sub_spaces():
            continue
        domain = domains.get(name.removeprefix(f"{FAMILY_PARAM}."))
        if domain is None:
            continue
        found = _problem(domain, p)
        if found:
            problems.append(f"{prefix}.{name}: got {found[0]!r}; fix: {found[1]}")
    return problems
