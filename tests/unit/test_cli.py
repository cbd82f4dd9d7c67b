"""The CLI validates a job once per command and builds its task once, before Ray starts."""

import os

import pytest

from distsearch import job, tasks
from distsearch.cli import main

from ..conftest import JOBS


class _Stop(BaseException):
    """Raised by the stand-in for run_job: the test ends where Ray would start."""


@pytest.mark.parametrize("extra", [[], ["--storage", "/tmp/elsewhere"]], ids=["plain", "storage_override"])
def test_run_builds_the_task_once_and_hands_it_to_the_job(monkeypatch, extra):
    built, handed = [], []
    real = tasks.TASKS["digits"]

    def counting(options):
        task = real(options)
        built.append(task)
        return task

    def run_job(spec, *, task=None, **kw):
        handed.append((spec, task))
        raise _Stop()

    monkeypatch.setitem(tasks.TASKS, "digits", counting)
    monkeypatch.setattr(job, "run_job", run_job)
    with pytest.raises(_Stop):
        main(["run", str(JOBS / "quickstart.yaml"), *extra])
    assert len(built) == 1
    ((spec, task),) = handed
    assert task is built[0]
    assert spec.storage == (extra[1] if extra else "./runs")


def test_validate_builds_the_task_once(monkeypatch, capsys):
    built = []
    real = tasks.TASKS["digits"]
    monkeypatch.setitem(tasks.TASKS, "digits", lambda options: built.append(1) or real(options))
    assert main(["validate", str(JOBS / "quickstart.yaml")]) == 0
    assert len(built) == 1 and "valid" in capsys.readouterr().out


def test_a_sweep_with_no_model_to_select_is_not_a_success(monkeypatch, tmp_path, capsys):
    """Every trial failed: the run's files are written, and the exit code says it failed."""
    from distsearch import constants as C
    from distsearch.job import RunResult
    from distsearch.results import report

    counts = {s: 0 for s in C.STATUSES} | {C.STATUS_ERROR: 16}
    reported = []

    def run_job(spec, *, on_finished, **kw):
        on_finished(str(tmp_path))  # the run's files are final: the CLI starts its report here
        return RunResult(run_dir=str(tmp_path), best=None, status_counts=counts)

    monkeypatch.setattr(job, "run_job", run_job)
    monkeypatch.setattr(report, "report_run", lambda d: "")
    monkeypatch.setattr(report, "write_report", lambda d: reported.append(d) or {report.REPORT_FILE: "r.html"})
    assert main(["run", str(JOBS / "quickstart.yaml")]) == 1
    assert "16 of 16 failed" in capsys.readouterr().err
    assert reported == [str(tmp_path)]  # the report of a failed sweep is written all the same


def test_validate_checks_every_file_and_names_each_bad_one(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((JOBS / "quickstart.yaml").read_text().replace("reduction_factor: 3", "reduction_factor: 1"))
    assert main(["validate", "--no-dry-run", str(JOBS / "quickstart.yaml"), str(JOBS / "wine.yaml")]) == 0
    assert main(["validate", "--no-dry-run", str(JOBS / "quickstart.yaml"), str(bad)]) == 2
    out = capsys.readouterr()
    assert "quickstart.yaml: valid" in out.out and "asha.reduction_factor" in out.err and "1 of 2 job files are invalid" in out.err


def test_a_user_error_exits_2_with_the_fix(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "is not a run folder" in err and "fix:" in err and "bug" not in err


def test_a_bug_in_distsearch_exits_1_and_says_where_the_traceback_went(monkeypatch, capsys):
    """An injected bug (a KeyError inside validation) is not blamed on the user."""
    import re

    from distsearch import validate

    def broken(spec, dry_run=True):
        return {}["injected"]

    monkeypatch.setattr(validate, "check_job", broken)
    assert main(["validate", str(JOBS / "quickstart.yaml")]) == 1
    err = capsys.readouterr().err
    assert "a bug in distsearch (KeyError: 'injected')" in err
    path = re.search(r"the traceback is in (\S+):", err).group(1)
    with open(path) as f:
        assert "in broken" in f.read()
    os.remove(path)


@pytest.mark.parametrize(
    "failure",
    [
        OSError(28, "No space left on device"),  # a full disk, raised in the driver
        OSError(30, "Read-only file system"),
        RuntimeError("ray.exceptions.RayTaskError: ... OSError: [Errno 28] No space left on device"),  # a worker's, as text
        OSError("When getting information for key 'runs/x' in bucket 'b': AWS Error NETWORK_CONNECTION during HeadObject operation"),
    ],
    ids=["enospc", "erofs", "worker-enospc", "s3-unreachable"],
)
def test_a_storage_that_fails_mid_run_ends_in_one_line_and_exit_3(monkeypatch, capsys, failure):
    """Issue 29, case 8: storage failures mid-run ended in a raw traceback and exit 1."""

    def fails(*args, **kwargs):
        try:
            raise failure
        except Exception as e:
            raise RuntimeError("Tune wrapped it") from e  # as Tune and Ray hand errors on

    monkeypatch.setattr(job, "_run_job", fails)
    assert main(["run", str(JOBS / "quickstart.yaml"), "--no-dry-run", "--storage", "/mnt/full"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("error: the storage /mnt/full failed: ") and "then run the same command: it resumes" in err, err


def test_an_error_that_is_not_the_storage_s_is_still_a_bug(monkeypatch, capsys):
    import os
    import re

    monkeypatch.setattr(job, "_run_job", lambda *a, **k: {}["injected"])
    assert main(["run", str(JOBS / "quickstart.yaml"), "--no-dry-run"]) == 1
    err = capsys.readouterr().err
    assert "a bug in distsearch (KeyError: 'injected')" in err
    os.remove(re.search(r"the traceback is in (\S+):", err).group(1))  # the test ends what it started
