"""Selection on small validation splits: smoothed curves, several checkpoints per trial, and the refit."""

import math

import pandas as pd
import pytest
import torch

from distsearch import constants as C
from distsearch.search.objective import Objective, trailing_means
from distsearch.select import evaluate
from distsearch.select.load import load_model
from distsearch.select.refit import merged_splits, refit
from distsearch.select.view import selection_view
from distsearch.spec.errors import SpecError
from distsearch.spec.model import parse_job
from distsearch.train.checkpoint import keep_rank

from ..conftest import tiny_job
from .test_ensemble import _CountingDigits, train_fake_run

ACC = Objective("val_accuracy", "max")
SPIKE = [0.5, 0.95, 0.6, 0.8, 0.82, 0.83]  # epoch 2 is a one-epoch spike; epochs 4-6 hold steady


def test_trailing_means_average_what_came_before_and_skip_what_is_missing():
    assert trailing_means([1.0, 3.0, None, math.nan, 5.0], 2) == [1.0, 2.0, 3.0, None, 5.0]
    assert trailing_means([0.2, 0.4], 1) == [0.2, 0.4]
    assert trailing_means(SPIKE, 3)[1] == pytest.approx(0.725)


def test_checkpoints_are_kept_by_the_smoothed_rule_the_selection_uses():
    history = [{"epoch": i + 1, "val_accuracy": v} for i, v in enumerate(SPIKE)]
    # epoch 6 is the best three-epoch mean (0.817), so its checkpoint outranks every earlier one
    assert keep_rank(ACC, history, 3) > max(keep_rank(ACC, history[:n], 3) for n in range(1, 6))
    # by the epoch's own value, epoch 2's spike stays the best and epoch 6 ranks below it
    assert keep_rank(ACC, history, 1) < keep_rank(ACC, history[:2], 1)


def _curves() -> tuple[pd.DataFrame, pd.DataFrame]:
    steady = [0.5, 0.8, 0.85, 0.86, 0.85, 0.86]
    rows = [{C.TRIAL_ID: t, C.EPOCH: e + 1, "val_accuracy": v, "val_loss": 1 - v} for t, c in (("a", SPIKE), ("b", steady)) for e, v in enumerate(c)]
    epochs = pd.DataFrame(rows)
    trials = pd.DataFrame({C.TRIAL_ID: ["a", "b"], C.STATUS: C.STATUS_COMPLETED, C.BEST_METRIC: [0.95, 0.86], C.BEST_EPOCH: [2, 4]})
    return trials, epochs.astype({C.EPOCH: "Int64"})


def test_a_one_epoch_spike_wins_the_raw_rule_and_loses_the_smoothed_one():
    trials, epochs = _curves()
    same_trials, same_epochs = selection_view(trials, epochs, ACC, 1)
    assert same_trials is trials and same_epochs is epochs
    assert ACC.best_trial(trials, epochs)[C.TRIAL_ID] == "a"
    view_trials, view_epochs = selection_view(trials, epochs, ACC, 3)
    best = ACC.best_trial(view_trials, view_epochs)
    assert best[C.TRIAL_ID] == "b" and best[C.BEST_EPOCH] == 6 and best[C.BEST_METRIC] == pytest.approx((0.86 + 0.85 + 0.86) / 3)
    assert view_trials.set_index(C.TRIAL_ID).loc["a", C.BEST_EPOCH] == 6  # a's steady end beats its spike's window too
    assert epochs["val_accuracy"].tolist()[:6] == SPIKE  # the recorded frames are left as they were
    assert list(view_trials.columns) == list(trials.columns)


def test_more_checkpoints_per_trial_than_a_trial_keeps_is_refused_with_the_fix(tmp_path):
    with pytest.raises(
        SpecError,
        match=r"selection.checkpoints_per_trial: got 4 > checkpointing.num_to_keep \+ 1 = 3.*fix: set checkpointing.num_to_keep to at least 3",
    ):
        parse_job(tiny_job(tmp_path, selection={"checkpoints_per_trial": 4}))
    assert (
        parse_job(tiny_job(tmp_path, selection={"checkpoints_per_trial": 4}, checkpointing={"num_to_keep": 3})).selection.checkpoints_per_trial == 4
    )


def test_a_refit_trains_on_train_and_validation_to_the_epoch_and_leaves_the_callers_generator(tmp_path):
    task = _CountingDigits({})
    splits = task.splits(0)
    merged = merged_splits(splits)
    assert len(merged.train[1]) == len(splits.train[1]) + len(splits.val[1]) and len(merged.test[1]) == 0
    params = {"model": "mlp", "model.depth": 1, "model.width": 16, "lr": 0.01, "optimizer": "adam", "batch_size": 64}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, seconds = refit(task, merged, params, 2, 5, seed=7)
    assert torch.equal(torch.get_rng_state(), before) and seconds > 0 and not first.training
    again, _ = refit(task, merged, params, 2, 5, seed=7)
    further, _ = refit(task, merged, params, 3, 5, seed=7)
    weights = lambda m: torch.cat([p.flatten() for p in m.state_dict().values()])  # noqa: E731
    assert torch.equal(weights(first), weights(again)) and not torch.equal(weights(first), weights(further))


def test_several_checkpoints_per_trial_and_a_refit_are_scored_once_on_test_and_load(tmp_path):
    spec = parse_job(
        tiny_job(
            tmp_path, ensemble={"top_trials": 3, "rounds": 8}, selection={"checkpoints_per_trial": 3, "refit": True}, checkpointing={"num_to_keep": 2}
        )
    )
    task, splits, trials, epochs = train_fake_run(tmp_path, spec)
    best, ensemble = evaluate.evaluate_run(spec, task, splits, trials, epochs, str(tmp_path))
    assert _CountingDigits.test_scored == 2  # the refit single best, then the refit ensemble
    rows = len(splits.train[1]) + len(splits.val[1])
    assert best["refit"] == {C.EPOCH: best[C.EPOCH], "rows": rows, "seconds": best["refit"]["seconds"]}
    assert len(ensemble["refit"]) == len(ensemble["members"]) and all(r["rows"] == rows for r in ensemble["refit"])
    assert ensemble["checkpoints_per_trial"] == 3
    assert len(ensemble["candidates"]) == 3 and ensemble["candidate_checkpoints"] == 9  # three trials, three epochs each
    loaded = load_model(tmp_path, ensemble=True)
    assert len(loaded.members) == len(ensemble["members"]) and sum(loaded.members.values()) == pytest.approx(1.0)
    with torch.no_grad():  # the module on the encoded test inputs, as the evaluation fed it
        accuracy = float((loaded.module(splits.test[0]).argmax(1) == splits.test[1]).double().mean())
    assert accuracy == pytest.approx(ensemble["test"]["test_accuracy"], abs=1e-9)  # the saved model is the refit one scored
