"""The text and images tasks end to end on a real embedded Ray: 2-worker gloo DDP trials, results, the best model's test score, and loading it."""

import pandas as pd
import pytest

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.select.load import load_model
from distsearch.spec.model import parse_job

from ..conftest import images_job, text_job
from .conftest import assert_export_matches, assert_nothing_left, check_run_files

pytestmark = pytest.mark.integration


def _sweep(raw):
    spec = parse_job(raw)
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    trials = run["trials"]
    assert (trials[C.STATUS] != C.STATUS_ERROR).all(), trials[C.ERROR].dropna().tolist()
    assert set(run["epochs"][C.WORLD_SIZE]) == {2}  # each trial a 2-rank gloo DDP group
    assert_nothing_left()
    return result, run


def test_a_text_sweep_fine_tunes_checkpoints_and_selects_on_validation(embedded_ray, tmp_path, shipped_data):
    raw = text_job(
        tmp_path,
        shipped_data,
        budget={"num_trials": 4, "max_epochs": 3},
        asha={"grace_period_epochs": 2, "reduction_factor": 2},
        max_concurrent_trials=1,
    )
    raw["search"] = {
        "algorithm": "tpe",  # the searcher that reads points_to_evaluate
        "points_to_evaluate": [
            {"model": "hf", "model.checkpoint": raw["space"]["model"]["choice"]["hf"]["checkpoint"]["choice"][1]},
            {"model": "encoder"},
        ],
    }
    result, run = _sweep(raw)
    assert {"hf", "encoder"} <= set(run["trials"][f"{C.HP_PREFIX}model"])
    best = run["best"]
    majority = pd.read_parquet(shipped_data / "stdlib_docs.parquet")["label"].value_counts(normalize=True).max()
    assert best["test"]["test_accuracy"] > 1.5 * majority, best  # learned, not the most frequent label
    model = load_model(result.run_dir)
    docs = pd.read_parquet(shipped_data / "stdlib_docs.parquet").sample(50, random_state=0)
    labels = model.predict(docs["text"].tolist())  # raw text in, package names out
    assert set(labels) <= set(model.class_names) and sum(a == b for a, b in zip(labels, docs["label"], strict=True)) > 50 * majority
    assert load_model(result.run_dir, ensemble=True).predict_proba(["Return the event loop."]).shape == (1, len(model.class_names))
    # the model that leaves: ONNX with its tokenizer files beside it, predicting as load_model does
    assert_export_matches(result.run_dir, docs["text"].tolist()[:20], tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").glob("tokenizer-*.json")) == [
        f"tokenizer-{i}.json" for i in range(len(model.recipe["tokenizers"]))
    ]


def test_an_images_sweep_trains_both_families_from_an_image_folder(embedded_ray, tmp_path, shipped_data):
    raw = images_job(tmp_path, shipped_data, budget={"num_trials": 3, "max_epochs": 2}, asha={"grace_period_epochs": 1, "reduction_factor": 2})
    # one ResNet-18 (its epoch is most of the sweep here), two CNNs: both families, whatever the draw
    raw["search"] = {"algorithm": "tpe", "points_to_evaluate": [{"model": "cnn"}, {"model": "resnet18"}, {"model": "cnn"}]}
    result, run = _sweep(raw)
    assert set(run["trials"][f"{C.HP_PREFIX}model"]) == {"cnn", "resnet18"}
    assert run["best"]["test"]["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    model = load_model(result.run_dir)
    files = sorted((shipped_data / "digits_images" / "7").iterdir())[:10]
    assert model.predict(files).count("7") >= 6  # files in, class names out
    assert_export_matches(result.run_dir, files, tmp_path / "export")
    # distsearch predict: a folder in, a Parquet of class names and probabilities out
    from distsearch.select.predict import predict

    preds = predict(str(result.run_dir), [str(files[0].parent)], out=str(tmp_path / "preds.parquet"))
    assert len(preds) == len(list(files[0].parent.iterdir())) and pd.read_parquet(tmp_path / "preds.parquet").equals(preds)
    assert preds.set_index("input").loc[[str(f) for f in files], "prediction"].tolist() == model.predict(files)
