"""The job-spec reference page (docs/job-spec.md), generated from the spec model's field documentation.

``python -m distsearch.spec.doc > docs/job-spec.md`` rewrites it; a unit test fails when the page
and the model disagree, so the reference cannot drift from the code.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..space import grammar as params
from .model import JobSpec


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        return "see below" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if info.default is PydanticUndefined:
        return "required"
    return "unset" if info.default is None else f"`{json.dumps(info.default)}`"


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows, sections = [], []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections.append((f"{prefix}{name}", annotation, info.description))
            continue
        text = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {text} | {_default(info)} |")
    return rows, sections


def render() -> str:
    """The whole page, as markdown."""
    out = [
        "# Job spec reference",
        "",
        "A job is one YAML file, validated completely before Ray starts (`distsearch validate JOB`). Every",
        "error names the field, the value it got and the fix. This page is generated from the spec model",
        "(`python -m distsearch.spec.doc > docs/job-spec.md`); `tests/unit/test_spec_doc.py` checks it.",
        "",
        "## Top level",
        "",
        "| field | meaning (unit, range) | default |",
        "|---|---|---|",
    ]
    rows, sections = _rows(JobSpec)
    out += rows
    for path, model, desc in sections:
        out += [
            "",
            f"## `{path}`",
            "",
            f"{desc[0].upper() + desc[1:]}." if desc else "",
            "",
            "| field | meaning (unit, range) | default |",
            "|---|---|---|",
        ]
        out += _rows(model, f"{path}.")[0]
    intro, rest = params.__doc__.split("\n", 2)[2].strip().split("::\n\n", 1)
    block, after = rest.split("\n\n", 1)
    code = "\n".join(line[4:] for line in block.splitlines())
    out += [
        "",
        "## The search space (`space`)",
        "",
        intro.replace("``", "`") + ":",
        "",
        "```yaml",
        code,
        "```",
        "",
        after.replace("``", "`").strip(),
        "",
    ]
    return "\n".join(out).replace("\n\n\n", "\n\n")


if __name__ == "__main__":
    print(render(), end="")
