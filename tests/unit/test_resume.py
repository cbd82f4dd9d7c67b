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
from distsearch import job, lease, registry, storage
from distsearch.results import files as results
from distsearch.search.plan import build_plan
from distsearch.spec.model import parse_job
from distsearch.sweep import recording

from ..conftest import assert_losers_name_the_owner, race_to_take, tiny_job
from .test_plan import ToySearcher


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _make_run(spec, run_id, *, finished=False, pid=None, host=None, heartbeat_age_s=0.0, job=None, ledger=True, started_days_ago=0, **driver):
    out = results.run_dir(spec.storage, spec.name, run_id)
    beat = datetime.now(timezone.utc) - timedelta(seconds=heartbeat_age_s)
    meta = {
        "run_id": run_id,
        "job": job if job is not None else spec.to_dict(),
        "started_at": (beat - timedelta(days=started_days_ago)).isoformat(),
        "heartbeat_at": beat.isoformat(),
        "driver": {"host": host or socket.gethostname(), "pid": pid or _dead_pid(), **driver},
    }
    if finished:
        meta["finished_at"] = beat.isoformat()
    storage.write_json(storage.join(out, C.RUN_FILE), meta)
    if ledger:
        storage.write_json(storage.join(out, C.LEDGER_DIR, "t0.json"), {C.TRIAL_ID: "t0", C.STARTED_AT: 1.0, C.PARAMS: {"lr": 0.01}})
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
        ({"ledger": False}, "its driver stopped before any trial started"),
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
    _make_run(spec, "20260101-000000-aaaaaa", host="elsewhere", heartbeat_age_s=lease.HEARTBEAT_STALE_S + 5)
    assert job.choose_run(spec, resume="require") == ("20260101-000000-aaaaaa", True)


def test_a_live_pid_that_is_not_the_driver_does_not_keep_its_run(spec):
    """A driver that was PID 1 of a container: after a restart PID 1 exists again (a new
    process, started later), and the heartbeat of the dead driver is still fresh."""
    _make_run(spec, "r1", pid=1, process_start="some-boot:123")
    assert job.choose_run(spec, resume="require") == ("r1", True)
    # the same pid with the start time it had: alive, even with a stale heartbeat
    _make_run(spec, "r1", pid=os.getppid(), process_start=lease._proc_start(os.getppid()), heartbeat_age_s=3600)
    with pytest.raises(ValueError, match="is still running"):
        job.choose_run(spec, resume="require")


def test_newest_means_latest_start_and_an_unreadable_run_is_skipped_with_a_warning(spec, caplog):
    _make_run(spec, "zzz-older", started_days_ago=2)
    _make_run(spec, "aaa-newer", started_days_ago=1)
    assert job.choose_run(spec, resume="require") == ("aaa-newer", True)
    broken = results.run_dir(spec.storage, spec.name, "bbb-broken")
    os.makedirs(broken)
    with open(f"{broken}/{C.RUN_FILE}", "w") as f:
        f.write('{"run_id": "bbb-bro')  # cut short
    assert job.choose_run(spec, resume="require") == ("aaa-newer", True)
    assert "skipping run bbb-broken: its run.json cannot be read (JSONDecodeError" in caplog.text and f"{broken}/{C.RUN_FILE}" in caplog.text


def test_of_drivers_that_take_over_a_run_at_once_exactly_one_does(spec, tmp_path):
    import yaml

    _make_run(spec, "r1")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    answers = race_to_take(tmp_path / "job.yaml")
    assert sorted(a.split()[0] for a in answers) == ["LOST", "LOST", "WON"], answers
    assert_losers_name_the_owner(answers, "tiny")
    assert [a for a in answers if a.startswith("WON")] == ["WON 0"]  # a run from before claims: generation 0
    # the winner has exited: the next driver takes the run over as generation 1
    assert job.take_run(spec, *job.choose_run(spec, resume="require"))["generation"] == 1


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
    sched = build_plan(spec).make_scheduler(prior)
    for t in map(_trial, range(3)):
        sched.on_trial_add(None, t)
    # a new trial is judged against the refilled rung: 0.5 is below its 2/3 quantile, so it stops
    late = _trial(9)
    sched.on_trial_add(None, late)
    assert sched.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.STOP
    # without the refill the same result would be the first at the rung, and continue
    fresh = build_plan(spec).make_scheduler()
    fresh.on_trial_add(None, late)
    assert fresh.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.CONTINUE


def test_replay_cuts_a_trial_that_crossed_a_rung_unjudged(tmp_path):
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 9, "max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 2}))
    prior = {"t0": [(1, 0.9)], "t1": [(1, 0.95)], "t2": [(1, 0.3)]}  # t2 is far below the rung's median
    sched = build_plan(spec).make_scheduler(prior)
    for t in map(_trial, range(3)):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, _trial(2), {"epoch": 1, "val_accuracy": 0.3}) == TrialScheduler.STOP
    assert sched.on_trial_result(None, _trial(1), {"epoch": 2, "val_accuracy": 0.96}) == TrialScheduler.CONTINUE


def test_recorder_keeps_each_epoch_once_and_writes_the_ledger(tmp_path):
    ledger = str(tmp_path / "ledger")
    rec = recording.ResultRecorder("val_accuracy", ledger)
    t = SimpleNamespace(trial_id="t0", config={"lr": 0.01}, get_error=lambda: None)
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


def test_the_worker_epoch_budget_counts_each_epoch_once_per_worker_earlier_drivers_included():
    # an earlier driver's rows: two epochs of a 2-worker trial
    prior = [{C.TRIAL_ID: "t0", C.EPOCH: 1, C.WORLD_SIZE: 2}, {C.TRIAL_ID: "t0", C.EPOCH: 2, C.WORLD_SIZE: 2}]
    budget = recording.SweepBudget(None, worker_epochs=10, prior_epochs=prior)
    assert budget.spent_worker_epochs == 4 and not budget.stop_all()
    budget("t0", {C.EPOCH: 2, C.WORLD_SIZE: 2})  # the resumed trial repeats its last report: not counted again
    budget("t1", {C.EPOCH: 1, C.WORLD_SIZE: 2})
    budget("t1", {"no_epoch": 1})  # a result without an epoch trained nothing
    assert budget.spent_worker_epochs == 6 and not budget.stop_all()
    budget("t0", {C.EPOCH: 3, C.WORLD_SIZE: 2})
    budget("t1", {C.EPOCH: 2, C.WORLD_SIZE: 2})
    assert budget.spent_worker_epochs == 10
    assert budget.stop_all() and budget.ran_out_of_epochs and not budget.ran_out_of_time and budget.ended_at is not None
    lone = recording.SweepBudget(None, worker_epochs=2)
    lone("a", {C.EPOCH: 1})  # no world size reported: one worker
    assert not lone.stop_all()
    lone("a", {C.EPOCH: 2, C.WORLD_SIZE: 1})
    assert lone.stop_all() and lone.ran_out_of_epochs
    assert not recording.SweepBudget(None, worker_epochs=None, prior_epochs=prior).stop_all()  # unset: no limit


def test_statuses_tell_an_asha_stop_from_a_budget_end_and_a_trial_that_never_started(tmp_path, monkeypatch):
    """Tune marks all three TERMINATED: the ledger and the budget's end time tell them apart."""
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 5, "max_epochs": 3, "max_failed_trials": 0}))
    now = [1000.0]
    monkeypatch.setattr(recording.time, "time", lambda: now[0])
    rec, budget = recording.ResultRecorder(spec.metric), recording.SweepBudget(0)
    trial = {t: SimpleNamespace(trial_id=t, status="TERMINATED", config={"lr": 0.1}) for t in ("done", "asha", "err", "running", "pending")}
    for t in ("done", "asha", "err", "running"):
        rec.on_trial_start(0, [], trial[t])
    for t, epochs in (("done", 3), ("asha", 1), ("running", 2)):
        for e in range(1, epochs + 1):
            rec.on_trial_result(0, [], trial[t], {C.EPOCH: e, spec.metric: 0.5})
    rec.on_trial_complete(0, [], trial["done"])
    rec.on_trial_complete(0, [], trial["asha"])  # ASHA stopped it at its first rung
    now[0] = 1010.0
    trial["err"].status = "ERROR"
    trial["err"].error_file = None
    trial["err"].get_error = lambda: "boom"
    rec.on_trial_error(0, [], trial["err"])
    budget.on_trial_error(0, [], trial["err"])
    now[0] = 1020.0
    assert budget.stop_all() and budget.ended_at == 1020.0  # the error budget ends the sweep
    now[0] = 1021.0
    rec.on_trial_complete(0, [], trial["running"])  # Tune stops what still runs; pending never starts
    rec.on_experiment_end(list(trial.values()))
    rows = {r[C.TRIAL_ID]: r for r in recording.trial_rows(spec, rec, {}, sweep_ended_at=budget.ended_at)}
    assert {t: r[C.STATUS] for t, r in rows.items()} == {
        "done": C.STATUS_COMPLETED,
        "asha": C.STATUS_STOPPED,
        "err": C.STATUS_ERROR,
        "running": C.STATUS_CANCELLED,
        "pending": C.STATUS_NOT_STARTED,
    }
    assert rows["err"][C.ERROR] == "boom" and rows["pending"][C.STARTED_AT] is None and rows["pending"][C.EPOCHS_COMPLETED] == 0
    # with no budget end, a trial that stopped short is ASHA's
    assert recording.trial_rows(spec, rec, {})[3][C.STATUS] == C.STATUS_STOPPED


def test_claims_written_at_once_have_exactly_one_winner(tmp_path):
    """The order of the claims decides, not who writes or reads first: three drivers claim one
    generation of a run at the same instant."""
    import threading

    run_dir = str(tmp_path / "run")
    drivers = [{**lease.me(), "pid": 100 + i} for i in range(3)]
    start, answers = threading.Barrier(3), {}

    def claim(d):
        start.wait()
        try:
            lease.claim(run_dir, d, 0, settle_s=0.5)
            answers[d["pid"]] = 0
        except lease.RunTaken as e:
            answers[d["pid"]] = str(e)

    threads = [threading.Thread(target=claim, args=(d,)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(os.listdir(f"{run_dir}/{C.DRIVERS_DIR}/000000")) == 3
    won = [pid for pid, a in answers.items() if a == 0]
    assert len(won) == 1, answers
    assert all(f"another driver (pid {won[0]} on " in a for pid, a in answers.items() if pid not in won)


@pytest.mark.parametrize("run_id", ["../../../x", "a/b", "..", "/tmp/x", "ok\n", ""])
def test_a_run_id_that_is_not_one_folder_name_is_refused(spec, run_id):
    """Issue 29, case 10: ``--run-id ../../../x`` wrote the run outside storage."""
    with pytest.raises(job.RunChoiceError, match="--run-id: got .*fix: use letters"):
        job.choose_run(spec, run_id=run_id, resume="auto")


def test_a_resume_reads_nothing_of_tunes_state_and_a_damaged_ledger_record_is_refused_naming_the_file(spec):
    """Issue 29, cases 1 and 2: Tune's saved state is a pickle in all but name (tuner.pkl, each
    trial's CLOUDPICKLE fields), and a half-size experiment state made Tune resume no trial at
    all. A resume reads only the ledger and the checkpoints: whatever Tune's files hold, the run
    resumes; a ledger record that cannot be read is refused, in auto mode too, naming the file."""
    out = _make_run(spec, "20260101-000000-aaaaaa")
    storage.write_bytes(storage.join(out, C.TUNE_DIR, "experiment_state-2026-01-01_00-00-00.json"), b'{"trial_data": [["{\\"trial_id')
    storage.write_bytes(storage.join(out, C.TUNE_DIR, "tuner.pkl"), b"not a pickle Tune wrote")
    assert job.choose_run(spec, resume="auto") == ("20260101-000000-aaaaaa", True)
    record = storage.join(out, C.LEDGER_DIR, "t1.json")
    storage.write_bytes(record, b'{"trial_id": "t1", "sta')
    for kwargs in ({"resume": "auto"}, {"resume": "require"}, {"run_id": "20260101-000000-aaaaaa", "resume": "auto"}):
        with pytest.raises(job.RunChoiceError, match=f"its ledger is damaged: {record} is damaged \\(JSONDecodeError.*fix: put back that file"):
            job.choose_run(spec, **kwargs)
    storage.write_json(record, {C.TRIAL_ID: "t2"})  # a record under another trial's name
    with pytest.raises(job.RunChoiceError, match="not a ledger record of trial t1"):
        job.choose_run(spec, resume="auto")


def test_ended_trials_that_a_resumed_driver_never_runs_refill_the_rungs_at_once(tmp_path):
    """The resumed sweep is a new Tune experiment: trials that ended under the first driver are
    never added to it, so their reports go into the rungs when the scheduler is built."""
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 9, "max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 3}))
    prior = {"t0": [(1, 0.9)], "t1": [(1, 0.8)], "t2": [(1, 0.95), (2, 0.96)]}
    sched = build_plan(spec).make_scheduler(prior, ended=["t0", "t1"])
    late = _trial(9)
    sched.on_trial_add(None, late)
    # the rung holds t0 and t1 (0.9, 0.8): 0.5 is below its 2/3 quantile
    assert sched.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.5}) == TrialScheduler.STOP
    assert "t0" not in sched._trial_info and "t2" not in sched._trial_info  # noqa: SLF001 - no ended trial is left live
    sched.on_trial_add(None, _trial(2))  # the unfinished one is replayed as Tune adds it
    assert sched.on_trial_result(None, _trial(2), {"epoch": 3, "val_accuracy": 0.8}) == TrialScheduler.CONTINUE


def _experiment(tmp_path, config, num_samples):
    from ray.tune.experiment import Experiment

    return Experiment("e", lambda config: None, config=config, num_samples=num_samples, storage_path=str(tmp_path / "tune"))


def _draw_all(search) -> list:
    out = []
    while (trial := search.next_trial()) is not None:
        out.append((trial.trial_id, trial.config))
        search.on_trial_complete(trial.trial_id)
    return out


def test_a_resumed_random_search_draws_the_first_drivers_trials_again_under_their_ids_and_drops_the_ended(tmp_path):
    from ray import tune

    from distsearch._ray.tune import LedgerResume

    spec = parse_job(tiny_job(tmp_path, search={"algorithm": "random"}, budget={"num_trials": 5, "max_epochs": 3}))
    plan = build_plan(spec)
    space = {"lr": tune.loguniform(1e-3, 1e-1)}
    first = plan.make_searcher(2)
    first.add_configurations([_experiment(tmp_path, space, 5)])
    drawn = _draw_all(first)
    ledger = {t: {C.TRIAL_ID: t, C.ENDED_AT: 1.0 if i in (0, 2) else None} for i, (t, _) in enumerate(drawn[:3])}
    resumed = plan.resume_searcher(2, ledger, {}, str(tmp_path / "tune"))
    search = LedgerResume(resumed.searcher, resumed.carried, resumed.ended, resumed.new_trials)
    search.add_configurations([_experiment(tmp_path, space, 5)])
    assert _draw_all(search) == [drawn[1], drawn[3], drawn[4]] and search.dropped == [drawn[0][0], drawn[2][0]]
    assert search.is_finished()


def test_a_resumed_search_runs_the_unfinished_trials_first_under_their_ids_then_draws_what_the_budget_has_left(tmp_path, monkeypatch):
    from distsearch._ray.tune import LedgerResume

    monkeypatch.setitem(registry.SEARCHERS, "toy", ToySearcher)
    space = {"lr": {"choice": [0.1, 0.01, 0.001, 0.0001]}}
    spec = parse_job(tiny_job(tmp_path, space=space, search={"algorithm": "toy"}, budget={"num_trials": 4, "max_epochs": 3}))
    ledger = {
        "a": {C.TRIAL_ID: "a", C.ENDED_AT: 2.0, C.PARAMS: {"lr": 0.1}},
        "b": {C.TRIAL_ID: "b", C.ENDED_AT: None, C.PARAMS: {"lr": 0.01}},
    }
    resumed = build_plan(spec).resume_searcher(2, ledger, {}, str(tmp_path / "tune"))
    assert resumed.carried == [("b", {"lr": 0.01})] and resumed.ended == {"a"} and resumed.new_trials == 2
    search = LedgerResume(resumed.searcher, resumed.carried, resumed.ended, resumed.new_trials)
    search.add_configurations([_experiment(tmp_path, {}, 4)])
    drawn = _draw_all(search)
    assert drawn[0] == ("b", {"lr": 0.01}) and len(drawn) == 3 and "a" not in {t for t, _ in drawn}


def test_a_trial_with_epoch_rows_always_has_a_trial_row(spec, tmp_path):
    """Issue 29, case 2: no trial with epoch rows ever lacks a trial row, even one Tune's list lacks."""
    rec = recording.ResultRecorder(spec.metric, str(tmp_path / "ledger"))
    listed = SimpleNamespace(trial_id="a", status="TERMINATED", config={"lr": 0.01}, error_file=None, get_error=lambda: None)
    lost = SimpleNamespace(trial_id="b", status="TERMINATED", config={"lr": 0.02})
    for trial in (listed, lost):
        rec.on_trial_start(0, [], trial)
        for epoch in (1, 2):
            rec.on_trial_result(0, [], trial, {C.EPOCH: epoch, spec.metric: 0.5})
    rec.on_trial_complete(0, [], lost)
    rec.trials = [listed]  # what Tune listed at the end
    rows = {r[C.TRIAL_ID]: r for r in recording.trial_rows(spec, rec, {})}
    assert set(rows) == {"a", "b"} and rows["b"]["params"] == {"lr": 0.02} and rows["b"][C.EPOCHS_COMPLETED] == 2


def test_a_trial_drawn_again_with_other_parameters_than_its_ledger_record_fails_before_it_trains(tmp_path):
    """A resumed trial trains on from its own checkpoint: if the search drew other parameters
    under its id (another Ray's sampling, say), those weights belong to another configuration."""
    from distsearch.sweep.trial import _ended_under_earlier_driver

    ledger = str(tmp_path / "ledger")
    storage.write_json(
        storage.join(ledger, "t0.json"), {C.TRIAL_ID: "t0", C.ENDED_AT: None, C.PARAMS: {"lr": 0.01, "model": "mlp", "model.depth": 2}}
    )
    from distsearch.space.names import OPTION_KEY

    nested = {"lr": 0.01, "model": {OPTION_KEY: "mlp", "depth": 2}}  # a first driver's config; a carried one is flat
    assert _ended_under_earlier_driver("t0", nested, ledger) == (False, None)
    assert _ended_under_earlier_driver("t0", {"lr": 0.01, "model": "mlp", "model.depth": 2}, ledger) == (False, None)
    with pytest.raises(
        RuntimeError,
        match=r"trial t0: its ledger record has the parameters .*'lr': 0.01.* but the search drew .*'lr': 0.02.*fix: resume with the Ray",
    ):
        _ended_under_earlier_driver("t0", {"lr": 0.02, "model": "mlp", "model.depth": 2}, ledger)


def test_a_lone_trials_own_checkpoints_give_its_reports_and_checkpoint_paths_to_a_resume(tmp_path):
    """A trial trained in its actor (harness.trial_processes: trial_actor) keeps its checkpoints
    itself (distsearch.train.store): a resume reads its reports from the latest kept one, with the
    path of each kept epoch, as it does a Ray Train run's; without a record, nothing is read."""
    from distsearch.sweep.resume import load_prior
    from distsearch.train.store import TrialCheckpoints

    run = tmp_path / "run"
    trial = storage.join(str(run), C.TRAIN_DIR, "t1")
    store = TrialCheckpoints(trial, num_to_keep=1)
    history = []
    for epoch, rank in [(1, 1.0), (2, 0.5), (3, 0.5)]:
        history.append({C.EPOCH: epoch, "val_accuracy": 0.5 + epoch / 10, C.TIMESTAMP: 1.8e9 + epoch})
        meta = json.dumps({C.EPOCH: epoch}).encode()
        store.write(epoch, rank, {C.CHECKPOINT_FILE: b"w", C.CHECKPOINT_META_FILE: meta, C.CHECKPOINT_HISTORY_FILE: json.dumps(history).encode()})
    (run / C.TRAIN_DIR / "t2").mkdir()  # a trial that never stored a checkpoint
    prior = load_prior(str(run))
    rows = {r[C.EPOCH]: r for r in prior.epoch_rows}
    assert sorted(rows) == [1, 2, 3] and {r[C.TRIAL_ID] for r in rows.values()} == {"t1"}
    assert rows[1][C.CHECKPOINT_PATH] == f"{trial}/checkpoint_000001" and rows[3][C.CHECKPOINT_PATH] == f"{trial}/checkpoint_000003"
    assert C.CHECKPOINT_PATH not in rows[2]  # dropped by retention


def test_a_trial_resumed_after_a_pause_repeats_the_reports_its_driver_never_took(tmp_path):
    """A trial paused at a rung trains on until the pause reaches it: the resume repeats every
    report past the last one the driver took (the ledger's, written at the pause), the
    checkpoint's own last; without that epoch, only the checkpoint's own."""
    from distsearch.sweep.trial import _ended_under_earlier_driver
    from distsearch.train.checkpoint import resumed_reports

    history = [{C.EPOCH: e, "val_accuracy": 0.1 * e, C.TIMESTAMP: 1.0 + e} for e in (1, 2, 3)]
    state = {"params": {"lr": 0.1}}
    assert resumed_reports(state, history, {"lr": 0.1}, "here") == [{C.EPOCH: 3, "val_accuracy": pytest.approx(0.3)}]
    assert [r[C.EPOCH] for r in resumed_reports(state, history, {"lr": 0.1}, "here", seen_epoch=1)] == [2, 3]
    assert [r[C.EPOCH] for r in resumed_reports(state, history, {"lr": 0.1}, "here", seen_epoch=3)] == [3]
    ledger = str(tmp_path / "ledger")
    storage.write_json(storage.join(ledger, "t0.json"), {C.TRIAL_ID: "t0", C.ENDED_AT: None, C.LAST_REPORT: {C.EPOCH: 1, "val_accuracy": 0.1}})
    assert _ended_under_earlier_driver("t0", {"lr": 0.1}, ledger) == (False, 1)
