"""Spec errors as instructions: each pydantic error becomes one line naming the field, the value and the fix."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from ..errors import UserError


def _field_description(loc: tuple, model: type[BaseModel]) -> Optional[str]:
    """The description of the field at ``loc``, walking nested sections; None if unknown."""
    desc = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return desc
        info = fields[part]
        desc = info.description
        model = info.annotation if isinstance(info.annotation, type) else None
    return desc


def _fix(e: dict, field: str, desc: Optional[str]) -> str:
    """The instruction that mends one pydantic error of ``field``."""
    ctx, kind = e.get("ctx") or {}, e["type"]
    bounds = {
        "greater_than_equal": ("ge", "{} or more"),
        "greater_than": ("gt", "above {}"),
        "less_than_equal": ("le", "{} or less"),
        "less_than": ("lt", "below {}"),
    }
    if kind in bounds:
        key, words = bounds[kind]
        fix = f"set {field} to " + words.format(ctx[key])
    elif kind == "literal_error":
        fix = f"set {field} to {ctx.get('expected', 'one of the allowed values')}"
    elif kind.startswith("int_"):
        fix = f"set {field} to a whole number"
    elif kind.startswith("float_"):
        fix = f"set {field} to a number"
    elif kind.startswith("bool_"):
        fix = f"set {field} to true or false"
    elif kind.startswith("string_"):
        fix = f"set {field} to text"
    else:
        fix = f"set {field} as its reference says"
    return f"{fix} ({field}: {desc})" if desc else fix


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per pydantic error of a ``root`` model: the field, the value it got, and the fix."""
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "value_error":
            problems.extend(msg.splitlines())  # our validators already name field, value and fix
            continue
        value = e.get("input")
        desc = _field_description(loc, root)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1], root)
            fix = f"remove it or fix its spelling; allowed keys here: {', '.join(allowed)}"
        elif e["type"] == "missing":
            fix = f"add it ({field}: {desc})" if desc else "add it"
            value = "nothing"
        else:
            fix = _fix(e, field, desc)
        shown = value if value == "nothing" else repr(value)
        problems.append(f"{field}: {msg.lower()}, got {shown}; fix: {fix}")
    return problems


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in loc:
        info = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if info is None:
            return []
        model = info.annotation
    return list(getattr(model, "model_fields", {}))


class SpecError(UserError, ValueError):
    """A job spec is invalid. ``problems`` holds one message per invalid field."""

    def __init__(self, problems: list[str], source: str = "job spec"):
        self.problems = problems
        super().__init__(f"{source} is invalid ({len(problems)} problem(s)):\n" + "\n".join(f"  - {p}" for p in problems))
