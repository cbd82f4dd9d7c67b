"""Pareto order and MOASHA, fed fake per-epoch results as Ray's own ASHA tests are (no cluster)."""

from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from distsearch.search.moasha import ParetoRungs
from distsearch.search.pareto import as_minimised, crowding_distances, hypervolume, non_dominated_ranks, pareto_order, violation
from distsearch.search.plan import build_plan, summary_of
from distsearch.spec.model import parse_job

from ..conftest import tiny_job

STOP, GO = TrialScheduler.STOP, TrialScheduler.CONTINUE
ACC_LATENCY = [("val_accuracy", "max"), ("latency_ms", "min")]


def _point(acc, ms):
    return {"val_accuracy": acc, "latency_ms": ms}


def test_fronts_crowding_and_order_of_a_small_set():
    pts = as_minimised([_point(0.9, 10), _point(0.5, 1), _point(0.6, 6), _point(0.55, 8), _point(0.9, 12)], ACC_LATENCY)
    assert pts[0].tolist() == [-0.9, 10]  # accuracy is negated: lower is better in every column
    assert non_dominated_ranks(pts).tolist() == [0, 0, 0, 1, 1]
    front = pts[:3]
    assert np.isinf(crowding_distances(front)[:2]).all() and np.isfinite(crowding_distances(front)[2])
    assert pareto_order(pts).tolist() == [0, 1, 2, 3, 4]  # ends of the front, its middle, then the next front (two ends: given order)
    # a point that misses a bound goes after every one that meets it, however good
    miss = [violation(v, {"latency_ms": (None, 9.0)}) for v in [_point(0.9, 10), _point(0.5, 1), _point(0.6, 6), _point(0.55, 8), _point(0.9, 12)]]
    assert miss == [1.0, 0.0, 0.0, 0.0, 3.0]
    assert pareto_order(pts, miss).tolist() == [1, 2, 3, 0, 4]
    assert violation({"val_accuracy": 0.9}, {"latency_ms": (None, 9.0)}) == float("inf")  # unmeasured: not met


def test_hypervolume_of_known_staircases():
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]), [4.0, 4.0]) == pytest.approx(6.0)
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), [1.0, 2.0, 3.0]) == pytest.approx(6.0)
    # two boxes of 8 overlapping in 1x2x2 = 4: 12
    assert hypervolume(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), [2.0, 2.0, 2.0]) == pytest.approx(8.0)
    assert hypervolume(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), [2.0, 2.0, 2.0]) == pytest.approx(6.0)
    assert hypervolume(np.array([[5.0, 5.0]]), [4.0, 4.0]) == 0.0  # beyond the reference: adds nothing
    # a dominated point adds nothing
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0]]), [4.0, 4.0]) == pytest.approx(6.0)


def test_with_one_objective_the_rungs_keep_what_ashas_keep_on_distinct_values():
    """One objective: the top third of a rung, at least the first, as Tune's ASHA at reduction factor 3."""
    rng = np.random.default_rng(0)
    asha = ASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=27, grace_period=1, reduction_factor=3)
    rungs = ParetoRungs([1, 3, 9], 3, [("val_accuracy", "max")])
    agree = 0
    for i in range(30):
        trial = SimpleNamespace(trial_id=f"t{i}", status="RUNNING")
        asha.on_trial_add(None, trial)
        value = float(rng.uniform())
        theirs = asha.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": value})
        mine = rungs.decide(trial.trial_id, 1, {"val_accuracy": value})
        agree += (theirs == STOP) == (mine == "stop")
    # ASHA interpolates its cutoff between recorded values, MOASHA counts places: they differ only near the cutoff
    assert agree >= 27, agree


def test_a_rung_keeps_a_fronts_ends_and_stops_the_dominated():
    rungs = ParetoRungs([1], 2, ACC_LATENCY)
    assert rungs.decide("accurate", 1, _point(0.9, 10)) == "continue"  # the first at a rung goes on
    assert rungs.decide("dominated", 1, _point(0.8, 12)) == "stop"
    assert rungs.decide("fast", 1, _point(0.5, 1)) == "continue"  # a trade-off: an end of the front
    assert rungs.decide("worse", 1, _point(0.4, 20)) == "stop"
    assert rungs.decide("fast", 1, _point(0.1, 100)) == "continue"  # recorded once per rung: this epoch is past it
    assert len(rungs.recorded[0]) == 4


def test_a_constraint_stops_a_trial_that_misses_it_however_accurate():
    rungs = ParetoRungs([1], 2, ACC_LATENCY, {"latency_ms": (None, 5.0)})
    assert rungs.decide("a", 1, _point(0.6, 4)) == "continue"
    assert rungs.decide("too_slow", 1, _point(0.99, 9)) == "stop"
    assert rungs.decide("b", 1, _point(0.7, 3)) == "continue"  # dominates a, and meets the bound


def _plan(tmp_path, **job):
    raw = tiny_job(
        tmp_path,
        budget={"num_trials": 6, "max_epochs": 5},
        asha={"grace_period_epochs": 1, "reduction_factor": 3},
        objectives=[{"val_accuracy": "max"}, {"latency_ms": "min"}],
        constraints={"num_params": {"max": 1e6}},
        **job,
    )
    return build_plan(parse_job(raw))


def _run(sched, trial_id, acc, ms):
    """Report epochs 1-5 until the scheduler stops the trial; the last epoch reached."""
    trial = SimpleNamespace(trial_id=trial_id, status="RUNNING")
    sched.on_trial_add(None, trial)
    assert sched.on_trial_result(None, trial, {"epoch": 1, "val_accuracy": acc}) == GO  # no costs in this result: goes on
    for epoch in range(1, 6):
        if sched.on_trial_result(None, trial, {"epoch": epoch, "val_accuracy": acc + 0.01 * epoch, "latency_ms": ms, "num_params": 1000}) == STOP:
            return epoch
    return epoch


TRADE_OFFS = [(0.9, 10), (0.5, 1), (0.4, 12), (0.45, 11), (0.3, 15), (0.85, 9)]


def test_a_job_with_objectives_gets_moasha_on_ashas_rungs_and_stops_the_dominated(tmp_path):
    plan = _plan(tmp_path)
    assert plan.summary == "random+moasha" and plan.result_metrics() == ["val_accuracy", "latency_ms", "num_params"]
    assert summary_of({"job": plan.spec.to_dict()}) == "random+moasha"
    sched = plan.make_scheduler()
    ends = {f"t{i}": _run(sched, f"t{i}", acc, ms) for i, (acc, ms) in enumerate(TRADE_OFFS)}
    # rungs at 1 and 3: the accurate and the fast trade-offs go on, the dominated stop at the first rung
    assert ends["t0"] == 5 and ends["t2"] == 1 and ends["t3"] == 1 and ends["t4"] == 1, ends
    assert sched.stopped == {t for t, e in ends.items() if e < 5}
    assert "MOASHA on val_accuracy (max), latency_ms (min)" in sched.debug_string()
    # without objectives the same job keeps ASHA
    assert build_plan(parse_job({**plan.spec.to_dict(), "objectives": [], "constraints": {}})).summary == "random+asha"


def test_a_resumed_moasha_replays_every_metric_it_reads_into_its_rungs(tmp_path):
    plan = _plan(tmp_path)
    # an earlier driver saw t0 (accurate) and t1 (fast) pass rung 1; t5, ended, was at rung 1 too
    prior = {
        t: [(1, {"val_accuracy": acc, "latency_ms": ms, "num_params": 1000.0})]
        for t, (acc, ms) in {"t0": (0.9, 10), "t1": (0.5, 1), "t5": (0.85, 9)}.items()
    }
    sched = plan.make_scheduler(prior, ended=["t5"])
    assert [len(r) for r in sched.rungs.recorded] == [1, 0]  # the ended trial now; the others as Tune adds them
    assert _run(sched, "t0", 0.9, 10) == 5 and len(sched.rungs.recorded[0]) == 2
    # a new trial dominated by what the earlier driver saw stops at once
    assert _run(sched, "t9", 0.4, 12) == 1
