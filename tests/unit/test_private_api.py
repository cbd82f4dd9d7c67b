"""Ray's private API stays behind one door (distsearch._ray), pinned to one Ray version."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT

PACKAGE = ROOT / "distsearch"
DOOR = PACKAGE / "_ray"
# Underscore attributes of Ray objects distsearch has ever touched, and internal names.
PRIVATE_ATTRIBUTES = {
    "_actor_id",
    "_local_tuner",
    "_run_config",
    "_tune_config",
    "_trial_info",
    "_metric_op",
    "_start_impl",
    "_controller_callback_manager",
    "_set_state",
    "_try_log_hparams",
    "_trial_writer",
    "_initialize_and_run_controller",
    "_create_default_callbacks",
    "temporary_state",
}
PRIVATE_STRINGS = re.compile(r"__internal_head__|ray\._private|\._internal\b|_pb2\b|grpc")


def _outside_the_door():
    return [p for p in sorted(PACKAGE.rglob("*.py")) if DOOR not in p.parents]


def private_touch_points(path: Path) -> list[str]:
    """Every place in ``path`` that names a private Ray thing: an import of a Ray module with an
    underscore component, a known underscore attribute of a Ray object, an internal name in a string."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(getattr(n, "body", None), list) and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        private = [
            m for m in modules if (m.split(".")[0] == "ray" and any(p.startswith("_") for p in m.split(".")[1:])) or "grpc" in m or m.endswith("_pb2")
        ]
        if private:
            found.append(f"{path.name}:{node.lineno}: imports {private[0]}")
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and PRIVATE_STRINGS.search(node.value):
            found.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
    return found


def test_no_module_outside_the_door_names_a_private_ray_thing():
    offenders = []
    for path in _outside_the_door():
        offenders += private_touch_points(path)
    assert offenders == [], "private Ray API outside distsearch/_ray:\n" + "\n".join(offenders)


def test_the_check_finds_a_private_touch_point(tmp_path):
    """The check can fail: each kind of touch point is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from ray._private import state\nimport ray.train.v2._internal.constants\n"
        "def f(a, t):\n    return a._actor_id, t._local_tuner, {'node:__internal_head__': 1}\n"
    )
    found = private_touch_points(bad)
    assert len(found) == 5, found


def test_only_the_backend_the_searchers_and_the_parameter_types_import_ray_tune():
    """Tune's names stay where they belong: the Ray backend (sweep/) and the simulated one
    (simulate/, which drives Tune's scheduler and search objects without a cluster), the searchers
    and schedulers Tune drives (search/), and each parameter type's Tune domain (space/params.py, lazily)."""
    importers = []
    for path in _outside_the_door():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + ([f"ray.{a.name}" for a in node.names] if node.module == "ray" else [])
            if any(n == "ray.tune" or n.startswith("ray.tune.") for n in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert importers and all(p.startswith(("sweep/", "simulate/", "search/")) or p == "space/params.py" for p in importers), sorted(set(importers))


def test_every_touch_point_is_in_the_inventory():
    """Each public function or constant of the door's modules is named in the package docstring."""
    import distsearch._ray as door

    inventory = door.__doc__
    for module in sorted(DOOR.glob("*.py")):
        if module.name == "__init__.py":
            continue
        assert f"``{module.stem}``" in inventory, module.name
        tree = ast.parse(module.read_text())
        for node in tree.body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                if not name.startswith("_") and name != "log":
                    assert f"``{name}``" in inventory, f"{module.name}: {name} is missing from distsearch._ray's inventory"


def test_pyproject_installs_a_range_that_holds_the_pinned_ray_and_the_oldest():
    from distsearch._ray import OLDEST_RAY_VERSION, PINNED_RAY_VERSION

    pyproject = (ROOT / "pyproject.toml").read_text()
    low, high = re.search(r'"ray\[default,tune,train\]>=([0-9.]+),<([0-9.]+)"', pyproject).groups()
    assert low == OLDEST_RAY_VERSION

    def key(v):
        return tuple(int(p) for p in v.split("."))

    assert key(OLDEST_RAY_VERSION) < key(PINNED_RAY_VERSION) < key(high)


_ANOTHER_RAY = """
import json, ray
ray.__version__ = {version!r}
import distsearch
from distsearch import _ray as door
from distsearch._ray import core, raylet, train, tune
from distsearch.spec.model import parse_job
from distsearch.validate import ray_release_problems
out = {{"vouched": door.VOUCHED, "coordinator": train.start_train_coordinator(), "prestart": raylet.prestart({{}}, "", "", 1, 1.0)}}
for name, call in [("in_trial", lambda: train.lean_trainer_cls(True)), ("census", lambda: core.job_actors_alive("01")),
                   ("restore", lambda: tune.LedgerResume(None, [], frozenset()))]:
    try:
        call()
        out[name] = "ran"
    except door.NotVouched as e:
        out[name] = str(e)
out["public"] = train.lean_trainer_cls(False).__name__
job = {{"name": "j", "task": "digits", "metric": "val_accuracy", "mode": "max", "space": {{"lr": 0.01}}}}
out["kept"] = ray_release_problems(parse_job(job))
out["ray_path"] = ray_release_problems(parse_job({{**job, "harness": {{"trial_processes": "ray"}}}}))
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", ["2.61.0", "2.59.0"])
def test_on_another_ray_distsearch_imports_and_the_door_switches_off_what_it_cannot_vouch_for(version):
    import json

    proc = subprocess.run([sys.executable, "-c", _ANOTHER_RAY.format(version=version)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["vouched"] is False and out["coordinator"] is False and out["prestart"] is None
    for feature in ("in_trial", "census", "restore"):
        assert f"Ray {version} is installed" in out[feature] and "fix: set harness.trial_processes: ray" in out[feature], out[feature]
    assert out["public"] == "PublicTorchTrainer"
    (problem,) = out["kept"]
    assert problem.startswith("harness.trial_processes: got 'kept_worker_group'") and "fix: set harness.trial_processes: ray" in problem
    assert out["ray_path"] == []


def test_the_sweep_runs_tune_without_building_the_result_grid_that_unpickles_error_files():
    """A trial's error.pkl, cut short by a full disk, crashed the driver after the sweep
    (UnpicklingError in ``ResultGrid``); distsearch reads nothing from the grid."""
    from types import SimpleNamespace

    from distsearch._ray import tune

    calls = []
    internal = SimpleNamespace(converted_trainable="trainable", param_space={"lr": 1}, _fit_internal=lambda t, p: calls.append((t, p)))
    tuner = SimpleNamespace(_local_tuner=internal, fit=lambda: pytest.fail("Tuner.fit builds the ResultGrid"))
    tune.fit(tuner)
    assert calls == [("trainable", {"lr": 1})] and calls[0][1] is not internal.param_space
