"""Every task end to end with a tiny budget on a real embedded Ray, and the test split's secrecy."""

import copy
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.select.load import load_model
from distsearch.select.predict import predict
from distsearch.spec.model import parse_job
from distsearch.validate import check_job

from ..conftest import JOBS, ROOT
from .conftest import assert_export_matches, assert_nothing_left, check_run_files
from .spy_task import SpyTask

pytestmark = pytest.mark.integration


def _tiny(job_file: str, tmp_path, **overrides):
    raw = copy.deepcopy(yaml.safe_load((JOBS / job_file).read_text()))
    raw.update(budget={"num_trials": 2, "max_epochs": 2}, asha={"grace_period_epochs": 1, "reduction_factor": 2}, storage=str(tmp_path / "runs"))
    raw["scaling"] = {"num_workers": 1, "cpus_per_worker": 1}
    raw["max_concurrent_trials"] = 1  # on 2 CPUs a second trial at a time costs more process starts than it saves
    for key, value in overrides.items():
        raw[key] = value
    return parse_job(raw)


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # shipped jobs name their data relative to the repository root


CHARLM_SMALL = {
    "model": {"choice": {"gru": {"width": 32}, "transformer": {"width": 32, "depth": 1, "heads": 2}}},
    "lr": {"loguniform": [1.0e-3, 1.0e-2]},
    "batch_size": 64,
}


@pytest.mark.parametrize(
    "job_file,overrides,test_keys",
    [
        ("wine.yaml", {}, {"test_accuracy", "test_macro_f1", "test_loss"}),
        ("diabetes.yaml", {}, {"test_rmse", "test_r2", "test_loss"}),
        ("charlm.yaml", {"space": CHARLM_SMALL, "task_options": {"seq_len": 64}}, {"test_bpc", "test_loss"}),
        ("custom.yaml", {"scaling": {"num_workers": 2, "cpus_per_worker": 0.5}}, {"test_accuracy", "test_macro_f1", "test_loss"}),
    ],
    ids=["wine", "diabetes", "charlm", "custom"],
)
def test_shipped_task_runs_end_to_end(embedded_ray, tmp_path, at_root, job_file, overrides, test_keys):
    spec = _tiny(job_file, tmp_path, **overrides)
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    assert result.status_counts[C.STATUS_ERROR] == 0, run["trials"][C.ERROR].tolist()
    best = run["best"]
    assert set(best["test"]) == test_keys
    # the overfitting gap: the same model scored on train and val, next to the test score
    assert {k.replace("test_", "train_") for k in test_keys} == set(best["final_train"])
    assert best["final_val"][spec.metric] == pytest.approx(best["val_metric"], rel=1e-4, abs=1e-6)
    epochs = run["epochs"]
    assert {spec.metric, spec.metric.replace("val_", "train_")} <= set(epochs.columns)
    # the ensemble, scored once on test beside the single best, and both loadable
    ensemble = run["ensemble"]
    assert ensemble["skipped"] is None and set(ensemble["test"]) == test_keys and ensemble["single_best"]["test"] == best["test"]
    assert sum(m["weight"] for m in ensemble["members"]) == pytest.approx(1.0)
    own = check_job(spec) if spec.task == "custom" else None  # a custom task's models are built by its own code
    for which in (False, True):
        loaded = load_model(result.run_dir, ensemble=which, task=own)
        assert not loaded.module.training
    if job_file == "wine.yaml":  # new rows of the table, as a user would have them: labels out
        rows = pd.read_parquet(JOBS / "data" / "wine.parquet")
        labels = loaded.predict(rows.drop(columns="target"))
        assert set(labels) <= set(loaded.class_names) and sum(a == str(b) for a, b in zip(labels, rows["target"], strict=True)) > len(rows) / 2
        # the ensemble as ONNX (its standardisation in preprocessing.json), and distsearch predict on a CSV
        assert_export_matches(result.run_dir, rows.drop(columns="target"), tmp_path / "export", ensemble=True)
        rows.drop(columns="target").to_csv(tmp_path / "rows.csv", index=False)
        assert predict(str(result.run_dir), [str(tmp_path / "rows.csv")], ensemble=True)["prediction"].tolist() == labels
    if job_file == "diabetes.yaml":  # values in the target's own units
        rows = pd.read_parquet(JOBS / "data" / "diabetes.parquet")
        values = loaded.predict(rows.drop(columns="target"))
        assert abs(sum(values) / len(values) - rows["target"].mean()) < rows["target"].std()
    assert_nothing_left()


def test_test_split_is_seen_once_per_reported_model_by_the_driver_and_never_by_a_trial(embedded_ray, tmp_path, at_root):
    log_dir = tmp_path / "seen"
    log_dir.mkdir()
    spec = parse_job(
        {
            "name": "spy",
            "task": "custom",
            "metric": "val_accuracy",
            "mode": "max",
            "seed": 3,
            "task_options": {"factory": "tests.integration.spy_task:make", "log_dir": str(log_dir)},
            "space": {"model": "spy", "lr": {"loguniform": [1.0e-2, 1.0e-1]}, "batch_size": 32},
            "budget": {"num_trials": 2, "max_epochs": 2},
            "asha": {"grace_period_epochs": 1},
            "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
            "max_concurrent_trials": 1,
            "storage": str(tmp_path / "runs"),
        }
    )
    splits = SpyTask(str(log_dir)).splits(spec.seed)
    test_ids = {int(i) for i in splits.test[0][:, 0]}
    train_ids = {int(i) for i in splits.train[0][:, 0]}
    result = run_job(spec)
    assert result.status_counts[C.STATUS_ERROR] == 0
    seen = {int(p.stem): [int(i) for line in p.read_text().splitlines() for i in line.split()] for p in log_dir.glob("*.ids")}
    workers = {pid: ids for pid, ids in seen.items() if pid != os.getpid()}
    assert len(workers) >= 2  # two ranks per trial
    assert all(not (set(ids) & test_ids) for ids in workers.values())
    assert set().union(*map(set, workers.values())) >= train_ids  # the workers did train
    mine = seen[os.getpid()]
    # every test row, once for each reported model: the single best, and each ensemble member's
    # pass for the ensemble's one score
    members = len(result.ensemble["members"])
    assert Counter(i for i in mine if i in test_ids) == {i: 1 + members for i in test_ids}
    assert Path(result.run_dir, C.BEST_FILE).exists() and result.best["test"]["test_accuracy"] >= 0.0


def test_the_reported_validation_score_is_the_saved_models_with_batchnorm_on_two_ranks(embedded_ray, tmp_path, at_root):
    """Each rank updates BatchNorm's running statistics on its own batches; the checkpoint is
    rank 0's model. The validation score reported for the selected epoch must be that model's."""
    spec = parse_job(
        {
            "name": "bn", "task": "custom", "metric": "val_loss", "mode": "min", "seed": 5,
            "task_options": {"factory": "tests.integration.bn_task:make"},
            "space": {"model": "bnmlp", "lr": {"choice": [0.05, 0.01]}, "batch_size": 8, "optimizer": "sgd"},
            "budget": {"num_trials": 2, "max_epochs": 3}, "asha": {"enabled": False},
            "scaling": {"num_workers": 2, "cpus_per_worker": 0.5}, "ensemble": {"enabled": False}, "max_concurrent_trials": 1,
            "storage": str(tmp_path / "runs"),
        }
    )  # fmt: skip
    result = run_job(spec)
    assert result.status_counts[C.STATUS_ERROR] == 0
    best = result.best
    assert best["final_val"]["val_loss"] == pytest.approx(best["val_metric"], rel=1e-5)
    assert_nothing_left()
