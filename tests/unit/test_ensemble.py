"""Ensembles: selection on fixed predictions, the test split used once per reported model, loading."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from distsearch import constants as C
from distsearch.search.objective import Objective
from distsearch.select import evaluate
from distsearch.select.ensemble import Averaged, select
from distsearch.select.load import load_model
from distsearch.spec.model import parse_job
from distsearch.tasks import make_task
from distsearch.train import loop

from ..conftest import ROOT, tiny_job

Y = torch.tensor([0, 1, 1, 0])


def _accuracy(p):
    return float((p.argmax(1) == Y).double().mean())


A = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.8, 0.2]])  # 3 of 4 right
B = torch.tensor([[0.4, 0.6], [0.1, 0.9], [0.45, 0.55], [0.7, 0.3]])  # 3 of 4 right, other mistakes
D = torch.tensor([[0.6, 0.4], [0.45, 0.55], [0.7, 0.3], [0.4, 0.6]])  # 2 of 4


def test_selection_averages_two_models_whose_mistakes_differ():
    s = select([A, B, D], _accuracy, Objective("val_accuracy", "max"), rounds=5)
    assert s.scores[0] == 0.75 and s.scores[1] == 1.0  # round 1: the best single model; round 2: the pair
    assert s.rounds_kept == 2 and s.weights == [0.5, 0.5, 0.0] and s.members == [0, 1]


def test_a_cost_budget_holds_for_the_members_sum():
    """An ensemble runs every member: A and B fit a 5 ms budget alone, not together, so the pair
    that wins without a budget is not taken; nothing fits a 1 ms budget."""
    costs = [{"latency_ms": 3.0}, {"latency_ms": 2.5}, {"latency_ms": 1.5}]
    free = select([A, B, D], _accuracy, Objective("val_accuracy", "max"), rounds=5, costs=costs)
    assert free.members == [0, 1]
    held = select([A, B, D], _accuracy, Objective("val_accuracy", "max"), rounds=5, costs=costs, budget={"latency_ms": 5.0})
    assert sum(costs[i]["latency_ms"] for i in held.members) <= 5.0 and held.members != [0, 1] and held.scores[0] == 0.75
    with pytest.raises(ValueError, match="no candidate fits the budget on its own"):
        select([A, B, D], _accuracy, Objective("val_accuracy", "max"), rounds=5, costs=costs, budget={"latency_ms": 1.0})


def test_selection_with_replacement_minimises_and_keeps_the_best_prefix():
    y = torch.tensor([1.0, 2.0, 3.0])
    low, high, far = y - 0.3, y + 0.1, y + 5.0

    def mse(p):
        return float(((p - y) ** 2).mean())

    s = select([far, low, high], mse, Objective("val_loss", "min"), rounds=8)
    assert s.weights[0] == 0.0  # the far model never helps
    assert s.scores[s.rounds_kept - 1] == min(s.scores)
    # 1 low : 3 high averages to y exactly: weights 0.25 and 0.75 (replacement at work)
    assert s.weights[1:] == [0.25, 0.75] and s.scores[s.rounds_kept - 1] == pytest.approx(0.0, abs=1e-12)


def test_equal_scores_are_told_apart_by_the_tiebreak():
    """Accuracy ties from round 2 on; the loss keeps improving as the third model joins."""

    def log_loss(p):
        return float(-(p[torch.arange(len(Y)), Y]).clamp_min(1e-12).log().mean())

    plain = select([A, B, D], _accuracy, Objective("val_accuracy", "max"), rounds=6)
    broken = select([A, B, D], _accuracy, Objective("val_accuracy", "max"), rounds=6, tiebreak=log_loss)
    assert plain.rounds_kept == 2
    assert broken.scores[broken.rounds_kept - 1] == 1.0 and broken.rounds_kept >= 2
    chosen = sum(w * p for w, p in zip(broken.weights, [A, B, D], strict=True))
    assert log_loss(chosen) <= log_loss((A + B) / 2)


def test_averaged_module_is_the_weighted_soft_vote():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    x = torch.randn(5, 3)
    m = Averaged([a, b], [0.25, 0.75], "probabilities")
    expected = 0.25 * torch.softmax(a(x).double(), -1) + 0.75 * torch.softmax(b(x).double(), -1)
    assert torch.allclose(m(x), expected)
    with pytest.raises(ValueError, match="fix: use probabilities or values"):
        Averaged([a], [1.0], "logits")


class _CountingDigits(type(make_task("digits"))):
    """The digits task, counting the metric computations that saw test targets."""

    test_storage = None
    test_scored = 0

    def metric_sums(self, outputs, targets):
        if targets.untyped_storage().data_ptr() == type(self).test_storage:
            type(self).test_scored += 1
        return super().metric_sums(outputs, targets)


def train_fake_run(tmp, spec):
    """Four digits models trained a few epochs here (no Ray), their checkpoints under ``tmp``, and
    the trials and epochs as a sweep would leave them: (task, splits, trials, epochs)."""
    task = _CountingDigits({})
    splits = task.splits(spec.seed)
    _CountingDigits.test_storage = splits.test[1].untyped_storage().data_ptr()
    _CountingDigits.test_scored = 0
    trial_rows, epoch_rows = [], []
    for i, (width, lr) in enumerate([(32, 0.01), (16, 0.003), (32, 0.001), (16, 1e-5)]):
        params = {"model": "mlp", "model.depth": 1, "model.width": width, "lr": lr, "optimizer": "adam", "batch_size": 64}
        reports = []
        loop.train(task, params, lambda m, s, r=reports: r.append((m, s)), max_epochs=3, seed=i, splits=splits)
        tid = f"t_{i:05d}"
        for metrics, state in reports:
            path = tmp / "train" / tid / f"checkpoint_{metrics['epoch']}"
            path.mkdir(parents=True)
            torch.save(state, path / C.CHECKPOINT_FILE)
            epoch_rows.append({C.TRIAL_ID: tid, C.EPOCH: metrics["epoch"], "val_accuracy": metrics["val_accuracy"], C.CHECKPOINT_PATH: str(path)})
        best = max(m["val_accuracy"] for m, _ in reports)
        status = C.STATUS_ERROR if i == 3 else C.STATUS_COMPLETED  # a failed trial is never a candidate
        trial_rows.append({C.TRIAL_ID: tid, C.STATUS: status, C.BEST_METRIC: best})
    return task, splits, pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """``train_fake_run``'s run, then evaluate_run, as the job calls it."""
    tmp = tmp_path_factory.mktemp("run")
    spec = parse_job(tiny_job(tmp, ensemble={"top_trials": 3, "rounds": 6}))
    task, splits, trials, epochs = train_fake_run(tmp, spec)
    best, ensemble = evaluate.evaluate_run(spec, task, splits, trials, epochs, str(tmp))
    return tmp, spec, task, splits, best, ensemble


def test_each_reported_model_is_scored_once_on_the_test_split(trained_run):
    tmp, spec, task, splits, best, ensemble = trained_run
    assert _CountingDigits.test_scored == 2  # the single best, then the ensemble: never during selection
    assert ensemble["skipped"] is None and ensemble["candidates"] == ["t_00000", "t_00001", "t_00002"][: len(ensemble["candidates"])]
    assert "t_00003" not in ensemble["candidates"]
    assert ensemble["single_best"]["test"] == best["test"]
    assert ensemble["val"]["val_accuracy"] >= best["final_val"]["val_accuracy"]  # selection starts from the best single model
    assert sum(m["weight"] for m in ensemble["members"]) == pytest.approx(1.0)
    assert json.loads((tmp / C.ENSEMBLE_FILE).read_text())["test"] == ensemble["test"]


def test_a_task_without_predictions_gets_the_ensemble_skipped_with_the_reason(trained_run):
    tmp, spec, task, splits, best, _ = trained_run

    class Bare:
        name = "bare"

    record = evaluate.build_ensemble(spec, Bare(), splits, pd.DataFrame(), pd.DataFrame(), best)
    assert "task bare has no prediction_kind, predictions, outputs_from_predictions" in record["skipped"] and "fix:" in record["skipped"]


def test_load_model_predicts_labels_without_ray(trained_run):
    """load_model in a fresh process where importing Ray fails: the ensemble predicts class names
    for raw digit images, matching the run's own scoring."""
    tmp, spec, task, splits, best, ensemble = trained_run
    from sklearn.datasets import load_digits

    images = load_digits().images[:20].tolist()
    code = (
        "import sys, json; sys.modules['ray'] = None\n"
        "import distsearch\n"
        f"m = distsearch.load_model({str(tmp)!r}, ensemble=True)\n"
        f"b = distsearch.load_model({str(tmp)!r})\n"
        f"print(json.dumps([m.predict({images!r}), b.predict({images!r}), m.members, m.module.training]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ens, single, members, training = json.loads(proc.stdout)
    assert members == {m[C.TRIAL_ID]: m["weight"] for m in ensemble["members"]} and training is False
    truth = [str(d) for d in load_digits().target[:20]]
    assert sum(p == t for p, t in zip(ens, truth, strict=True)) >= 15 and sum(p == t for p, t in zip(single, truth, strict=True)) >= 15
    here = load_model(tmp, ensemble=True)
    assert here.predict(images) == ens and here.class_names == [str(d) for d in range(10)]
    import numpy as np

    proba = here.predict_proba(images)  # NumPy, as scikit-learn users expect: (rows, classes)
    assert isinstance(proba, np.ndarray) and proba.shape == (20, 10)
    assert [here.class_names[i] for i in proba.argmax(1)] == ens


def test_load_model_says_why_when_there_is_no_ensemble(tmp_path):
    with pytest.raises(FileNotFoundError, match="fix: load the single best"):
        load_model(tmp_path, ensemble=True)


def test_a_run_of_the_pickle_format_is_resaved_from_its_checkpoints(trained_run, tmp_path, capsys):
    """Issue 29, case 1: ``load_model`` of an older run names ``distsearch resave-models``, which
    rebuilds the models from the checkpoints and the job's data, reading no pickle."""
    import shutil

    from distsearch import storage
    from distsearch.cli import main as cli
    from distsearch.select.load import UnsafeModelFile

    src, spec, *_ = trained_run
    run = tmp_path / "old"
    shutil.copytree(src, run)
    before = load_model(run, ensemble=True)
    for p in (run / C.MODEL_DIR).iterdir():  # as an older distsearch left it: pickles only
        p.unlink()
    (run / C.MODEL_DIR / "best.pt").write_bytes(b"\x80\x04not read")
    (run / C.MODEL_DIR / "ensemble.pt").write_bytes(b"\x80\x04not read")
    storage.write_json(str(run / C.RUN_FILE), {"job": spec.to_dict()})
    with pytest.raises(UnsafeModelFile, match="distsearch resave-models"):
        load_model(run)
    assert cli(["resave-models", str(run)]) == 0
    assert capsys.readouterr().out.count("wrote ") == 4
    after = load_model(run, ensemble=True)
    images = torch.rand(5, 64) * 16
    assert after.members == before.members and torch.equal(
        torch.as_tensor(after.predict_proba(images)), torch.as_tensor(before.predict_proba(images))
    )
    assert load_model(run).members == load_model(src).members


def test_load_model_takes_any_trial_whose_checkpoint_was_kept(trained_run, tmp_path):
    """After lean checkpoints (``keep_after_sweep: selected``), the single best loads by its trial
    id as it loads as the selected model; a trial whose model files were dropped, or one the run
    never had, is refused with the fix."""
    import shutil

    import numpy as np

    from distsearch.errors import RunFileMissing
    from distsearch.results.files import write_tables
    from distsearch.select.prune import prune_checkpoints

    tmp, spec, _, splits, best, ensemble = trained_run
    run = tmp_path / "run"
    shutil.copytree(tmp, run)
    moved = lambda p: p.replace(str(tmp), str(run))  # noqa: E731 - the copy's own checkpoint paths
    epochs = pd.DataFrame(
        [
            {C.TRIAL_ID: p.parent.name, C.EPOCH: int(p.name.split("_")[1]), "val_accuracy": 0.5, "val_loss": 1.0, C.CHECKPOINT_PATH: str(p)}
            for p in sorted((run / "train").glob("*/checkpoint_*"))
        ]
    )
    # the selected checkpoint scores best, so that it is the best trial's best epoch here too
    epochs.loc[(epochs[C.TRIAL_ID] == best[C.TRIAL_ID]) & (epochs[C.EPOCH] == best[C.EPOCH]), "val_accuracy"] = 1.0
    trials = pd.DataFrame({C.TRIAL_ID: sorted(epochs[C.TRIAL_ID].unique()), C.STATUS: C.STATUS_COMPLETED})
    write_tables(str(run), trials, epochs)
    (run / C.RUN_FILE).write_text(json.dumps({"job": spec.to_dict()}))
    moved_best = {**best, C.CHECKPOINT_PATH: moved(best[C.CHECKPOINT_PATH])}
    moved_ensemble = {**ensemble, "members": [{**m, C.CHECKPOINT_PATH: moved(m[C.CHECKPOINT_PATH])} for m in ensemble["members"]]}
    prune_checkpoints(str(run), "selected", trials, moved_best, moved_ensemble)
    x = splits.test[0][:20]
    by_id = load_model(run, trial=best[C.TRIAL_ID])
    assert by_id.members == {best[C.TRIAL_ID]: 1.0}
    assert np.allclose(by_id.predict_proba(x), load_model(run).predict_proba(x), atol=1e-6)
    dropped = next(t for t in trials[C.TRIAL_ID] if t not in {m[C.TRIAL_ID] for m in ensemble["members"]} | {best[C.TRIAL_ID]})
    with pytest.raises(RunFileMissing, match=f"trial {dropped}: none of its checkpoints was kept; fix: .*keep_after_sweep: all"):
        load_model(run, trial=dropped)
    with pytest.raises(RunFileMissing, match="trial nope: the run has no such trial"):
        load_model(run, trial="nope")
    with pytest.raises(ValueError, match="fix: pass one of them"):
        load_model(run, ensemble=True, trial=best[C.TRIAL_ID])


def test_the_exported_onnx_model_predicts_what_load_model_does(trained_run, tmp_path):
    """distsearch export: the ensemble as ONNX, run by onnxruntime, within 1e-4 of load_model on
    the test split (issue 32); preprocessing.json describes the input it takes."""
    import numpy as np

    from distsearch.select.export import export_model, onnx_predictions

    tmp, _, _, splits, _, ensemble = trained_run
    done = export_model(str(tmp), str(tmp_path / "onnx"), ensemble=True)
    assert done["files"] == ["model.onnx", "preprocessing.json"] and set(done["members"]) == {m[C.TRIAL_ID] for m in ensemble["members"]}
    described = json.loads((tmp_path / "onnx" / "preprocessing.json").read_text())
    assert described["onnx"]["input_shape"] == ["batch", 64] and described["class_names"] == [str(d) for d in range(10)]
    raw = (splits.test[0] * 16).numpy()  # the test split as load_digits gives its rows: the encoder scales them
    model = load_model(tmp, ensemble=True)
    assert np.abs(onnx_predictions(str(tmp_path / "onnx"), model.encode(raw)) - model.predict_proba(raw)).max() <= 1e-4
    with pytest.raises(ValueError, match="--format: got 'tflite'; fix: use one of onnx"):
        export_model(str(tmp), str(tmp_path / "x"), "tflite")
