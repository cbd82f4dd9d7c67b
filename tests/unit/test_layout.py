"""The package's layout: small modules with one concern each, in packages whose imports run one way."""

import ast
import re

from ..conftest import ROOT

PACKAGE = ROOT / "distsearch"
MAX_LINES = 350
MAX_TOP_LEVEL_MODULES = 12
# Each room may import only from its own room and the rooms before it: data flows from YAML to the
# spec and its space, through the search plan and a backend, to the results and the selected model.
LAYERS = [
    {"constants", "errors", "registry", "storage", "models", "cluster", "lease", "_ray"},
    {"space"},
    {"spec"},
    {"tasks"},
    {"search"},
    {"validate"},
    {"train"},
    {"sweep", "simulate"},
    {"results"},
    {"select"},
    {"job"},
    {"cli", "__init__", "__main__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def _name(path, root=ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path, root=ROOT) -> set[str]:
    """Every distsearch module ``path`` (under ``root``) imports, at the top or inside a function."""
    me = _name(path, root)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = set()
    known = {_name(p) for p in PACKAGE.rglob("*.py")} | {_name(p, root) for p in (root / "distsearch").rglob("*.py")}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("distsearch")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            if not base.startswith("distsearch"):
                continue
            subs = {f"{base}.{a.name}" for a in node.names} & known
            out |= subs or {base}
            if subs and len(subs) < len(node.names):
                out.add(base)
    return out - {me}


def test_every_module_is_small_and_names_its_concern_first():
    for path in _modules():
        lines = path.read_text().splitlines()
        assert len(lines) <= MAX_LINES, f"{path.relative_to(ROOT)} has {len(lines)} lines; split it by concern"
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{path.relative_to(ROOT)} has no first docstring line"


def test_the_top_level_stays_small_and_every_room_is_placed():
    top = [p.name for p in PACKAGE.iterdir() if (p.suffix == ".py" and p.name != "__main__.py") or (p.is_dir() and (p / "__init__.py").exists())]
    assert len(top) <= MAX_TOP_LEVEL_MODULES + 9, sorted(top)  # modules and packages (the rooms of LAYERS)
    modules = [n for n in top if n.endswith(".py")]
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, sorted(modules)
    for name in top:
        assert name.removesuffix(".py") in RANK, f"{name} is in no layer of tests/unit/test_layout.py; place it"


def test_imports_run_one_way():
    """No module imports from a room after its own: the data flow of docs/design.md."""
    upward = []
    for path in _modules():
        me = _name(path)
        for target in imports_of(path):
            if RANK[_room(target)] > RANK[_room(me)]:
                upward.append(f"{me} -> {target}")
    assert upward == [], "imports that run back up:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    graph = {_name(p): imports_of(p) for p in _modules()}
    cycles = []

    def visit(node, stack, seen):
        for nxt in graph.get(node, ()):
            if nxt in stack:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in seen:
                seen.add(nxt)
                visit(nxt, stack + [nxt], seen)

    for start in graph:
        visit(start, [start], {start})
    # A package's __init__ that re-exports its modules is not a cycle of concerns.
    cycles = [c for c in cycles if not any(part.split(".")[-1] in {"distsearch"} for part in c.split(" -> "))]
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:20])


def test_the_check_catches_an_upward_import(tmp_path):
    """The direction check can fail: a module of an early room that imports a later one is named."""
    text = (PACKAGE / "space" / "points.py").read_text() + "\nfrom ..sweep import run as _run  # noqa\n"
    fake = tmp_path / "distsearch" / "space"
    fake.mkdir(parents=True)
    (fake / "points.py").write_text(text)
    found = imports_of(fake / "points.py", tmp_path)
    assert "distsearch.sweep.run" in found
    assert RANK[_room("distsearch.sweep.run")] > RANK[_room("distsearch.space.points")]


def test_the_design_doc_maps_every_room():
    design = (ROOT / "docs" / "design.md").read_text()
    layout = design.split("## Layout", 1)[1]
    for p in PACKAGE.iterdir():
        if p.name in ("__pycache__", "__main__.py"):
            continue
        name = p.name + ("/" if p.is_dir() else "")
        assert name in layout, f"{name} is missing from docs/design.md's layout section"


def test_no_code_comment_or_docstring_carries_a_date():
    for path in _modules():
        assert not re.search(r"20\d\d-\d\d-\d\d", path.read_text()), path
