"""The task contract, checked on every shipped task; and each task's bad inputs, named."""

import math

import pandas as pd
import pytest
import torch

from distsearch.spec.model import SpecError, parse_job
from distsearch.tasks import PROTOCOL_MEMBERS, Task, TaskInputError, make_task
from distsearch.tasks.base import batches, splits_once
from distsearch.train import loop
from distsearch.validate import check_job

from ..conftest import JOBS, ROOT, load_shipped

# (job file, one params dict per model family the job searches)
SHIPPED = {
    "quickstart.yaml": [{"model": "mlp", "model.depth": 2}, {"model": "cnn", "model.depth": 1, "model.channels": 8}],
    "wine.yaml": [{"model": "mlp", "model.depth": 0}, {"model": "mlp", "model.depth": 2, "model.width": 16}],
    "diabetes.yaml": [{"model": "mlp", "model.depth": 0}, {"model": "mlp", "model.depth": 1, "model.width": 16}],
    "charlm.yaml": [
        {"model": "gru", "model.width": 32},
        {"model": "lstm", "model.width": 32, "model.depth": 2},
        {"model": "transformer", "model.width": 32, "model.depth": 2, "model.heads": 2},
    ],
    "custom.yaml": [{"model": "resmlp", "blocks": 1, "width": 16}],
    "text.yaml": [
        {"model": "encoder", "model.depth": 1, "model.width": 32, "model.heads": 2, "max_length": 64},
        {"model": "hf", "model.checkpoint": "jobs/data/text-models/distilbert-2l", "freeze_epochs": 1},
        {"model": "jobs/data/text-models/bert-2l"},  # a checkpoint as the family's value
    ],
    "images.yaml": [{"model": "cnn", "model.depth": 1, "model.channels": 8, "input_size": 16}, {"model": "resnet18", "input_size": 16}],
}
BUILT_DATA = ("text.yaml", "images.yaml")  # their data scripts write into a temporary folder here (tests/conftest.py)


def _params(params, spec):
    """``params`` with the shipped data's paths where the fixture put the job's data."""
    data = spec.task_options.get("data_root")
    return {k: v.replace("jobs/data/", f"{data}/") if data and isinstance(v, str) else v for k, v in params.items()}


@pytest.fixture(scope="module", params=sorted(SHIPPED), ids=lambda p: p.removesuffix(".yaml"))
def shipped(request):
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # the shipped jobs name their files relative to the repository root
    try:
        spec = load_shipped(JOBS / request.param, request)
        task = check_job(spec)
    finally:
        os.chdir(cwd)
    if request.param in BUILT_DATA:  # where _params finds the data; not a task option
        spec = spec.model_copy(update={"task_options": {**spec.task_options, "data_root": str(request.getfixturevalue("shipped_data"))}})
    return request.param, spec, task, task.splits(spec.seed)


def test_has_every_protocol_member_and_consistent_metrics(shipped):
    name, spec, task, splits = shipped
    assert isinstance(task, Task) and all(hasattr(task, m) for m in PROTOCOL_MEMBERS)
    assert set(task.metric_modes) == set(task.metrics_from_sums(task.metric_sums(*_outputs(task, splits, _params(SHIPPED[name][0], spec)))))
    assert set(task.metric_modes.values()) <= {"min", "max"} and "loss" in task.metric_modes
    assert spec.metric.removeprefix("val_") in task.metric_modes


def test_splits_are_fixed_by_the_seed_and_disjoint(shipped):
    _, spec, task, splits = shipped
    again = task.splits(spec.seed)
    other = task.splits(spec.seed + 1)
    for a, b in zip((splits.train, splits.val, splits.test), (again.train, again.val, again.test), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(splits.test[0], other.test[0])
    sizes = [len(s[1]) for s in (splits.train, splits.val, splits.test)]
    assert min(sizes) > 0 and sizes[0] > sizes[1] + sizes[2] - 1
    # No row is in two splits (rows compared whole; these data sets have no duplicate rows
    # across splits except a handful of identical 8x8 digit images).
    rows = [{tuple(r.flatten().tolist()) for r in s[0]} for s in (splits.train, splits.val, splits.test)]
    assert len(rows[0] & rows[2]) + len(rows[1] & rows[2]) + len(rows[0] & rows[1]) <= 5


def test_classification_splits_are_stratified(shipped):
    _, spec, task, splits = shipped
    if not hasattr(task, "num_classes"):
        pytest.skip("not a classification task")
    whole = torch.bincount(torch.cat([splits.train[1], splits.val[1], splits.test[1]]), minlength=task.num_classes).double()
    test = torch.bincount(splits.test[1], minlength=task.num_classes).double()
    assert torch.allclose(test / test.sum(), whole / whole.sum(), atol=0.03)


def _outputs(task, splits, params=None):
    model = task.build_model(params or {"model": task.families[0]}, splits)
    model.eval()
    x, y = next(batches(task, splits.val, torch.arange(min(40, len(splits.val[1]))), 40))
    with torch.no_grad():
        return model(x), y


def test_every_family_builds_and_sums_are_additive(shipped):
    name, spec, task, splits = shipped
    for params in SHIPPED[name]:
        out, y = _outputs(task, splits, _params(params, spec))
        assert math.isfinite(float(task.loss(out, y)))
        whole = task.metrics_from_sums(task.metric_sums(out, y))
        a, b = task.metric_sums(out[:17], y[:17]), task.metric_sums(out[17:], y[17:])
        merged = task.metrics_from_sums({k: a[k] + b[k] for k in a})
        assert merged == pytest.approx(whole, rel=1e-6, abs=1e-9)  # float32 sums in another order


def test_a_few_epochs_lower_the_validation_loss(shipped):
    name, spec, task, splits = shipped
    got = []
    params = {**_params(SHIPPED[name][0], spec), "lr": 3e-3, "batch_size": 64}
    small = type(splits)(train=(splits.train[0][:1500], splits.train[1][:1500]), val=splits.val, test=splits.test)
    loop.train(task, params, lambda m, s: got.append(m), max_epochs=3, seed=0, splits=small)
    assert got[-1]["val_loss"] < got[0]["val_loss"] or got[-1]["val_loss"] < 0.2
    assert {f"train_{m}" for m in task.metric_modes} <= set(got[-1])


def test_workers_get_no_test_rows(shipped):
    _, _, _, splits = shipped
    shipped_splits = splits.without_test()
    assert len(shipped_splits.test[1]) == 0 and shipped_splits.test[0].shape[1:] == splits.test[0].shape[1:]
    assert shipped_splits.train[0] is splits.train[0]


# ---- the heads' metrics against scikit-learn ---------------------------------------------------
def test_macro_f1_and_r2_match_scikit_learn():
    from sklearn.metrics import f1_score, r2_score

    from distsearch.tasks import ClassificationHead, RegressionHead

    g = torch.Generator().manual_seed(0)
    head = ClassificationHead()
    head.num_classes = 4
    logits, y = torch.randn(50, 4, generator=g), torch.randint(0, 3, (50,), generator=g)  # class 3 never true
    m = head.metrics_from_sums(head.metric_sums(logits, y))
    assert m["macro_f1"] == pytest.approx(f1_score(y, logits.argmax(1), average="macro"))
    reg = RegressionHead()
    reg.target_scale = 2.5
    pred, t = torch.randn(30, 1, generator=g), torch.randn(30, generator=g)
    r = reg.metrics_from_sums(reg.metric_sums(pred, t))
    assert r["r2"] == pytest.approx(r2_score(t, pred.squeeze(-1)), rel=1e-6)
    assert r["rmse"] == pytest.approx(2.5 * float(((pred.squeeze(-1) - t) ** 2).mean().sqrt()), rel=1e-6)


# ---- tabular specifics -------------------------------------------------------------------------
def test_tabular_standardises_with_training_rows_only_and_encodes_categories(tmp_path):
    frame = pd.DataFrame(
        {
            "size": [float(i) for i in range(60)],
            "colour": ["red", "green", "blue"] * 20,
            "label": ["a", "b"] * 30,
        }
    )
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    task = make_task("tabular", {"path": str(path), "target": "label"})
    assert task.problem == "classification" and task.num_classes == 2
    s = task.splits(0)
    assert s.train[0].shape[1] == 1 + 3  # one numeric column, three one-hot columns
    size = s.train[0][:, 0]
    assert float(size.mean()) == pytest.approx(0.0, abs=1e-5) and float(size.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert abs(float(s.test[0][:, 0].mean())) > 1e-3 or abs(float(s.test[0][:, 0].std(unbiased=False)) - 1) > 1e-3
    assert set(s.train[0][:, 1:].sum(1).tolist()) == {1.0}


def test_tabular_reads_a_file_uri_and_csv_like_parquet(tmp_path):
    frame = pd.read_parquet(ROOT / "jobs/data/wine.parquet")
    frame.to_csv(tmp_path / "wine.csv", index=False)
    from_uri = make_task("tabular", {"path": f"file://{ROOT}/jobs/data/wine.parquet", "target": "target"})
    from_csv = make_task("tabular", {"path": str(tmp_path / "wine.csv"), "target": "target"})
    a, b = from_uri.splits(0), from_csv.splits(0)
    assert torch.allclose(a.train[0], b.train[0], atol=1e-5) and torch.equal(a.test[1], b.test[1])


def test_tabular_infers_the_problem_from_the_target(tmp_path):
    wine = make_task("tabular", {"path": str(ROOT / "jobs/data/wine.parquet"), "target": "target"})
    diabetes = make_task("tabular", {"path": str(ROOT / "jobs/data/diabetes.parquet"), "target": "target"})
    assert wine.problem == "classification" and diabetes.problem == "regression"
    assert set(diabetes.metric_modes) == {"rmse", "r2", "loss"} and set(wine.metric_modes) == {"accuracy", "macro_f1", "loss"}
    d = diabetes.splits(0)
    y = d.train[1]
    assert float(y.mean()) == pytest.approx(0.0, abs=1e-5) and diabetes.target_scale > 10  # standardised; scale in target units


# ---- bad task inputs: named at validation time, before Ray -------------------------------------
def _bad_job(tmp_path, task, options, metric="val_loss", mode="min", space=None):
    return parse_job(
        {
            "name": "bad",
            "task": task,
            "task_options": options,
            "metric": metric,
            "mode": mode,
            "space": space or {"lr": 1e-3},
            "storage": str(tmp_path / "runs"),
        }
    )


def test_bad_task_inputs_name_the_problem(tmp_path):
    csv = tmp_path / "d.csv"
    pd.DataFrame({"x": range(30), "y": [1.0] * 30}).to_csv(csv, index=False)
    short = tmp_path / "short.txt"
    short.write_text("too short " * 10)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café ".encode("latin-1") * 2000)
    cases = [
        ("tabular", {"path": str(tmp_path / "missing.parquet"), "target": "y"}, ["task_options.path", "missing.parquet", "no such file"]),
        ("tabular", {"path": str(tmp_path / "d.txt"), "target": "y"}, ["task_options.path", ".parquet"]),
        ("tabular", {"path": str(csv), "target": "price"}, ["task_options.target", "'price'", "no such column", "x, y"]),
        ("tabular", {"path": str(csv), "target": "y"}, ["task_options.target", "1.0", "constant target"]),
        ("tabular", {"path": str(csv)}, ["task_options.target: missing"]),
        ("tabular", {"path": str(csv), "target": "x", "problem": "clustering"}, ["task_options.problem", "'clustering'"]),
        ("charlm", {"corpus": str(short), "seq_len": 64}, ["task_options.corpus", "100 characters", "seq_len"]),
        ("charlm", {"corpus": str(tmp_path / "nope.txt")}, ["task_options.corpus", "no such file"]),
        ("charlm", {"corpus": str(latin), "seq_len": 16}, ["task_options.corpus", "not UTF-8"]),
        ("charlm", {"seq_len": 0}, ["task_options.seq_len", "got 0"]),
        ("custom", {"factory": "no_such_pkg.mod:make"}, ["task_options.factory", "no_such_pkg.mod:make", "cannot import"]),
        ("custom", {"factory": "jobs.custom_task:nope"}, ["task_options.factory", "no attribute 'nope'"]),
        ("custom", {"factory": "just_a_name"}, ["task_options.factory", "package.module:function"]),
        ("custom", {"factory": "collections:OrderedDict"}, ["task_options.factory", "lacks", "splits"]),
        ("custom", {}, ["task_options.factory: missing"]),
        ("custom", {"factory": "jobs.custom_task:make_task", "colour": 1}, ["task_options", "cannot take", "colour"]),
        ("digits", {"colour": True}, ["task_options.colour", "no option"]),
    ]
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for task, options, needles in cases:
            with pytest.raises(SpecError) as info:
                check_job(_bad_job(tmp_path, task, options))
            for needle in needles:
                assert needle in str(info.value), (task, options, str(info.value))
    finally:
        os.chdir(cwd)


def test_model_family_the_task_cannot_build_is_refused(tmp_path):
    space = {"model": {"choice": {"cnn": {"channels": 8}, "mlp": {"depth": 1}}}}
    with pytest.raises(SpecError, match=r"space.model: got 'cnn'; task tabular builds mlp"):
        check_job(_bad_job(tmp_path, "tabular", {"path": str(ROOT / "jobs/data/wine.parquet"), "target": "target"}, "val_accuracy", "max", space))


def test_make_task_rejects_unknown_tasks():
    with pytest.raises(TaskInputError, match="task: got 'imagenet'; use one of digits, tabular, charlm, text, images, custom"):
        make_task("imagenet")


def test_more_classes_than_the_test_split_holds_names_that_cause_and_a_few_labels(tmp_path):
    """Issue 29, case 11: 10,000 labels x 5 rows blamed the row count and listed every label (69 KB)."""
    path = tmp_path / "many.parquet"
    labels = [f"label{i:05d}" for i in range(10_000) for _ in range(5)]
    pd.DataFrame({"x": range(len(labels)), "y": labels}).to_parquet(path)
    with pytest.raises(TaskInputError) as e:
        make_task("tabular", {"path": str(path), "target": "y", "problem": "classification"})
    msg = str(e.value)
    assert "10000 classes, but the test split holds 7500" in msg and "fix: merge rare classes" in msg, msg
    assert "label00000" in msg and "and 9995 more" in msg and "label09999" not in msg and len(msg) < 500, msg


def test_a_class_too_small_to_stratify_is_named(tmp_path):
    path = tmp_path / "rare.csv"
    pd.DataFrame({"x": range(41), "y": ["a"] * 20 + ["b"] * 20 + ["c"]}).to_csv(path, index=False)
    with pytest.raises(TaskInputError, match=r"task_options.target \('y'\): class\(es\) c have only 1 row\(s\); fix: give each class at least 5"):
        make_task("tabular", {"path": str(path), "target": "y", "problem": "classification"})


def test_a_saved_model_is_rebuilt_from_json_and_safetensors_alone(shipped, tmp_path):
    """Issue 29, case 1: every shipped task's models save as a JSON recipe and safetensors
    weights, and load_model rebuilds the same function from them (no pickle, no data read)."""
    from distsearch.select import evaluate
    from distsearch.select.load import load_model, save

    name, spec, task, splits = shipped
    params = [_params(p, spec) for p in SHIPPED[name]]
    torch.manual_seed(0)
    models = [task.build_model(p, splits).eval() for p in params]
    saved = evaluate.to_saved(task, splits, models, {f"t{i}": 1 / len(models) for i in range(len(models))}, params)
    save(saved, str(tmp_path / "model" / "best"))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["best.json", "best.safetensors"]
    own = None
    if name == "custom.yaml":  # its models are its own code's, which a run folder never runs: the caller passes it
        from distsearch.select.load import UnsafeModelFile

        with pytest.raises(UnsafeModelFile, match="fix: pass task="):
            load_model(tmp_path)
        own = task
    loaded = load_model(tmp_path, task=own)
    x = next(batches(task, splits.val, batch_size=4))[0]  # the model's input, as the task makes it (images: decoded)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), saved.module(x), atol=1e-6)
    assert loaded.class_names == saved.class_names and loaded.members == saved.members
    if name == "text.yaml":  # the tokenizers, rebuilt from their JSON, give the same ids
        texts = ["Return the event loop.", "Parse a MIME message " * 100]
        assert torch.equal(loaded.encode(texts), saved.encode(texts))


def test_a_jobs_splits_are_made_once_per_task_and_seed(monkeypatch):
    """Validation's dry run and the sweep share one task object: they split its data once."""
    task = make_task("digits", {})
    made = []
    real = type(task).splits
    monkeypatch.setattr(type(task), "splits", lambda self, seed: made.append(seed) or real(self, seed))
    first = splits_once(task, 0)
    assert splits_once(task, 0) is first and made == [0]
    assert splits_once(task, 1) is not first and made == [0, 1]
    assert splits_once(make_task("digits", {}), 0) is not first and made == [0, 1, 0]  # another task object splits anew

    class Unhashable:  # __eq__ without __hash__: no memo, a split per call
        __eq__ = object.__eq__
        __hash__ = None

        def splits(self, seed):
            made.append(("u", seed))
            return seed

    other = Unhashable()
    assert splits_once(other, 3) == 3 and splits_once(other, 3) == 3 and made[-2:] == [("u", 3), ("u", 3)]


def test_splits_are_scikit_learns_train_test_split_draw_for_draw():
    """``split_indices`` is NumPy; scikit-learn's ``train_test_split`` (test off all rows, then
    val off the rest, the same seed) must give the very same parts, stratified or not, with
    ties among classes' remainders, and refuse the same labels."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from distsearch.tasks import split_indices

    def sklearn_parts(n, seed, val_fraction, test_fraction, stratify):
        idx = np.arange(n)
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
        sub = None if stratify is None else stratify[rest]
        train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=sub)
        return train, val, test

    rng = np.random.default_rng(0)
    cases = 0
    for _ in range(300):
        n = int(rng.integers(20, 400))
        k = int(rng.integers(2, 9))
        fractions = (float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.05, 0.4)))
        seed = int(rng.integers(0, 2**31 - 1))
        labels = rng.choice([f"c{i}" for i in range(k)] if rng.random() < 0.3 else np.arange(k), size=n, p=rng.dirichlet(np.ones(k)))
        for stratify in (None, labels):
            try:
                expected = sklearn_parts(n, seed, *fractions, stratify)
            except ValueError:
                with pytest.raises(ValueError):
                    split_indices(n, seed, *fractions, stratify=stratify)
                continue
            got = split_indices(n, seed, *fractions, stratify=stratify)
            assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)), (n, k, fractions, seed)
            cases += 1
    assert cases > 300  # most draws split; the refusals were compared too


def test_digits_are_scikit_learns_load_digits_read_without_importing_it():
    import subprocess
    import sys

    import numpy as np
    import sklearn.datasets

    from distsearch.tasks.digits import load_digits

    pixels, target = load_digits()
    want_pixels, want_target = sklearn.datasets.load_digits(return_X_y=True)
    assert np.array_equal(pixels, want_pixels) and np.array_equal(target, want_target) and target.dtype == want_target.dtype
    code = "import sys; from distsearch.tasks import make_task; make_task('digits').splits(0); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
