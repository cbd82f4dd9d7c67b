"""One idea of "better": the metric's direction decides every ranking, and a failed trial is never best."""

import math

import pandas as pd
import pytest

from distsearch import constants as C
from distsearch.results import figures, report
from distsearch.search.objective import Objective


def test_better_follows_the_mode_and_missing_values_never_win():
    up, down = Objective("val_accuracy", "max"), Objective("val_loss", "min")
    assert up.better(0.9, 0.8) and not up.better(0.8, 0.9) and not up.better(0.9, 0.9)
    assert down.better(0.1, 0.2) and not down.better(0.2, 0.1)
    for o in (up, down):
        assert o.better(1.0, None) and o.better(1.0, math.nan)
        assert not o.better(None, 1.0) and not o.better(math.nan, 1.0)
    with pytest.raises(ValueError, match="fix: set mode to min or max"):
        Objective("val_loss", "lowest")


def test_best_keeps_the_first_of_equals_and_skips_nan():
    o = Objective("m", "max")
    assert o.best([(0.5, 1), (math.nan, 2), (0.7, 3), (0.7, 4)], key=lambda v: v[0]) == (0.7, 3)
    assert o.best([]) is None and o.best([math.nan]) is None
    assert Objective("m", "min").best_value(pd.Series([0.3, math.nan, 0.1])) == 0.1
    assert Objective("m", "max").within(0.996, 1.0, 0.005) and not Objective("m", "max").within(0.99, 1.0, 0.005)
    assert Objective("m", "min").within(1.004, 1.0, 0.005) and not Objective("m", "min").within(1.01, 1.0, 0.005)


def _trials(mode_best_failed: float):
    """Three trials; the failed one has the best metric of all (it reported before it failed)."""
    return pd.DataFrame(
        {
            C.TRIAL_ID: ["ok_a", "failed", "ok_b"],
            C.STATUS: [C.STATUS_STOPPED, C.STATUS_ERROR, C.STATUS_COMPLETED],
            C.BEST_METRIC: [0.80, mode_best_failed, 0.90],
            C.EPOCHS_COMPLETED: [1, 2, 3],
        }
    )


def test_a_failed_trial_is_never_the_best_trial():
    trials = _trials(0.99)
    o = Objective("val_accuracy", "max")
    assert o.best_trial(trials)[C.TRIAL_ID] == "ok_b"
    assert list(o.rank_trials(trials)[C.TRIAL_ID]) == ["ok_b", "ok_a", "failed"]
    assert Objective("val_loss", "min").best_trial(_trials(0.01))[C.TRIAL_ID] == "ok_a"
    assert o.best_trial(trials[trials[C.STATUS] == C.STATUS_ERROR]) is None


def _run(trials, epochs):
    job = {
        "name": "j",
        "task": "digits",
        "metric": "val_accuracy",
        "mode": "max",
        "budget": {"max_epochs": 3},
        "asha": {"enabled": True, "grace_period_epochs": 1, "reduction_factor": 3},
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
    }
    return {"trials": trials, "epochs": epochs, "run": {"run_id": "r", "job": job}, "best": None}


def test_figures_report_and_comparison_never_show_a_failed_trial_as_best():
    trials = _trials(0.99)
    trials[C.WALL_SECONDS] = 1.0
    trials[C.STARTED_AT] = pd.Timestamp("2026-01-01", tz="UTC")
    epochs = pd.DataFrame(
        {
            C.TRIAL_ID: ["ok_a", "failed", "failed", "ok_b", "ok_b", "ok_b"],
            C.EPOCH: [1, 1, 2, 1, 2, 3],
            "val_accuracy": [0.80, 0.95, 0.99, 0.7, 0.85, 0.90],
            C.TIMESTAMP: pd.date_range("2026-01-01 00:00:01", periods=6, freq="s", tz="UTC"),
        }
    )
    run = _run(trials, epochs)
    assert figures.best_trial_id(run) == "ok_b"
    board = report.leaderboard(trials, "val_accuracy", "max")
    assert list(board[C.TRIAL_ID]) == ["ok_b", "ok_a", "failed"]
    assert report.run_summary(run)["best val_accuracy"] == 0.90


def test_ties_are_broken_by_the_validation_loss_then_the_earlier_epoch():
    """Three trials at accuracy 1.0, as small validation sets give: the one with the lowest
    validation loss at its best epoch wins, whatever order the trials come in."""
    trials = pd.DataFrame(
        {
            C.TRIAL_ID: ["t0", "t1", "t2", "t3"],
            C.STATUS: [C.STATUS_COMPLETED] * 4,
            C.BEST_METRIC: [1.0, 1.0, 1.0, 0.9],
            C.BEST_EPOCH: pd.array([3, 5, 2, 1], dtype="Int64"),
            C.EPOCHS_COMPLETED: [9, 9, 9, 9],
        }
    )
    epochs = pd.DataFrame(
        {
            C.TRIAL_ID: ["t0", "t1", "t2", "t3"],
            C.EPOCH: pd.array([3, 5, 2, 1], dtype="Int64"),
            "val_accuracy": [1.0, 1.0, 1.0, 0.9],
            "val_loss": [0.51, 2e-7, 2e-7, 0.01],
        }
    )
    o = Objective("val_accuracy", "max")
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        shuffled = trials.iloc[order]
        # t1 and t2 tie on the loss too: the earlier best epoch (t2's 2) wins
        assert list(o.rank_trials(shuffled, epochs)[C.TRIAL_ID]) == ["t2", "t1", "t0", "t3"]
        assert o.best_trial(shuffled, epochs)[C.TRIAL_ID] == "t2"
    # without the epochs: metric, then the earlier best epoch, then the trial id
    assert list(o.rank_trials(trials.iloc[[1, 0, 2, 3]])[C.TRIAL_ID]) == ["t2", "t0", "t1", "t3"]
