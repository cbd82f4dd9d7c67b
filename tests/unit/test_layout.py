"""The package's layout: small modules with one concern each, every one listed in the README."""

import ast
import re

from ..conftest import ROOT

PACKAGE = ROOT / "distsearch"
MAX_LINES = 350


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def test_every_module_is_small_and_names_its_concern_first():
    for path in _modules():
        lines = path.read_text().splitlines()
        assert len(lines) <= MAX_LINES, f"{path.relative_to(ROOT)} has {len(lines)} lines; split it by concern"
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{path.relative_to(ROOT)} has no first docstring line"


def test_the_readme_layout_lists_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1]
    listed = set(re.findall(r"^\s+([A-Za-z_][\w]*(?:\.py|/))", layout, flags=re.M))
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parent.name == "tasks":  # the tasks package is listed as a whole, with its modules named in the line
            continue
        assert rel.name in listed or rel.name == "__init__.py", f"{rel} is missing from the README's layout section"
        if len(rel.parts) > 1:
            assert f"{rel.parts[0]}/" in listed, rel


def test_no_code_comment_or_docstring_carries_a_date():
    for path in _modules():
        assert not re.search(r"20\d\d-\d\d-\d\d", path.read_text()), path
