"""BOHB-style search under PASHA, a Gaussian process under ASHA, ASHA with promotion, and a multi-objective search under MOASHA, on a real Ray: the
plan's names reach run.json, PASHA holds the maximum at the second rung, every proposal is
counted, and each trial measures its costs on its own device for the Pareto front."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.select.load import load_model
from distsearch.spec.model import parse_job

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_run_files

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("algorithm, variant", [("bohb", "pasha"), ("gp", "asha")])
def test_a_model_based_sweep_runs_and_records_what_it_proposed(embedded_ray, tmp_path, algorithm, variant):
    """BOHB (TPE per rung) under PASHA and the Gaussian process under ASHA: one trial at a time,
    so what each proposes depends on the seed alone."""
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 8, "max_epochs": 4},
            asha={"grace_period_epochs": 1, "reduction_factor": 2, "variant": variant},
            search={"algorithm": algorithm, "startup_trials": 3},
            max_concurrent_trials=1,
        )
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)
    trials, search = run["trials"], run["run"]["search"]
    assert search["summary"] == f"{algorithm}+{variant}" and search["rung_epochs"] == [1, 2, 4]
    assert sum(search["proposed"].values()) == spec.budget.num_trials
    # after three startup trials the model proposes: the five draws after them are not all the
    # random third, for a fixed seed
    assert any(k.startswith("from epoch") for k in search["proposed"]), search["proposed"]
    if variant == "pasha":
        # PASHA's maximum starts at the second rung (2 epochs): the first trial there has nobody to
        # be ranked against, so it stops at 2, where ASHA would let it go on
        at_two = trials[(trials[C.EPOCHS_COMPLETED] == 2) & (trials[C.STATUS] == C.STATUS_STOPPED)]
        assert len(at_two) >= 1
    assert result.best is not None
    assert_nothing_left()


def test_a_multi_objective_sweep_measures_costs_and_records_its_pareto_front(embedded_ray, tmp_path):
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 5, "max_epochs": 3},
            search={"algorithm": "tpe", "startup_trials": 3},
            objectives=[{"val_accuracy": "max"}, {"latency_ms": "min"}, {C.NUM_PARAMS: "min"}],
            constraints={C.MODEL_BYTES: {"max": 12000.0}},  # one hidden layer, or two of 16, fit (5-10 KB); two of 32 do not (14 KB)
            costs={"latency_passes": 5, "latency_warmup_passes": 1},
            max_concurrent_trials=1,
        )
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    trials, epochs, meta = run["trials"], run["epochs"], run["run"]
    assert meta["search"]["summary"] == "tpe+moasha" and result.status_counts[C.STATUS_ERROR] == 0
    costs = [C.LATENCY_MS, C.NUM_PARAMS, C.MODEL_BYTES]
    assert epochs[costs].notna().all().all() and (epochs[C.LATENCY_MS] > 0).all() and C.PEAK_MEMORY_BYTES not in epochs
    assert (epochs.groupby(C.TRIAL_ID)[C.NUM_PARAMS].nunique() == 1).all()  # measured once per trial: one model
    front = meta["front"]
    ranks = trials.set_index(C.TRIAL_ID)[C.PARETO_RANK]
    assert front and {p[C.TRIAL_ID] for p in front} == set(ranks[ranks == 0].index)
    points = {}
    for p in front:
        row = epochs[(epochs[C.TRIAL_ID] == p[C.TRIAL_ID]) & (epochs[C.EPOCH] == p[C.BEST_EPOCH])].iloc[0]
        points[p[C.TRIAL_ID]] = (row["val_accuracy"], -row[C.LATENCY_MS], -row[C.NUM_PARAMS])
        assert all(p[m] == row[m] for m in ("val_accuracy", C.LATENCY_MS, C.NUM_PARAMS, C.MODEL_BYTES))
        assert 0 < p["test"]["test_accuracy"] <= 1  # each point of the front, scored on the test split once
    # no point of the front dominates another (every objective as higher-is-better here)
    for a, pa in points.items():
        assert not any(b != a and all(x >= y for x, y in zip(pb, pa, strict=True)) and pb != pa for b, pb in points.items())
    assert trials[C.DOMINATED].tolist() == [r != 0 for r in ranks.fillna(1).tolist()]
    # the selected models meet the constraint while any trial does; the ensemble's members
    # together stay within the bound on a cost, since it runs every one
    ensemble = json.loads(Path(result.run_dir, C.ENSEMBLE_FILE).read_text())
    assert pd.notna(ranks[result.best[C.TRIAL_ID]])  # the front is not empty: some trial meets it
    assert ensemble["skipped"] is None and 0 < ensemble["cost"][C.MODEL_BYTES] <= 12000.0
    assert {m[C.TRIAL_ID] for m in ensemble["members"]} <= set(ranks[ranks.notna()].index)
    # every trial of the front keeps its weights: the fastest one loads under a bound only it meets
    fastest = min(front, key=lambda p: p[C.LATENCY_MS])
    model = load_model(result.run_dir, pick={C.LATENCY_MS: {"max": fastest[C.LATENCY_MS]}})
    assert list(model.members) == [fastest[C.TRIAL_ID]]
    assert len(model.predict(torch.zeros(3, 64))) == 3
    assert list(load_model(result.run_dir, pick={}).members) == [front[0][C.TRIAL_ID]]  # no bound: the front's best by the metric
    assert_nothing_left()


def test_promotion_asha_pauses_trials_at_rungs_and_resumes_the_promoted_from_their_checkpoints(embedded_ray, tmp_path):
    """asha.variant: promote on a real Ray, two 2-worker trials at a time: a trial that reaches a
    rung waits paused, and a free slot resumes the best of the rung's top half from its Ray Train
    checkpoint. Tune's result log shows each resumed run: its results count again from 1, and
    its first is the checkpoint's report repeated (the same epoch, the same measured seconds), or
    the next epoch, never a new start. The sweep ends with every trial ended and nothing left."""
    # The points fix a strong trial, a middling one and four weak ones, whatever a searcher would
    # draw. The first two hold both slots, so one of them reaches the first rung first and
    # waits: the strong one is promoted at the next arrival; the middling one at the fourth at
    # the latest, once the rung's top half holds two.
    mlp = {"model": "mlp", "model.depth": 1, "model.width": 32}
    points = [{**mlp, "optimizer": "adam", "lr": 0.02}, {**mlp, "optimizer": "adam", "lr": 0.002}] + [{**mlp, "optimizer": "sgd", "lr": 1.0e-4}] * 4
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 6, "max_epochs": 4},
            asha={"grace_period_epochs": 1, "reduction_factor": 2, "variant": "promote"},
            search={"algorithm": "tpe", "points_to_evaluate": points},
            max_concurrent_trials=2,
            ensemble={"enabled": False},
        )
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)
    trials, meta = run["trials"], run["run"]
    assert meta["search"]["summary"] == "tpe+promote" and meta["max_concurrent_trials"] == 2
    assert set(trials[C.STATUS]) <= {C.STATUS_COMPLETED, C.STATUS_STOPPED} and (trials[C.STATUS] == C.STATUS_COMPLETED).any()
    resumed = {}
    for trial_id in trials[C.TRIAL_ID]:
        rows = [json.loads(line) for line in Path(result.run_dir, C.TUNE_DIR, trial_id, "result.json").read_text().splitlines()]
        epochs = [r[C.EPOCH] for r in rows]
        assert epochs[0] == 1 and epochs == sorted(epochs), (trial_id, epochs)
        for before, row in zip(rows, rows[1:], strict=False):
            if row["training_iteration"] > before["training_iteration"]:
                continue  # the same run
            resumed[trial_id] = epochs
            assert row[C.EPOCH] in (before[C.EPOCH], before[C.EPOCH] + 1), (trial_id, epochs)
            if row[C.EPOCH] == before[C.EPOCH]:
                assert row[C.EPOCH_SECONDS] == before[C.EPOCH_SECONDS], (trial_id, epochs)  # repeated, not trained again
    assert resumed, "no trial was paused and promoted"
    print(f"promotion: resumed {resumed}; statuses {trials[C.STATUS].value_counts().to_dict()}")
    assert result.best is not None
    assert_nothing_left()
