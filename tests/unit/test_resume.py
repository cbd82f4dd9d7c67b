"""Resuming a run: which run is picked, ASHA's rungs refilled from logged reports, the ledger (no cluster)."""

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from distsearch import constants as C
from distsearch import job, results, storage
from distsearch.spec import parse_job
from distsearch.sweep import recording, resume

from ..conftest import tiny_job


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _make_run(spec, run_id, *, finished=False, pid=None, host=None, heartbeat_age_s=0.0, job=None, sweep_state=True):
    out = results.run_dir(spec.storage, spec.name, run_id)
    beat = datetime.now(timezone.utc) - timedelta(seconds=heartbeat_age_s)
    meta = {
        "run_id": run_id,
        "job": job if job is not None else spec.to_dict(),
        "started_at": beat.isoformat(),
        "heartbeat_at": beat.isoformat(),
        "driver": {"host": host or socket.gethostname(), "pid": pid or _dead_pid()},
    }
    if finished:
        meta["finished_at"] = beat.isoformat()
    storage.write_json(storage.join(out, C.RUN_FILE), meta)
    if sweep_state:
        storage.write_json(storage.join(out, C.TUNE_DIR, "experiment_state-2026-01-01_00-00-00.json"), {})
    return out


@pytest.fixture
def spec(tmp_path):
    return parse_job(tiny_job(tmp_path))


def test_newest_unfinished_run_with_a_dead_driver_is_resumed(spec):
    _make_run(spec, "20260101-000000-aaaaaa")
    _make_run(spec, "20260102-000000-bbbbbb")
    assert job.choose_run(spec, resume="auto") == ("20260102-000000-bbbbbb", True)
    assert job.choose_run(spec, resume="require") == ("20260102-000000-bbbbbb", True)
    run_id, resumed = job.choose_run(spec, resume="never")
    assert not resumed and run_id not in results.run_ids(spec.storage, spec.name)


@pytest.mark.parametrize(
    "case, expect",
    [
        ({"finished": True}, "it finished"),
        ({"pid": os.getpid()}, "is still running"),
        ({"host": "elsewhere", "heartbeat_age_s": 5}, "is still running"),
        ({"job": {"name": "tiny", "seed": 2}}, "different job spec \\(fields"),
        ({"sweep_state": False}, "before Tune saved any sweep state"),
    ],
)
def test_a_run_that_cannot_be_resumed_says_why(spec, case, expect):
    _make_run(spec, "20260101-000000-aaaaaa", **case)
    run_id, resumed = job.choose_run(spec, resume="auto")  # auto: a new run instead
    assert not resumed and run_id != "20260101-000000-aaaaaa"
    with pytest.raises(ValueError, match=expect):
        job.choose_run(spec, resume="require")
    with pytest.raises(ValueError, match="--run-id: run '20260101-000000-aaaaaa' cannot be resumed: .*" + expect.split(" \\(")[0]):
        job.choose_run(spec, run_id="20260101-000000-aaaaaa")


def test_driver_on_another_host_counts_as_gone_once_its_heartbeat_is_stale(spec):
    _make_run(spec, "20260101-000000-aaaaaa", host="elsewhere", heartbeat_age_s=job.HEARTBEAT_STALE_S + 5)
    assert job.choose_run(spec, resume="require") == ("20260101-000000-aaaaaa", True)


def test_explicit_run_ids(spec):
    assert job.choose_run(spec, run_id="fresh") == ("fresh", False)
    with pytest.raises(ValueError, match="there is no run 'fresh'"):
        job.choose_run(spec, run_id="fresh", resume="require")
    _make_run(spec, "mine")
    assert job.choose_run(spec, run_id="mine") == ("mine", True)
    with pytest.raises(ValueError, match="already exists"):
        job.choose_run(spec, run_id="mine", resume="never")
    with pytest.raises(ValueError, match="has no run"):
        job.choose_run(parse_job({**spec.to_dict(), "name": "other"}), resume="require")


def _trial(i):
    return SimpleNamespace(trial_id=f"t{i}", status="RUNNING")


def test_asha_rungs_are_refilled_from_the_reports_of_the_earlier_driver(tmp_path):
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 9, "max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 3}))
    # three trials judged at rung 1 before the crash; t2 was mid-way and had reached epoch 2
    prior = {"t0": [(1, 0.9)], "t1": [(1, 0.8)], "t2": [(1, 0.7), (2, 0.75)]}
    sched = resume.asha_scheduler(spec, prior)
    for t in map(_trial, range(3)):
        sched.on_trial_add(None, t)
    # a new trial is judged against the refilled rung: 0.5 is below its 2/3 quantile, so it stops
    late = _trial(9)
    sched.on_trial_add(None, late)
    assert sched.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.STOP
    # without the refill the same result would be the first at the rung, and continue
    fresh = resume.asha_scheduler(spec)
    fresh.on_trial_add(None, late)
    assert fresh.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.CONTINUE


def test_replay_cuts_a_trial_that_crossed_a_rung_unjudged(tmp_path):
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 9, "max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 2}))
    prior = {"t0": [(1, 0.9)], "t1": [(1, 0.95)], "t2": [(1, 0.3)]}  # t2 is far below the rung's median
    sched = resume.asha_scheduler(spec, prior)
    for t in map(_trial, range(3)):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, _trial(2), {"epoch": 1, "val_accuracy": 0.3}) == TrialScheduler.STOP
    assert sched.on_trial_result(None, _trial(1), {"epoch": 2, "val_accuracy": 0.96}) == TrialScheduler.CONTINUE


def test_recorder_keeps_each_epoch_once_and_writes_the_ledger(tmp_path):
    ledger = str(tmp_path / "ledger")
    rec = recording.ResultRecorder("val_accuracy", ledger)
    t = SimpleNamespace(trial_id="t0", get_error=lambda: None)
    rec.on_trial_start(0, [], t)
    assert storage.read_json(f"{ledger}/t0.json")[C.ENDED_AT] is None
    for epoch, acc in [(1, 0.5), (2, 0.6), (2, 0.6), (3, 0.7)]:  # epoch 2 repeated by a resumed trial
        rec.on_trial_result(0, [], t, {"epoch": epoch, "val_accuracy": acc, "training_iteration": epoch})
    rec.on_trial_complete(0, [], t)
    assert [r["epoch"] for r in rec.epoch_rows] == [1, 2, 3]
    assert "training_iteration" not in rec.epoch_rows[0]
    record = json.loads((tmp_path / "ledger" / "t0.json").read_text())
    assert record[C.ENDED_AT] and record[C.LAST_REPORT] == {"epoch": 3, "val_accuracy": 0.7} and record[C.ERROR] is None
    # a second end (the trial restarted by a resumed driver ends again) keeps the first record
    rec.on_trial_complete(0, [], t)
    assert json.loads((tmp_path / "ledger" / "t0.json").read_text())[C.ENDED_AT] == record[C.ENDED_AT]


def test_error_budget_counts_a_trial_that_fails_again_after_a_restart_once(tmp_path):
    budget = recording.SweepBudget(1, failed=["t0"])  # t0 failed under the earlier driver
    budget.on_trial_error(0, [], SimpleNamespace(trial_id="t0"))  # the ledger makes it fail again
    assert not budget.exceeded and not budget.stop_all()
    budget.on_trial_error(0, [], SimpleNamespace(trial_id="t1"))
    assert budget.exceeded and budget.stop_all()


def test_the_time_budget_ends_the_sweep_once_it_is_spent(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(recording.time, "monotonic", lambda: clock[0])
    budget = recording.SweepBudget(None, time_s=60)
    assert not budget.stop_all()
    clock[0] = 161.0
    assert budget.stop_all() and budget.ran_out_of_time and not budget.exceeded
    assert not recording.SweepBudget(None).stop_all()  # unset: no limit
