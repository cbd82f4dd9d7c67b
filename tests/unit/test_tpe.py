"""TPE under ASHA with fake results (no cluster): what the Optuna study is told, conditional
sampling, points to evaluate, warm start, and the state a resumed driver restores."""

import math

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from distsearch import constants as C
from distsearch import storage
from distsearch.results import files as results
from distsearch.search import warmstart
from distsearch.search.plan import build_plan
from distsearch.search.tpe import TPESearch, prior_trials
from distsearch.space.names import OPTION_KEY, flatten
from distsearch.space.points import point_problems, searcher_names
from distsearch.spec.model import SpecError, parse_job

from ..conftest import tiny_job

SPACE = {
    "model": {"choice": {"mlp": {"depth": {"randint": [1, 4]}, "width": {"qrandint": [16, 64, 16]}}, "cnn": {"depth": {"choice": [1, 2]}}}},
    "lr": {"loguniform": [1.0e-4, 1.0e-1]},
    "wd": {"qloguniform": [1.0e-5, 1.0e-2, 1.0e-5]},
    "dropout": {"quniform": [0.0, 0.5, 0.1]},
    "optimizer": {"choice": ["sgd", "adam"]},
    "batch_size": 32,
}


def _spec(tmp_path, **search):
    return parse_job(tiny_job(tmp_path, space=SPACE, budget={"num_trials": 40, "max_epochs": 9}, search={"algorithm": "tpe", **search}))


def _tpe(tmp_path, **search) -> TPESearch:
    return build_plan(_spec(tmp_path, **search)).make_searcher(4)


def _run(tpe, trial_id, values, *, end=True, error=False):
    """Report ``values`` at epochs 1, 2, ... as Tune would, then end the trial."""
    for epoch, v in enumerate(values, start=1):
        tpe.on_trial_result(trial_id, {C.EPOCH: epoch, "val_accuracy": v})
    if end:
        tpe.on_trial_complete(trial_id, error=error)


def test_each_trial_is_told_as_it_ended_asha_stop_pruned_full_run_complete_failure_fail(tmp_path):
    tpe = _tpe(tmp_path)
    configs = {t: tpe.suggest(t) for t in ("full", "asha", "boom", "running")}
    assert tpe.suggest("fifth") is None  # four at once
    _run(tpe, "full", [0.5, 0.6, 0.7, 0.8, 0.9, 0.85, 0.86, 0.87, 0.88])  # max_epochs 9: best 0.9, not the last
    _run(tpe, "asha", [0.4, 0.45, 0.5])  # ASHA stopped it at epoch 3
    _run(tpe, "boom", [0.3], error=True)
    _run(tpe, "running", [0.2, 0.2], end=False)
    tpe.on_trial_result("running", {C.EPOCH: 2, "val_accuracy": 0.99})  # a resumed trial repeats epoch 2: kept once
    by_number = {t.number: t for t in tpe.study.get_trials()}
    full, asha, boom, running = (by_number[i] for i in range(4))
    assert full.state == TrialState.COMPLETE and full.value == 0.9 and len(full.intermediate_values) == 9
    assert asha.state == TrialState.PRUNED and asha.intermediate_values == {1: 0.4, 2: 0.45, 3: 0.5}
    assert boom.state == TrialState.FAIL and boom.value is None
    assert running.state == TrialState.RUNNING and running.intermediate_values == {1: 0.2, 2: 0.2}
    assert tpe.states() == {"complete": 1, "pruned": 1, "fail": 1, "running": 1}
    assert tpe.suggest("fifth") is not None  # a slot is free again
    # each config has Tune's nested form; a sub-parameter only under its option, named with it
    for config, trial in zip(configs.values(), (full, asha, boom, running), strict=True):
        option = config["model"][OPTION_KEY]
        assert set(trial.params) == {"model", "lr", "wd", "dropout", "optimizer", *(f"model.{option}.{k}" for k in SPACE["model"]["choice"][option])}
        assert point_problems(_spec(tmp_path).space, flatten(config)) == []  # every value inside its domain
        assert config["batch_size"] == 32


def test_pruned_trials_are_ranked_by_how_far_they_got_by_tpe(tmp_path):
    """Optuna's TPE puts a pruned trial that reached a later epoch above one that stopped
    earlier, whatever their values: the fidelity the searcher is told matters."""
    from optuna.samplers._tpe.sampler import _split_pruned_trials  # what TPE sorts pruned trials with

    tpe = _tpe(tmp_path)
    for t in ("early", "late"):
        tpe.suggest(t)
    _run(tpe, "early", [0.9])  # high, at epoch 1
    _run(tpe, "late", [0.3, 0.4, 0.5])  # lower, but at epoch 3
    below, _ = _split_pruned_trials(tpe.study.get_trials(), tpe.study, 1)
    assert below[0].intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5}


def test_points_to_evaluate_run_first_then_tpe_samples(tmp_path):
    point = {"model": "cnn", "model.depth": 2, "lr": 0.01}
    tpe = _tpe(tmp_path, points_to_evaluate=[point])
    first = flatten(tpe.suggest("t0"))
    assert {k: first[k] for k in point} == point  # parameters left out are sampled
    assert "wd" in first and "model.width" not in first


def test_search_spec_refuses_bad_points_and_random_with_tpe_only_settings(tmp_path):
    with pytest.raises(SpecError, match=r"search.points_to_evaluate\[0\].model.width: set, but its option is not the one chosen"):
        _spec(tmp_path, points_to_evaluate=[{"model": "cnn", "model.width": 32}])
    with pytest.raises(SpecError, match=r"search.points_to_evaluate\[0\].lr: got 3; fix: give a number in"):
        _spec(tmp_path, points_to_evaluate=[{"lr": 3}])
    from distsearch.validate import check_job

    with pytest.raises(SpecError, match="search.points_to_evaluate: given with algorithm: random"):
        check_job(parse_job(tiny_job(tmp_path, search={"algorithm": "random", "points_to_evaluate": [{"lr": 0.01}]})), dry_run=False)
    with pytest.raises(SpecError, match="search.startup_trials"):
        _spec(tmp_path, startup_trials=0)


def test_save_and_restore_keep_what_the_study_knew_and_the_running_trials(tmp_path):
    tpe = _tpe(tmp_path, points_to_evaluate=[{"lr": 0.001}, {"lr": 0.002}])
    for t in ("a", "b", "c"):
        tpe.suggest(t)
    _run(tpe, "a", [0.5] * 9)
    _run(tpe, "b", [0.4, 0.41])
    _run(tpe, "c", [0.3], end=False)
    tpe.save(str(tmp_path / "searcher.pkl"))
    again = _tpe(tmp_path)
    again.restore(str(tmp_path / "searcher.pkl"))
    assert again.states() == {"complete": 1, "pruned": 1, "running": 1}
    assert again.points == []  # both points were handed out before the save
    _run(again, "c", [0.3, 0.35])  # the resumed trial repeats epoch 1, then goes on
    c = [t for t in again.study.get_trials() if t.state == TrialState.PRUNED and 2 in t.intermediate_values and t.intermediate_values[1] == 0.3]
    assert len(c) == 1 and c[0].params == tpe.records["c"]["params"]


def test_a_resumed_tpe_takes_its_saved_state_and_the_ledger_outranks_it(tmp_path):
    """The state was saved while a, b and c ran; then b ended (the ledger says so), d was proposed
    but never started, and the driver died. The resumed TPE tells b as it ended, forgets d, and
    carries c (still running) under its id with its flat parameters."""
    from distsearch.search import tpe_resume

    tpe = _tpe(tmp_path)
    configs = {t: tpe.suggest(t) for t in ("a", "b", "c")}
    _run(tpe, "a", [0.5] * 9)
    _run(tpe, "b", [0.4], end=False)
    tpe.save(str(tmp_path / "state"))
    tpe.suggest("d")
    ledger = {t: {C.TRIAL_ID: t, C.PARAMS: flatten(configs[t]), C.ENDED_AT: 1.0 if t in "ab" else None} for t in "abc"}
    again = _tpe(tmp_path)
    carried = tpe_resume.resume(again, ledger, {"b": [(1, 0.4), (2, 0.45)]}, (tmp_path / "state").read_bytes(), "state")
    assert carried == [("c", flatten(configs["c"]))]
    assert set(again.live) == {"c"} and "d" not in again.records
    assert again.states() == {"complete": 1, "pruned": 1, "running": 1}
    assert again.records["b"]["reports"] == {1: 0.4, 2: 0.45} and again.records["b"]["state"] == "PRUNED"


@pytest.mark.parametrize("saved", [None, b"\x80\x04\x95 a pickle", b'{"format": "distsearch-tpe/2", "recor'], ids=["missing", "pickle", "cut"])
def test_a_resumed_tpe_without_a_readable_state_learns_the_runs_trials_from_the_ledger(tmp_path, saved, caplog):
    """Issue 29, case 1: the searcher state is never unpickled; missing, a pickle or cut short, TPE
    rebuilds what it knew from the ledger's parameters and the reports the checkpoints hold."""
    from distsearch.search import tpe_resume

    first = _tpe(tmp_path, points_to_evaluate=[{"lr": 0.001}, {"lr": 0.002}, {"lr": 0.003}])
    configs = {t: first.suggest(t) for t in ("a", "b")}
    ledger = {
        "a": {C.TRIAL_ID: "a", C.PARAMS: flatten(configs["a"]), C.ENDED_AT: 1.0, C.LAST_REPORT: {C.EPOCH: 9, "val_accuracy": 0.7}},
        "b": {C.TRIAL_ID: "b", C.PARAMS: flatten(configs["b"]), C.ENDED_AT: None},
    }
    again = _tpe(tmp_path, points_to_evaluate=[{"lr": 0.001}, {"lr": 0.002}, {"lr": 0.003}])
    carried = tpe_resume.resume(again, ledger, {"a": [(e, 0.5) for e in range(1, 9)], "b": [(1, 0.3)]}, saved, "tune/searcher-state-x.pkl")
    assert carried == [("b", flatten(configs["b"]))]
    assert again.states() == {"complete": 1, "running": 1} and again.records["a"]["value"] == 0.7
    assert again.points == [{"lr": 0.003}]  # the first two trials took the first two points
    assert ("TPE learns the run's earlier trials from its ledger instead" in caplog.text) == (saved is not None)
    assert again.suggest("c") is not None and len(again.live) == 2


def test_warm_start_seeds_the_study_with_the_trials_that_fit(tmp_path):
    spec = _spec(tmp_path)
    run = str(tmp_path / "earlier")
    rows = [
        ({"model": "mlp", "model.depth": 2, "model.width": 32, "lr": 0.01, "wd": 1e-4, "dropout": 0.1, "optimizer": "adam"}, C.STATUS_COMPLETED, 9),
        ({"model": "cnn", "model.depth": 1, "lr": 0.02, "wd": 1e-3, "dropout": 0.2, "optimizer": "sgd"}, C.STATUS_STOPPED, 2),
        ({"model": "mlp", "model.depth": 7, "model.width": 32, "lr": 0.01, "wd": 1e-4, "dropout": 0.1, "optimizer": "adam"}, C.STATUS_STOPPED, 1),
        ({"model": "gru", "lr": 0.01, "wd": 1e-4, "dropout": 0.1, "optimizer": "adam"}, C.STATUS_ERROR, 1),  # not an option here
    ]
    trial_rows = [{C.TRIAL_ID: f"t{i}", C.STATUS: s, "params": p} for i, (p, s, _) in enumerate(rows)]
    frame = results.trials_frame(
        trial_rows, {"model": str, "model.depth": int, "model.width": int, "lr": float, "wd": float, "dropout": float, "optimizer": str}
    )
    epochs = pd.DataFrame(
        [{C.TRIAL_ID: f"t{i}", C.EPOCH: e, "val_accuracy": 0.5 + 0.01 * e} for i, (_, _, n) in enumerate(rows) for e in range(1, n + 1)]
    )
    results.write_tables(run, frame, epochs)
    storage.write_json(storage.join(run, C.RUN_FILE), {"job": {"metric": "val_accuracy", "mode": "max"}})
    warm = warmstart.load(parse_job({**spec.to_dict(), "search": {"algorithm": "tpe", "warm_start": [run]}}))
    assert len(warm.trials) == 2 and warm.skipped == 2  # depth 7 is outside randint [1, 4); gru is no option
    tpe = build_plan(spec).make_searcher(2)
    tpe.seed_with(prior_trials(tpe, warm))
    assert tpe.states() == {"complete": 1, "pruned": 1} and tpe.warm_start == {"runs": [run], "trials": 2, "skipped": 2}
    done = [t for t in tpe.study.get_trials() if t.state == TrialState.COMPLETE][0]
    assert math.isclose(done.value, 0.59) and done.params["model.mlp.width"] == 32
    assert searcher_names(spec.space, rows[1][0])["model.cnn.depth"] == 1


def test_warm_start_entries_are_checked_at_validation(tmp_path):
    from distsearch.validate import check_job

    other = str(tmp_path / "other")
    storage.write_json(storage.join(other, C.RUN_FILE), {"job": {"metric": "val_loss", "mode": "min"}})
    results.write_tables(other, pd.DataFrame({C.TRIAL_ID: []}), pd.DataFrame({C.TRIAL_ID: []}))
    raw = tiny_job(tmp_path, search={"algorithm": "tpe", "warm_start": [str(tmp_path / "missing"), other]})
    with pytest.raises(SpecError) as e:
        check_job(parse_job(raw), dry_run=False)
    assert "search.warm_start[0]: got" in str(e.value) and "run.json cannot be read" in str(e.value)
    assert "search.warm_start[1]: got" in str(e.value) and "a run for val_loss (min); this job optimises val_accuracy (max)" in str(e.value)


@pytest.mark.parametrize("epoch,value", [(float("nan"), 0.5), (0, 0.5), (1.5, 0.5), (1, "0.5"), (1, float("inf"))])
def test_a_warm_start_run_with_a_bad_epoch_row_is_refused_at_validation(tmp_path, epoch, value):
    """Issue 29, case 9: such a run passed validation, then the sweep died after Ray had started."""
    from distsearch.validate import check_job

    run = str(tmp_path / "earlier")
    trials = results.trials_frame([{C.TRIAL_ID: "t0", C.STATUS: C.STATUS_COMPLETED, "params": {"lr": 0.01}}], {"lr": float})
    first = "0.4" if isinstance(value, str) else 0.4  # one type per Parquet column
    results.write_tables(run, trials, pd.DataFrame({C.TRIAL_ID: ["t0", "t0"], C.EPOCH: [1, epoch], "val_accuracy": [first, value]}))
    storage.write_json(storage.join(run, C.RUN_FILE), {"job": {"metric": "val_accuracy", "mode": "max"}})
    raw = tiny_job(tmp_path, search={"algorithm": "tpe", "warm_start": [run]})
    with pytest.raises(
        SpecError, match=r"search.warm_start\[0\]: got .* epochs.parquet: trial t0 has a row with epoch .* fix: give a run distsearch wrote"
    ):
        check_job(parse_job(raw), dry_run=False)


def test_the_sampler_is_optunas_tpe_seeded_by_the_job(tmp_path):
    tpe = _tpe(tmp_path, startup_trials=3, multivariate=False, constant_liar=False)
    sampler = tpe.study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and tpe.settings == {
        "seed": 1,
        "startup_trials": 3,
        "multivariate": False,
        "constant_liar": False,
    }
    twin = _tpe(tmp_path, startup_trials=3, multivariate=False, constant_liar=False)
    assert [tpe.suggest(f"t{i}") for i in range(3)] == [twin.suggest(f"t{i}") for i in range(3)]  # the job's seed decides
