"""The search-space grammar: one YAML entry per hyperparameter, parsed into typed parameters.

One entry per hyperparameter under ``space:``::

    lr:         {loguniform: [1.0e-4, 1.0e-1]}    # float, log scale, [lo, hi)
    dropout:    {uniform: [0.0, 0.5]}             # float, [lo, hi)
    depth:      {randint: [1, 4]}                 # int, [lo, hi)  (hi exclusive, as in Tune)
    width:      {qrandint: [32, 256, 32]}         # int, multiples of q in [lo, hi]
    wd:         {qloguniform: [1e-6, 1e-2, 1e-6]} # float, log scale, rounded to q
    momentum:   {quniform: [0.8, 0.99, 0.01]}     # float, rounded to q
    optimizer:  {choice: [sgd, adam, adamw]}      # one of a list
    epochs_x:   3                                 # a constant
    model:                                        # conditional: a choice whose options
      choice:                                     # each open their own sub-space
        mlp: {depth: {randint: [1, 4]}}
        cnn: {channels: {choice: [16, 32]}}

A conditional parameter's sampled value is the option's name; its sub-parameters are named
``<param>.<sub>`` (``model.depth``), and are absent from trials of the other options.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

from .params import Choice, Conditional, Fixed, Param, RandInt, Uniform

PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


_FLOAT_FORMS = ("uniform", "loguniform", "quniform", "qloguniform")
_INT_FORMS = ("randint", "qrandint")
_FORMS = _FLOAT_FORMS + _INT_FORMS + ("choice",)


def parse_param(path: str, raw: Any, problems: list[str]) -> Optional[Param]:
    """Parse one YAML search-space entry; append a message to ``problems`` and return None if bad."""

    def bad(value: Any, fix: str) -> None:
        problems.append(f"{path}: got {value!r}; {fix}")

    if not isinstance(raw, dict):
        if isinstance(raw, (bool, int, float, str)):
            return Fixed(value=raw)
        bad(raw, f"write a constant or a mapping with one of the keys {', '.join(_FORMS)}")
        return None
    if len(raw) != 1 or next(iter(raw)) not in _FORMS:
        bad(raw, f"write exactly one of the keys {', '.join(_FORMS)}, e.g. {{loguniform: [1.0e-4, 1.0e-1]}}")
        return None
    form, args = next(iter(raw.items()))
    if form == "choice":
        if isinstance(args, dict):
            return _parse_conditional(path, args, problems)
        if not isinstance(args, list) or not args:
            bad(args, "give choice a non-empty list of values, e.g. {choice: [sgd, adam]}")
            return None
        if any(not isinstance(v, (bool, int, float, str)) for v in args):
            bad(args, "choice values must be numbers, strings or booleans; for sub-spaces write {choice: {option: {...}}}")
            return None
        if len(set(map(repr, args))) != len(args):
            bad(args, "remove the repeated values from the choice")
            return None
        return Choice(values=tuple(args))
    arity = 3 if form.startswith("q") else 2
    shape = "[low, high, q]" if arity == 3 else "[low, high]"
    if not isinstance(args, list) or len(args) != arity or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        bad(args, f"{form} takes a list of {arity} numbers {shape}")
        return None
    if any(not math.isfinite(a) for a in args):
        bad(args, f"{form} bounds must be finite numbers")
        return None
    low, high = args[0], args[1]
    if form in _INT_FORMS and any(float(a) != int(a) for a in args):
        bad(args, f"{form} takes integers; use uniform for floats")
        return None
    if not low < high:
        bad(args, f"low must be below high: write {form}: [{min(low, high)}, {max(low, high)}{', q' if arity == 3 else ''}] with distinct bounds")
        return None
    if "log" in form and low <= 0:
        bad(args, f"{form} needs 0 < low; use uniform for ranges that include 0 or negatives")
        return None
    if arity == 3 and not args[2] > 0:
        bad(args, "the step q must be > 0")
        return None
    if form == "randint" and high - low < 1:
        bad(args, "randint's high is exclusive; make high >= low + 1")
        return None
    if form in _INT_FORMS:
        return RandInt(kind=form, low=int(low), high=int(high), q=int(args[2]) if arity == 3 else None)
    return Uniform(kind=form, low=float(low), high=float(high), q=float(args[2]) if arity == 3 else None)


def _parse_conditional(path: str, options: dict, problems: list[str]) -> Optional[Conditional]:
    if not options:
        problems.append(f"{path}.choice: got {{}}; list at least one option, e.g. {{choice: {{mlp: {{}}, cnn: {{}}}}}}")
        return None
    parsed: dict[str, dict[str, Param]] = {}
    ok = True
    for option, sub in options.items():
        if not isinstance(option, str) or not PARAM_RE.match(option):
            problems.append(f"{path}.choice: option name {option!r} is not an identifier; use letters, digits and _")
            ok = False
            continue
        if sub is None:
            sub = {}
        if not isinstance(sub, dict):
            problems.append(f"{path}.choice.{option}: got {sub!r}; an option maps parameter names to their spaces, or is {{}}")
            ok = False
            continue
        space = parse_space(f"{path}.choice.{option}", sub, problems)
        if space is None:
            ok = False
        else:
            parsed[option] = space
    return Conditional(options=parsed) if ok else None


def parse_space(path: str, raw: Any, problems: list[str]) -> Optional[dict[str, Param]]:
    """Parse a mapping of parameter name to parameter; None (with problems appended) if bad."""
    if not isinstance(raw, dict):
        problems.append(f"{path}: got {raw!r}; write a mapping of parameter name to its space")
        return None
    out: dict[str, Param] = {}
    before = len(problems)
    for name, entry in raw.items():
        if not isinstance(name, str) or not PARAM_RE.match(name):
            problems.append(f"{path}: parameter name {name!r} is not an identifier; use letters, digits and _")
            continue
        param = parse_param(f"{path}.{name}", entry, problems)
        if param is not None:
            out[name] = param
    return out if len(problems) == before else None
