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
    raw["max_concurrent_trials"] = 1  # fewer process starts on 2 CPUs; the examples run unchanged
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


def _example(marker: str) -> tuple[str, str]:
    """(where, code) of the one Python example that contains ``marker``."""
    (found,) = [(w, code) for w, code in blocks("python") if marker in code]
    return found


def test_the_python_examples_run(embedded_ray, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples name paths from the repository root
    markers = ("distsearch.run_job(", "distsearch.load_model(", "duckdb.sql(", "def make_task(", "ensure_importable()")
    assert len(blocks("python")) == len(markers), "a new Python example: run it here"
    quickstart = _trimmed(tmp_path, "quickstart", num_trials=2, max_epochs=2)
    scope, _ = _run(*_example(markers[0]), **{"jobs/quickstart.yaml": quickstart})
    assert scope["result"].best is not None and len(scope["run"]["trials"]) == 2

    _, printed = _run(*_example(markers[2]), **{"runs/quickstart/<run id>": scope["result"].run_dir})
    assert "trial_id" in printed and "hp_model" in printed and "best" in printed

    wine = distsearch.run_job(distsearch.load_job(_trimmed(tmp_path, "wine", num_trials=4, max_epochs=6)))
    _, printed = _run(*_example(markers[1]), **{"runs/wine/<run id>": wine.run_dir})
    labels = eval(printed.splitlines()[0])  # "['0', '2', ...]": a list of the table's class labels
    assert len(labels) == 5 and set(labels) <= {"0", "1", "2"}
    # the custom task example (markers[3]; its stubs define a task) and the torchvision workaround (markers[4]) run in
    # tests/unit/test_docs.py
