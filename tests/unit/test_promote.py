"""Promotion ASHA, built from the job as the driver builds it, fed fake per-epoch results (no cluster)."""

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from distsearch.search.plan import build_plan
from distsearch.search.promote import PromotionRungs, bracket_levels
from distsearch.spec.model import parse_job

from ..conftest import tiny_job

PAUSE, GO = TrialScheduler.PAUSE, TrialScheduler.CONTINUE


def _spec(tmp_path, num_trials=9, **asha):
    asha = {"grace_period_epochs": 1, "reduction_factor": 3, "variant": "promote", **asha}
    return parse_job(tiny_job(tmp_path, budget={"num_trials": num_trials, "max_epochs": 9}, asha=asha))


def _trial(i):
    return SimpleNamespace(trial_id=f"t{i}", status="RUNNING")


def _report(sched, trial, epoch, value):
    return sched.on_trial_result(None, trial, {"epoch": epoch, "val_accuracy": value})


def test_the_brackets_start_a_factor_apart_and_end_at_max_epochs():
    assert bracket_levels(1, 3, 9, 1) == [[1, 3, 9]]
    assert bracket_levels(1, 3, 9, 3) == [[1, 3, 9], [3, 9], [9]]
    assert bracket_levels(1, 3, 9, 5) == [[1, 3, 9], [3, 9], [9]]  # a bracket past max_epochs is left out
    assert bracket_levels(2, 2, 20, 1) == [[2, 4, 8, 16, 20]]


def test_a_trial_pauses_at_a_rung_until_a_third_of_the_rung_is_behind_it(tmp_path):
    plan = build_plan(_spec(tmp_path))
    assert plan.summary == "random+promote"
    sched = plan.make_scheduler()
    sched.concurrency = 2
    trials = [_trial(i) for i in range(3)]
    for t in trials:
        sched.on_trial_add(None, t)
    assert _report(sched, trials[0], 1, 0.9) == PAUSE  # alone at the rung: the top third of 1 is nobody
    assert _report(sched, trials[1], 1, 0.5) == PAUSE
    assert sched.promote() is None  # 2 at the rung: still nobody
    # the third arrival makes the rung's top third one trial: t0, paused; t2 is worse and waits too
    assert _report(sched, trials[2], 1, 0.3) == PAUSE
    assert sched.promote() is trials[0]
    assert sched.promote() is None  # promoted once per rung
    assert _report(sched, trials[0], 2, 0.91) == GO  # between rungs it trains on
    assert _report(sched, trials[0], 3, 0.92) == PAUSE  # alone at the second rung


def test_a_trial_in_its_rungs_top_third_as_it_arrives_goes_on_without_pausing(tmp_path):
    sched = build_plan(_spec(tmp_path)).make_scheduler()
    trials = [_trial(i) for i in range(3)]
    for t in trials:
        sched.on_trial_add(None, t)
    assert _report(sched, trials[0], 1, 0.2) == PAUSE
    assert _report(sched, trials[1], 1, 0.3) == PAUSE
    assert _report(sched, trials[2], 1, 0.9) == GO
    assert sched.rungs.paused == {"t0": (0, 0), "t1": (0, 0)}


def test_the_highest_rungs_trial_is_promoted_first():
    rungs = PromotionRungs([[1, 3, 9]], 3, "max")
    # three arrive at the second rung (epoch 3) and three at the first, each set in the same order
    for prefix, epoch in (("x", 3), ("y", 1)):
        assert [rungs.arrive(f"{prefix}{i}", epoch, v) for i, v in enumerate([0.9, 0.5, 0.4])] == ["pause"] * 3
    assert rungs.next_promotion() == "x0"
    assert rungs.next_promotion() == "y0"
    assert rungs.next_promotion() is None
    assert set(rungs.paused) == {"x1", "x2", "y1", "y2"}


def test_min_mode_promotes_the_lowest_and_a_nan_ranks_last():
    rungs = PromotionRungs([[1, 9]], 3, "min")
    assert [rungs.arrive(t, 1, v) for t, v in (("a", float("nan")), ("b", 0.2), ("c", 0.7))] == ["pause"] * 3
    assert rungs.next_promotion() == "b"


def test_the_limit_counts_running_trials_and_a_waiting_promotion_draws_no_new_one(tmp_path):
    plan = build_plan(_spec(tmp_path, num_trials=20))
    sched = plan.make_scheduler()
    search = plan.make_search(2, sched)
    assert sched.concurrency == 2
    from ray.tune.experiment import Experiment

    search.add_configurations([Experiment("x", lambda c: None, config=plan.param_space(), num_samples=20, storage_path=str(tmp_path))])
    a, b = search.next_trial(), search.next_trial()
    for t in (a, b):
        sched.on_trial_add(None, t)
    assert search.next_trial() is None  # two hold the two slots
    assert _report(sched, a, 1, 0.5) == PAUSE
    c = search.next_trial()  # a paused trial holds no slot
    assert c is not None
    sched.on_trial_add(None, c)
    assert _report(sched, b, 1, 0.4) == PAUSE
    assert _report(sched, c, 1, 0.1) == PAUSE  # a is now the rung's top third: a promotion waits
    assert search.next_trial() is None
    assert sched.promote() is a
    d = search.next_trial()
    assert d is not None and sched.promote() is None


def test_the_paused_trials_are_stopped_once_nothing_runs_and_nothing_is_left_to_draw(tmp_path):
    sched = build_plan(_spec(tmp_path)).make_scheduler()
    trials = [_trial(i) for i in range(2)]
    for t in trials:
        sched.on_trial_add(None, t)
    _report(sched, trials[0], 1, 0.5)
    assert sched.left_paused(search_finished=True) == []  # t1 still runs
    _report(sched, trials[1], 1, 0.4)
    assert sched.left_paused(search_finished=False) == []  # more may arrive at the rung
    assert sorted(t.trial_id for t in sched.left_paused(search_finished=True)) == ["t0", "t1"]
    assert sched.stopped == {"t0", "t1"}


def test_a_resumed_driver_replays_the_rungs_and_runs_its_unfinished_trials_on(tmp_path):
    prior = {"t0": [(1, 0.9)], "t1": [(1, 0.5)], "t2": [(1, 0.3)]}
    sched = build_plan(_spec(tmp_path)).make_scheduler(prior, ended=["t2"])
    t0, t1 = _trial(0), _trial(1)
    sched.on_trial_add(None, t0)
    sched.on_trial_add(None, t1)
    assert sched.rungs.paused == {} and sched.active == {"t0", "t1"}  # both hold a slot again
    assert sched.rungs.recorded[0][0] == {"t0": 0.9, "t1": 0.5, "t2": 0.3}
    assert _report(sched, t0, 2, 0.9) == GO
