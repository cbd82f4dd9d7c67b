"""Every Python example of the README and docs/ runs as written, on a small real Ray; only the
job files are trimmed to a few short trials and a run's ``<run id>`` is filled in."""

import contextlib
import io

import pytest
import yaml

import distsearch

from ..conftest import ROOT
from ..docs_blocks import blocks

pytestmark = pytest.mark.integration


def _trimmed(tmp_path, name: str, **budget) -> str:
    raw = yaml.safe_load((ROOT / "jobs" / f"{name}.yaml").read_text())
    raw["budget"] = {**raw["budget"], **budget}
    raw["storage"] = str(tmp_path / "runs")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _run(where: str, code: str, **replace: str) -> tuple[dict, str]:
    for old, new in replace.items():
        assert old in code, f"{where} no longer says {old!r}: update this test with it"
        code = code.replace(old, new)
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, where, "exec"), scope)
    return scope, out.getvalue()


def test_the_python_examples_run(embedded_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name paths from the repository root
    examples = dict(blocks("python"))
    assert set(examples) == {"README.md#5", "README.md#6", "docs/results.md#0", "docs/tasks.md#0"}, "a new example: run it here"
    quickstart = _trimmed(tmp_path, "quickstart", num_trials=2, max_epochs=2)
    scope, _ = _run("README.md#5", examples["README.md#5"], **{"jobs/quickstart.yaml": quickstart})
    assert scope["result"].best is not None and len(scope["run"]["trials"]) == 2

    _, printed = _run("docs/results.md#0", examples["docs/results.md#0"], **{"runs/quickstart/<run id>": scope["result"].run_dir})
    assert "trial_id" in printed and "hp_model" in printed and "best" in printed

    wine = distsearch.run_job(distsearch.load_job(_trimmed(tmp_path, "wine", num_trials=4, max_epochs=6)))
    _, printed = _run("README.md#6", examples["README.md#6"], **{"runs/wine/<run id>": wine.run_dir})
    labels = eval(printed.splitlines()[0])  # "['0', '2', ...]": a list of the table's class labels
    assert len(labels) == 5 and set(labels) <= {"0", "1", "2"}
    # docs/tasks.md#0 (its stubs define a task) is run by tests/unit/test_docs.py
