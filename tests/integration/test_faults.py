"""Faults that really happen: a Train worker process killed mid-trial, and trials that keep failing."""

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job

from ..conftest import ROOT, tiny_job
from .conftest import assert_nothing_left, check_run_files

pytestmark = pytest.mark.integration


def _train_worker_pids() -> list[int]:
    from ray._private import state  # GCS view: no dashboard needed

    return [a["Pid"] for a in state.actors().values() if a.get("ActorClassName") == "RayTrainWorker" and a.get("State") == "ALIVE" and a.get("Pid")]


def test_killed_train_worker_resumes_from_its_last_checkpoint(embedded_ray, tmp_path):
    raw = tiny_job(
        tmp_path,
        budget={"num_trials": 1, "max_epochs": 12},
        harness={"max_worker_failures": 2},
        space={"model": {"choice": {"mlp": {"width": 64}}}, "lr": 0.01, "optimizer": "adam", "batch_size": 8},
    )
    spec = parse_job(raw)
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_job(spec)), daemon=True)
    runner.start()
    # wait for the trial's 3rd checkpoint, then SIGKILL one of its two worker processes. Seen over
    # time, not on disk at once: num_to_keep prunes older ones as fast as the controller takes reports
    deadline = time.monotonic() + 240
    seen: set = set()
    while time.monotonic() < deadline and len(seen) < 3:
        seen.update(Path(tmp_path, "runs").glob(f"tiny/*/{C.TRAIN_DIR}/*/checkpoint_2*"))
        time.sleep(0.05)
    pids = _train_worker_pids()
    assert len(seen) >= 3 and pids, f"the trial never checkpointed 3 times while its workers lived: {len(seen)} checkpoints, workers {pids}"
    os.kill(pids[-1], signal.SIGKILL)
    killed_at = time.time()
    runner.join(timeout=300)
    assert not runner.is_alive()
    result = outcome["result"]
    from distsearch.results.files import read_run

    run = read_run(result.run_dir)
    trials, epochs = run["trials"], run["epochs"]
    assert trials[C.STATUS].tolist() == [C.STATUS_COMPLETED]  # the failure budget absorbed the kill
    assert sorted(epochs[C.EPOCH]) == list(range(1, 13))  # every epoch exactly once: none redone, none lost
    kill_time = pd.Timestamp(killed_at, unit="s", tz="UTC")
    before, after = epochs[epochs[C.TIMESTAMP] < kill_time], epochs[epochs[C.TIMESTAMP] >= kill_time]
    assert len(before) >= 3 and len(after) >= 1
    recover_s = after[C.TIMESTAMP].min().timestamp() - killed_at
    print(f"worker killed after epoch {before[C.EPOCH].max()}; next report {recover_s:.1f} s later, epoch {after[C.EPOCH].min()}")
    assert after[C.EPOCH].min() == before[C.EPOCH].max() + 1  # resumed right after the last checkpoint
    assert_nothing_left()


def test_error_budget_ends_the_sweep_and_keeps_what_it_has(embedded_ray, tmp_path):
    raw = tiny_job(tmp_path, budget={"num_trials": 8, "max_epochs": 2, "max_failed_trials": 1})
    raw["space"]["lr"] = 1.0e30  # overflows to inf/NaN in epoch 1: every trial fails
    raw["space"]["optimizer"] = "sgd"
    spec = parse_job(raw)
    t0 = time.monotonic()
    result = run_job(spec)
    took = time.monotonic() - t0
    from distsearch.results.files import read_run
    from distsearch.results.report import format_run

    run = read_run(result.run_dir)
    trials = run["trials"]
    assert result.error_budget_exceeded and run["run"]["error_budget_exceeded"] is True
    assert 2 <= (trials[C.STATUS] == C.STATUS_ERROR).sum() <= 3  # one more than the budget, plus any already running
    assert set(trials[C.STATUS]) <= {C.STATUS_ERROR, C.STATUS_CANCELLED, C.STATUS_NOT_STARTED}
    ran = int((trials[C.STATUS] != C.STATUS_NOT_STARTED).sum())
    assert ran < spec.budget.num_trials and run["run"]["trials_ran"] == ran  # the rest never started
    assert trials.loc[trials[C.STATUS] == C.STATUS_NOT_STARTED, C.STARTED_AT].isna().all()
    assert f"{ran} of {spec.budget.num_trials} trials ran" in format_run(run)
    assert trials.loc[trials[C.STATUS] == C.STATUS_ERROR, C.ERROR].str.contains("NonFiniteLossError").all()
    print(f"error budget: sweep ended after {took:.1f} s with {len(trials)} of {spec.budget.num_trials} trials")
    assert_nothing_left()


def _group_maker():
    import ray

    @ray.remote(num_cpus=0)
    class GroupMaker:
        """Stands in for a Train controller: an actor that creates a placement group."""

        def make(self) -> str:
            from ray.util.placement_group import placement_group

            pg = placement_group([{"CPU": 0.5}])
            ray.get(pg.ready())
            return pg.id.hex()

    return GroupMaker


def test_stop_path_frees_a_group_whose_creator_died_and_kills_live_creators(embedded_ray):
    """GCS frees an actor's placement group only once both the actor and its job are dead, so a
    group whose creator is killed mid-start outlives it for as long as the job runs: what a
    Train controller killed by a stop can leave. ``release_everything`` removes it, and kills
    the actors that could make more first."""
    import ray

    from distsearch.sweep import cleanup

    from .conftest import live_job_placement_groups

    maker = _group_maker()
    dead, live = maker.remote(), maker.remote()
    orphan, kept = ray.get(dead.make.remote()), ray.get(live.make.remote())
    ray.kill(dead)
    time.sleep(1.0)
    assert orphan in live_job_placement_groups()  # Ray alone keeps it: the job is alive
    done = cleanup.release_everything([live])
    assert sorted(done["placement_groups_removed"]) == sorted([orphan, kept])
    assert live_job_placement_groups() == []
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(live.make.remote(), timeout=10)


def test_sigterm_releases_the_job_then_exits_as_before(embedded_ray, capsys):
    import ray

    from distsearch.sweep import cleanup

    from .conftest import live_job_placement_groups

    maker = _group_maker().remote()
    made = ray.get(maker.make.remote())

    class Reaper:  # the one method released_on_stop asks of WorkerGroupReaper
        def live_trial_actors(self):
            return [maker]

    before = signal.getsignal(signal.SIGTERM)  # Ray's driver handler: SystemExit
    with pytest.raises(SystemExit):
        with cleanup.released_on_stop(Reaper()):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler runs here and ends the sleep with SystemExit
            pytest.fail("SIGTERM did not end the sweep")
    assert signal.getsignal(signal.SIGTERM) is before
    err = capsys.readouterr().err
    assert "distsearch: SIGTERM: stopped the sweep; removed 1 placement groups" in err, err
    assert made not in live_job_placement_groups()


def _hang_job(tmp_path, name, budget):
    """A job of hang_task: its first trial's model hangs for good; one CPU per trial, no ASHA."""
    return parse_job(
        {
            "name": name, "task": "custom", "metric": "val_accuracy", "mode": "max", "seed": 0,
            "task_options": {"factory": "tests.integration.hang_task:make", "marker": str(tmp_path / "hung")},
            "space": {"model": "hanging", "lr": {"loguniform": [1.0e-2, 1.0e-1]}, "batch_size": 16},
            "budget": budget, "asha": {"enabled": False},
            "scaling": {"num_workers": 1, "cpus_per_worker": 1}, "harness": {"release_timeout_s": 5},
            "storage": str(tmp_path / "runs"),
        }
    )  # fmt: skip


def test_a_hung_trial_is_ended_at_its_timeout_and_the_sweep_goes_on(embedded_ray, tmp_path, monkeypatch):
    """The first trial's model hangs in its forward pass for good; budget.trial_timeout_s ends
    it, records why, releases its worker group, and the other trials finish."""
    monkeypatch.chdir(ROOT)
    spec = _hang_job(tmp_path, "hang", {"num_trials": 3, "max_epochs": 2, "trial_timeout_s": 15})
    t0 = time.monotonic()
    result = run_job(spec)
    trials = check_run_files(result.run_dir, spec, expect_stopped=False)["trials"]
    assert time.monotonic() - t0 < 240
    failed = trials[trials[C.STATUS] == C.STATUS_ERROR]
    assert len(failed) == 1 and "timed out: the trial ran longer than budget.trial_timeout_s = 15 s" in failed[C.ERROR].iloc[0]
    assert (trials[trials[C.STATUS] != C.STATUS_ERROR][C.STATUS] == C.STATUS_COMPLETED).all() and len(trials) == 3
    assert result.best is not None
    assert_nothing_left()


def test_the_time_budget_cancels_what_runs_and_records_what_never_started(embedded_ray, tmp_path, monkeypatch):
    """budget.time_s ends the sweep while the first trial hangs for good: it and any other trial
    still running are `cancelled`, drawn trials that never started are `not_started`, and the
    trials that finished before still give a tested best model."""
    monkeypatch.chdir(ROOT)
    # 30 s: the other slot's first trial must finish before the clock runs out, and on a slow
    # machine its actor, worker group and two epochs took more than 15 s (both trials cancelled)
    # more trials than any machine runs in 30 s: a lone trial in its actor takes a tenth of a second here
    spec = _hang_job(tmp_path, "clock", {"num_trials": 10_000, "max_epochs": 2, "time_s": 30})
    t0 = time.monotonic()
    result = run_job(spec)
    took = time.monotonic() - t0
    from distsearch.results.files import read_run
    from distsearch.results.report import format_run

    run = read_run(result.run_dir)
    trials = run["trials"]
    assert run["run"]["out_of_time"] is True and not result.error_budget_exceeded
    assert set(trials[C.STATUS]) <= {C.STATUS_COMPLETED, C.STATUS_CANCELLED, C.STATUS_NOT_STARTED}
    # The hanging trial never finished an epoch, and is cancelled, never stopped_early; a trial that had
    # just started beside it when the clock ran out may be cancelled at 0 epochs too, whatever the timing.
    hung = trials[(trials[C.STATUS] == C.STATUS_CANCELLED) & (trials[C.EPOCHS_COMPLETED] == 0)]
    assert 1 <= len(hung) <= run["run"]["max_concurrent_trials"]
    assert (trials[C.STATUS] == C.STATUS_COMPLETED).sum() >= 1 and result.best is not None
    ran = run["run"]["trials_ran"]
    assert ran == (trials[C.STATUS] != C.STATUS_NOT_STARTED).sum() < spec.budget.num_trials
    assert f"{ran} of {spec.budget.num_trials} trials ran" in format_run(run)
    print(f"time budget: ended after {took:.1f} s, {ran} of {spec.budget.num_trials} trials ran: {trials[C.STATUS].value_counts().to_dict()}")
    assert_nothing_left()


def test_the_worker_epoch_budget_ends_the_sweep_and_records_what_it_cut(embedded_ray, tmp_path):
    """budget.worker_epochs: a budget of compute, not trials. Two one-worker trials train at a
    time, each in its own actor; once their epochs add up to the budget, no trial starts, the
    running ones are cancelled, and what ran is written as for any other end."""
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 200, "max_epochs": 4, "worker_epochs": 7},
            asha={"enabled": False},
            scaling={"num_workers": 1, "cpus_per_worker": 1},
            ensemble={"enabled": False},
        )
    )
    result = run_job(spec)
    from distsearch.results.files import read_run

    run = read_run(result.run_dir)
    trials, meta = run["trials"], run["run"]
    assert meta["out_of_worker_epochs"] is True and not meta["out_of_time"] and not result.error_budget_exceeded
    # the budget is counted from the results the driver took; a report in flight as the sweep
    # ended may still land, one per running trial at most
    assert 7 <= meta["worker_epochs"] <= 7 + meta["max_concurrent_trials"], meta["worker_epochs"]
    assert meta["worker_epochs"] == len(run["epochs"])
    assert set(trials[C.STATUS]) <= {C.STATUS_COMPLETED, C.STATUS_CANCELLED, C.STATUS_NOT_STARTED}
    assert (trials[C.STATUS] == C.STATUS_CANCELLED).sum() >= 1 and meta["trials_ran"] <= 4 < spec.budget.num_trials
    print(f"worker-epoch budget: {meta['worker_epochs']} spent of 7, {meta['trials_ran']} trials ran: {trials[C.STATUS].value_counts().to_dict()}")
    assert result.best is not None
    assert_nothing_left()
