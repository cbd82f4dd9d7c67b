"""ASHA, configured exactly as the driver configures it, fed fake per-epoch results (no cluster)."""

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from distsearch.search.plan import build_plan
from distsearch.spec.model import parse_job

from ..conftest import tiny_job


def _spec(tmp_path, **asha):
    return parse_job(tiny_job(tmp_path, budget={"num_trials": 9, "max_epochs": 9}, asha={"grace_period_epochs": 1, "reduction_factor": 3, **asha}))


def _trial(i):
    return SimpleNamespace(trial_id=f"t{i}", status="RUNNING")


def test_asha_stops_the_worse_trials_at_the_first_rung(tmp_path):
    sched = build_plan(_spec(tmp_path)).make_scheduler()
    trials = [_trial(i) for i in range(9)]
    for t in trials:
        sched.on_trial_add(None, t)
    decisions = {}
    # trials report epoch 1 in order of increasing accuracy: each new one is the best so far,
    # so it continues; then the worst trials re-report and ASHA cuts them at rung 1.
    for i, t in enumerate(trials):
        decisions[t.trial_id] = sched.on_trial_result(None, t, {"epoch": 1, "val_accuracy": 0.1 * (i + 1)})
    assert decisions["t8"] == TrialScheduler.CONTINUE
    late = _trial(99)
    sched.on_trial_add(None, late)
    assert sched.on_trial_result(None, late, {"epoch": 1, "val_accuracy": 0.05}) == TrialScheduler.STOP
    # what the progress line counts as "stopped early": exactly the trials the rungs stopped
    assert sched.stopped == {t for t, d in decisions.items() if d == TrialScheduler.STOP} | {late.trial_id}


def test_asha_respects_mode_min(tmp_path):
    spec = parse_job({**tiny_job(tmp_path, asha={"grace_period_epochs": 1, "reduction_factor": 2}), "metric": "val_loss", "mode": "min"})
    sched = build_plan(spec).make_scheduler()
    good, bad = _trial(0), _trial(1)
    for t in (good, bad):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, good, {"epoch": 1, "val_loss": 0.1}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, bad, {"epoch": 1, "val_loss": 5.0}) == TrialScheduler.STOP


def test_no_stop_before_the_grace_period(tmp_path):
    sched = build_plan(_spec(tmp_path, grace_period_epochs=3)).make_scheduler()
    trials = [_trial(i) for i in range(4)]
    for t in trials:
        sched.on_trial_add(None, t)
    for epoch in (1, 2):
        for i, t in enumerate(trials):
            assert sched.on_trial_result(None, t, {"epoch": epoch, "val_accuracy": 0.9 - 0.2 * i}) == TrialScheduler.CONTINUE
    outcomes = [sched.on_trial_result(None, t, {"epoch": 3, "val_accuracy": 0.9 - 0.2 * i}) for i, t in enumerate(trials)]
    assert TrialScheduler.STOP in outcomes


def test_trial_runs_to_max_epochs(tmp_path):
    sched = build_plan(_spec(tmp_path)).make_scheduler()
    t = _trial(0)
    sched.on_trial_add(None, t)
    decisions = [sched.on_trial_result(None, t, {"epoch": e, "val_accuracy": 0.5}) for e in range(1, 10)]
    assert decisions[:-1] == [TrialScheduler.CONTINUE] * 8 and decisions[-1] == TrialScheduler.STOP  # max_t reached


def test_disabled_asha_is_fifo_and_never_stops(tmp_path):
    sched = build_plan(_spec(tmp_path, enabled=False)).make_scheduler()
    trials = [_trial(i) for i in range(4)]
    for t in trials:
        sched.on_trial_add(None, t)
    for epoch in range(1, 10):
        for i, t in enumerate(trials):
            assert sched.on_trial_result(None, t, {"epoch": epoch, "val_accuracy": 0.01 * i}) == TrialScheduler.CONTINUE
