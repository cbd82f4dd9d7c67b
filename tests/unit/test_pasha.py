"""PASHA, built from the job as the driver builds it, fed fake per-epoch results (no cluster)."""

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from distsearch.search.bohb_plan import rung_epochs
from distsearch.search.pasha import PashaRungs
from distsearch.search.plan import build_plan
from distsearch.spec.model import parse_job

from ..conftest import tiny_job

STOP, GO = TrialScheduler.STOP, TrialScheduler.CONTINUE


def _spec(tmp_path, **asha):
    asha = {"grace_period_epochs": 1, "reduction_factor": 3, "variant": "pasha", **asha}
    return parse_job(tiny_job(tmp_path, budget={"num_trials": 9, "max_epochs": 20}, asha=asha))


def _trial(i):
    return SimpleNamespace(trial_id=f"t{i}", status="RUNNING")


def _run(sched, trial, values, start=1):
    """Report ``values`` for epochs start, start+1, ... until the scheduler stops the trial; the last epoch reached."""
    for epoch, value in enumerate(values, start):
        if sched.on_trial_result(None, trial, {"epoch": epoch, "val_accuracy": value}) == STOP:
            return epoch
    return epoch


def test_the_rungs_are_ashas_with_max_epochs_on_top(tmp_path):
    assert rung_epochs(_spec(tmp_path)) == [1, 3, 9, 20]
    assert rung_epochs(_spec(tmp_path, grace_period_epochs=2, reduction_factor=2)) == [2, 4, 8, 16, 20]


def test_a_stable_ranking_keeps_the_maximum_at_the_second_rung(tmp_path):
    plan = build_plan(_spec(tmp_path))
    assert plan.summary == "random+pasha"
    sched = plan.make_scheduler()
    # every trial keeps its place: better at epoch 1 is better at epoch 3
    ends = []
    for i in range(6):
        t = _trial(i)
        sched.on_trial_add(None, t)
        ends.append(_run(sched, t, [0.5 + 0.05 * i + 0.01 * e for e in range(20)]))
    assert ends[0] == 3 and all(e <= 3 for e in ends), ends  # nobody trains past the second rung
    assert sched.rungs.max_epochs_now == 3
    assert sched.stopped == {f"t{i}" for i in range(6)}


def test_a_swapped_ranking_grows_the_maximum_and_the_trial_goes_on(tmp_path):
    sched = build_plan(_spec(tmp_path)).make_scheduler()
    a, b, c = _trial(0), _trial(1), _trial(2)
    for t in (a, b, c):
        sched.on_trial_add(None, t)
    assert _run(sched, c, [0.3]) == 1
    assert _run(sched, a, [0.6, 0.6, 0.6, 0.6]) == 3  # alone at the top: stopped at the maximum, 3
    # b is worse than a at epoch 1 and better at epoch 3: the ranking swapped, so 3 epochs were
    # not enough; the maximum grows to the next rung and b, above ASHA's cutoff there, goes on
    assert _run(sched, b, [0.5, 0.55, 0.7]) == 3
    assert sched.on_trial_result(None, b, {"epoch": 4, "val_accuracy": 0.71}) == GO
    assert sched.rungs.max_epochs_now == 9
    assert sched.stopped == {"t0"}


def test_soft_ranking_ignores_swaps_within_the_noise_it_has_seen():
    rungs = PashaRungs([1, 3, 9, 20], reduction_factor=3, mode="max")
    # the first swap (0.05 apart at rung 1) grows the maximum, and teaches epsilon = 0.05
    assert rungs.decide("a", 1, 0.5) == "continue" and rungs.decide("b", 1, 0.55) == "continue"
    assert rungs.decide("b", 3, 0.85) == "stop"  # alone at rung 3: nothing to compare
    assert rungs.decide("a", 3, 0.9) == "continue"  # a overtook b: the ranking changed, so 9 epochs now
    assert rungs.max_epochs_now == 9 and rungs.epsilon() == pytest.approx(0.05)
    # at rungs 3 and 9, c and a swap 0.02 apart at rung 3, within that noise: the maximum stays at 9
    assert rungs.decide("c", 1, 0.95) == "continue" and rungs.decide("c", 3, 0.92) == "continue"
    assert rungs.decide("a", 9, 0.91) == "stop"
    assert rungs.decide("c", 9, 0.90) == "stop"
    assert rungs.max_epochs_now == 9
    # d, the best at rung 3 and the worst at rung 9, swaps wider than epsilon: the maximum grows
    # to 20, and ASHA's rule at rung 9 stops d itself
    assert rungs.decide("d", 1, 0.99) == "continue" and rungs.decide("d", 3, 0.99) == "continue"
    assert rungs.decide("d", 9, 0.80) == "stop" and rungs.max_epochs_now == 20


def test_below_the_maximum_ashas_rule_stops_the_worse_trials():
    rungs = PashaRungs([1, 3, 9, 20], reduction_factor=3, mode="min")
    for i, value in enumerate([0.4, 0.3, 0.2, 0.1]):  # each better than the ones before, in mode min
        assert rungs.decide(f"t{i}", 1, value) == "continue"
    assert rungs.decide("late", 1, 0.9) == "stop"  # worse than two thirds of rung 1, in mode min


def test_a_resumed_pasha_is_refilled_from_the_earlier_drivers_results(tmp_path):
    prior = {"t0": [(1, 0.5), (2, 0.55), (3, 0.6)], "t2": [(1, 0.3)], "t1": [(1, 0.45), (2, 0.62)]}
    sched = build_plan(_spec(tmp_path)).make_scheduler(prior, ended=["t0", "t2"])
    assert sched.rungs.recorded[1] == {"t0": 0.6}  # the ended trials' values are in the rungs
    t1 = _trial(1)
    sched.on_trial_add(None, t1)
    assert sched.rungs.recorded[0] == {"t0": 0.5, "t2": 0.3, "t1": 0.45}
    # t1 overtakes t0 between the rungs: the ranking changed, so the maximum grows and t1 goes on
    assert sched.on_trial_result(None, t1, {"epoch": 3, "val_accuracy": 0.7}) == GO
    assert sched.rungs.max_epochs_now == 9


def test_an_unknown_variant_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"asha.variant: got 'hyper'; fix: use one of asha, pasha"):
        _spec(tmp_path, variant="hyper")
