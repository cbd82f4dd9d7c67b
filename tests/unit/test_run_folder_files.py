"""Nothing read from a run folder runs code (issue 29, case 1): a hostile pickle planted as each
kind of file distsearch reads back (a saved model, a trial checkpoint, the TPE searcher's state)
is refused, with an error naming the file, and the code in it never runs."""

import io
import json
import os

import pytest
import torch

from distsearch import constants as C
from distsearch import load_model
from distsearch.results import files as results
from distsearch.select import evaluate
from distsearch.select.load import MAX_DESCRIPTION_BYTES, UnsafeModelFile, save
from distsearch.tasks import make_task
from distsearch.train.checkpoint import UnsafeCheckpoint

from .test_tpe import _run, _tpe


class Evil:
    """Unpickling this runs a shell command that writes ``marker``."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    Evil.marker = str(tmp_path / "marker")
    buf = io.BytesIO()
    torch.save({"model": Evil()}, buf)
    return buf.getvalue(), tmp_path / "marker"


def _digits_run(tmp_path):
    task = make_task("digits")
    splits = task.splits(0)
    params = {"model": "mlp", "model.depth": 1, "model.width": 16}
    model = task.build_model(params, splits).eval()
    save(evaluate.to_saved(task, splits, [model], {"t0": 1.0}, [params]), str(tmp_path / C.MODEL_DIR / C.BEST_MODEL))
    return model


def test_a_pickle_in_place_of_the_weights_is_refused(tmp_path, evil):
    data, marker = evil
    _digits_run(tmp_path)
    weights = tmp_path / C.MODEL_DIR / (C.BEST_MODEL + C.MODEL_WEIGHTS_SUFFIX)
    weights.write_bytes(data)
    with pytest.raises(UnsafeModelFile, match=f"{weights}: not the safetensors weights"):
        load_model(tmp_path)
    assert not marker.exists()


def test_a_run_of_the_pickle_format_is_never_unpickled_and_the_error_says_how_to_convert(tmp_path, evil):
    """The repro: ``torch.save(Evil(), RUN/model/best.pt)``; ``load_model(RUN)`` wrote the marker."""
    data, marker = evil
    legacy = tmp_path / C.MODEL_DIR / "best.pt"
    legacy.parent.mkdir()
    legacy.write_bytes(data)
    with pytest.raises(UnsafeModelFile, match=f"{legacy} is a pickle .* fix: run `distsearch resave-models {tmp_path}`"):
        load_model(tmp_path)
    assert not marker.exists()


def test_a_description_is_read_only_within_its_bound_and_names_no_code(tmp_path):
    _digits_run(tmp_path)
    described = tmp_path / C.MODEL_DIR / (C.BEST_MODEL + C.MODEL_DESCRIPTION_SUFFIX)
    desc = json.loads(described.read_text())
    described.write_text(json.dumps({**desc, "task": "custom"}))
    with pytest.raises(UnsafeModelFile, match="custom task's models are built by its own code.*fix: pass task="):
        load_model(tmp_path)
    with open(described, "wb") as f:  # sparse: no disk used
        f.truncate(MAX_DESCRIPTION_BYTES + 1)
    with pytest.raises(UnsafeModelFile, match="more than the .* this file may hold"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_the_described_model_are_refused_and_a_huge_file_is_not_read(tmp_path):
    _digits_run(tmp_path)
    described = tmp_path / C.MODEL_DIR / (C.BEST_MODEL + C.MODEL_DESCRIPTION_SUFFIX)
    desc = json.loads(described.read_text())
    desc["members"][0]["params"]["model.width"] = 8  # a smaller model than the weights hold
    described.write_text(json.dumps(desc))
    with pytest.raises(UnsafeModelFile, match=r"tensors members\.0\.1\.bias, .* do not match the model its description builds"):
        load_model(tmp_path)
    weights = tmp_path / C.MODEL_DIR / (C.BEST_MODEL + C.MODEL_WEIGHTS_SUFFIX)
    with open(weights, "wb") as f:  # sparse: 16 GiB that reading would allocate
        f.truncate(16 * 2**30)
    with pytest.raises(UnsafeModelFile, match="more than the .* this file may hold"):
        load_model(tmp_path)


def test_a_pickle_in_a_checkpoint_is_refused_where_the_driver_and_the_workers_read_it(tmp_path, evil):
    data, marker = evil
    ckpt = tmp_path / "train" / "t0" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    (ckpt / C.CHECKPOINT_FILE).write_bytes(data)
    with pytest.raises(UnsafeCheckpoint, match=f"{ckpt / C.CHECKPOINT_FILE}: not a distsearch checkpoint .* fix: delete"):
        results.load_state(str(ckpt))  # the driver's read (evaluation); worker.py reads through the same function
    assert not marker.exists()


def test_a_pickle_as_the_searcher_state_is_refused(tmp_path, evil):
    import pickle

    _, marker = evil
    tpe = _tpe(tmp_path)
    tpe.suggest("a")
    _run(tpe, "a", [0.5] * 9)
    path = tmp_path / "searcher-state-x.pkl"
    tpe.save(str(path))
    assert json.loads(path.read_text())["records"]["a"]["state"] == "COMPLETE"  # JSON, whatever the suffix Tune gives it
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match=f"{path}: not the JSON searcher state .*a pickle is never loaded"):
        _tpe(tmp_path).restore(str(path))
    assert not marker.exists()
