"""BOHB-style search with fake results (no cluster): which rung it models, what each fit holds,
how it resumes from a ledger, and the JSON it saves."""

import json
import pickle

import pytest
from optuna.trial import TrialState

from distsearch import constants as C
from distsearch.search.bohb import BOHBSearch
from distsearch.search.plan import build_plan
from distsearch.search.tpe import UnsafeSearcherState
from distsearch.space.names import flatten
from distsearch.spec.model import parse_job

from ..conftest import tiny_job

SPACE = {
    "model": {"choice": {"mlp": {"depth": {"randint": [1, 4]}}, "cnn": {"depth": {"choice": [1, 2]}}}},
    "lr": {"loguniform": [1.0e-4, 1.0e-1]},
    "optimizer": {"choice": ["sgd", "adam"]},
}


def _plan(tmp_path, startup=3, algorithm="bohb"):
    job = tiny_job(tmp_path, space=SPACE, budget={"num_trials": 40, "max_epochs": 9}, search={"algorithm": algorithm, "startup_trials": startup})
    return build_plan(parse_job(job))


def _run(searcher, trial_id, values, *, error=False):
    for epoch, v in enumerate(values, start=1):
        searcher.on_trial_result(trial_id, {C.EPOCH: epoch, "val_accuracy": v})
    searcher.on_trial_complete(trial_id, error=error)


def test_it_models_the_highest_rung_with_enough_results_and_draws_at_random_before(tmp_path):
    plan = _plan(tmp_path)
    assert plan.summary == "bohb+asha"
    bohb: BOHBSearch = plan.make_searcher(2)
    assert bohb.rungs == [1, 3, 9] and bohb.model_rung() is None
    for trial_id, epochs, rung_after in [("t0", 9, None), ("t1", 1, None), ("t2", 3, 1), ("t3", 3, 3)]:
        bohb.suggest(trial_id)
        _run(bohb, trial_id, [0.5] * epochs)
        assert bohb.model_rung() == rung_after  # three results (min_points) at a rung make it the model's
    assert bohb.fits.get("random", 0) >= 3 and set(bohb.fits) <= {"random", "1"}  # t0-t2 came before any model


def test_a_fit_holds_each_trial_at_that_rung_and_the_running_ones_as_running(tmp_path):
    bohb: BOHBSearch = _plan(tmp_path).make_searcher(4)
    for i, values in enumerate([[0.2, 0.3, 0.4], [0.5], [0.6, 0.9, 0.95], [0.1, 0.8]]):
        bohb.suggest(f"t{i}")
        _run(bohb, f"t{i}", values, error=i == 1)
    bohb.suggest("live")
    study = bohb._study(bohb.model_rung(), seed=0)
    assert bohb.model_rung() == 1  # the failed t1 says nothing: three results at epoch 1
    by_state = {
        s: sorted(t.value for t in study.trials if t.state == s) if s == TrialState.COMPLETE else sum(t.state == s for t in study.trials)
        for s in (TrialState.COMPLETE, TrialState.RUNNING)
    }
    assert by_state == {TrialState.COMPLETE: [0.1, 0.2, 0.6], TrialState.RUNNING: 1}


@pytest.mark.parametrize("algorithm", ["bohb", "gp"])
def test_proposals_follow_the_rung_values_not_how_far_trials_got(tmp_path, algorithm):
    """cnn trials are better at epoch 3 though ASHA stopped them there; mlp ones ran longer.
    Fitted at rung 3, the model (TPE, or the Gaussian process for gp) proposes cnn far more often than chance."""
    plan = _plan(tmp_path, startup=6, algorithm=algorithm)
    assert plan.summary == f"{algorithm}+asha"
    bohb: BOHBSearch = plan.make_searcher(1)
    assert bohb.settings["model"] == {"bohb": "tpe", "gp": "gp"}[algorithm]
    for i in range(40):
        config = bohb.suggest(f"t{i}")
        cnn = flatten(config)["model"] == "cnn"
        _run(bohb, f"t{i}", [0.9, 0.9, 0.9] if cnn else [0.5, 0.6, 0.7, 0.75, 0.8, 0.8, 0.8, 0.8, 0.8])
    modelled = [r["params"]["model"] for t, r in bohb.records.items() if int(t[1:]) >= 20]
    assert modelled.count("cnn") >= 14, modelled  # chance is 10 of 20; random_fraction draws a third at random


def test_a_resume_tells_it_the_ledger_and_carries_the_unfinished_trials(tmp_path):
    plan = _plan(tmp_path)
    ledger = {
        "a": {C.PARAMS: {"model": "mlp", "model.depth": 2, "lr": 0.01, "optimizer": "adam"}, C.ENDED_AT: "x"},
        "b": {C.PARAMS: {"model": "cnn", "model.depth": 1, "lr": 0.001, "optimizer": "sgd"}, C.ENDED_AT: "x", C.ERROR: "boom"},
        "c": {C.PARAMS: {"model": "cnn", "model.depth": 2, "lr": 0.02, "optimizer": "sgd"}, C.LAST_REPORT: {C.EPOCH: 3, "val_accuracy": 0.7}},
    }
    metrics = {"a": [(1, 0.5), (3, 0.6)], "b": [(1, 0.9)], "c": [(1, 0.4)]}
    resumed = plan.resume_searcher(2, ledger, metrics, str(tmp_path / "tune"))
    bohb = resumed.searcher
    assert bohb.records["a"]["reports"] == {1: 0.5, 3: 0.6} and bohb.records["a"]["params"]["model.mlp.depth"] == 2
    assert bohb.records["b"]["reports"] == {}  # failed: nothing to learn
    assert bohb.records["c"]["reports"] == {1: 0.4, 3: 0.7} and bohb.live == {"c"}
    assert resumed.carried == [("c", ledger["c"][C.PARAMS])] and resumed.ended == {"a", "b"} and resumed.new_trials == 37
    assert bohb.suggest("d") is not None and bohb.suggest("e") is None  # c and d run: the concurrency is full


def test_its_saved_state_is_json_the_report_reads_and_a_pickle_is_refused(tmp_path):
    plan = _plan(tmp_path)
    bohb = plan.make_searcher(1)
    for i in range(5):
        bohb.suggest(f"t{i}")
        _run(bohb, f"t{i}", [0.5, 0.6, 0.7])
    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    bohb.save(str(tune_dir / "searcher-state-1.json"))
    saved = json.loads((tune_dir / "searcher-state-1.json").read_text())
    assert saved["records"]["t0"]["reports"] == {"1": 0.5, "2": 0.6, "3": 0.7}
    assert plan.saved_summary(str(tune_dir)) == {"proposed": {k if k == "random" else f"from epoch {k}": v for k, v in bohb.fits.items()}}
    assert sum(bohb.fits.values()) == 5
    (tune_dir / "searcher-state-2.pkl").write_bytes(pickle.dumps({"format": "distsearch-bohb/1"}))
    with pytest.raises(UnsafeSearcherState, match="a pickle is never loaded"):
        plan.saved_summary(str(tune_dir))


def test_gp_fits_a_gaussian_process_and_names_it(tmp_path):
    plan = _plan(tmp_path, algorithm="gp")
    assert "a Gaussian process on the highest of epochs [1, 3, 9]" in plan.searcher.settings_line()
    gp: BOHBSearch = plan.make_searcher(2)
    for i in range(4):
        gp.suggest(f"t{i}")
        _run(gp, f"t{i}", [0.1 * i, 0.2 * i])
    assert type(gp._sampler(0)).__name__ == "GPSampler" and type(_plan(tmp_path).make_searcher(1)._sampler(0)).__name__ == "TPESampler"
    with pytest.raises(ValueError, match="model: got 'kde'; fix: use one of tpe, gp"):
        BOHBSearch(gp.space, metric="val_accuracy", mode="max", rungs=[1, 3], seed=0, min_points=2, model="kde")
