"""Lean checkpoints after the sweep (``distsearch.select.prune``), on a run folder laid out as Ray
Train leaves it: what is kept, what loses its optimizer state, and what ``all`` leaves alone."""

import io

import pandas as pd
import pytest
import torch

from distsearch import constants as C
from distsearch.select.prune import prune_checkpoints
from distsearch.train.checkpoint import read_state


def _checkpoint(run, trial_id, epoch):
    d = run / C.TRAIN_DIR / trial_id / f"checkpoint_2026-01-01_00-00-0{epoch}.000000"
    d.mkdir(parents=True)
    weight = torch.ones(64, 64)
    state = {
        "model": {"w": weight},
        "optimizer": {"state": {0: {"exp_avg": torch.ones(64, 64), "exp_avg_sq": torch.ones(64, 64)}}},
        "scheduler": None,
        "epoch": epoch,
        "params": {"lr": 0.1},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (d / C.CHECKPOINT_FILE).write_bytes(buffer.getvalue())
    (d / C.CHECKPOINT_META_FILE).write_text('{"epoch": %d}' % epoch)
    return str(d)


@pytest.fixture
def run(tmp_path):
    paths = {(t, e): _checkpoint(tmp_path, t, e) for t in ("best", "member", "other", "cut") for e in (1, 2)}
    (tmp_path / C.TRAIN_DIR / "best" / "checkpoint_manager_snapshot.json").write_text("{}")
    trials = pd.DataFrame(
        {C.TRIAL_ID: ["best", "member", "other", "cut"], C.STATUS: [C.STATUS_COMPLETED, C.STATUS_STOPPED, C.STATUS_COMPLETED, C.STATUS_CANCELLED]}
    )
    best = {C.TRIAL_ID: "best", C.CHECKPOINT_PATH: paths[("best", 2)]}
    ensemble = {
        "members": [{C.TRIAL_ID: "best", C.CHECKPOINT_PATH: paths[("best", 2)]}, {C.TRIAL_ID: "member", C.CHECKPOINT_PATH: paths[("member", 1)]}]
    }
    return tmp_path, paths, trials, best, ensemble


def _models(run_dir):
    return sorted(str(p.parent) for p in (run_dir / C.TRAIN_DIR).glob("*/checkpoint_*/" + C.CHECKPOINT_FILE))


def test_selected_keeps_the_chosen_and_the_resumable_and_drops_the_optimizer_of_ended_trials(run):
    run_dir, paths, trials, best, ensemble = run
    record = prune_checkpoints(str(run_dir), "selected", trials, best, ensemble)
    assert _models(run_dir) == sorted([paths[("best", 2)], paths[("member", 1)], paths[("cut", 1)], paths[("cut", 2)]])
    for kept in (paths[("best", 2)], paths[("member", 1)]):
        state = read_state(open(f"{kept}/{C.CHECKPOINT_FILE}", "rb").read(), kept)
        assert state["optimizer"] is None and torch.equal(state["model"]["w"], torch.ones(64, 64)) and state["params"] == {"lr": 0.1}
    cut = read_state(open(f"{paths[('cut', 2)]}/{C.CHECKPOINT_FILE}", "rb").read(), "cut")
    assert cut["optimizer"] is not None  # a cancelled trial resumes from it
    assert record["model_files_before"] == 8 and record["model_files_after"] == 4
    # the reports a resumed driver reads stay beside every dropped model file
    assert len(list((run_dir / C.TRAIN_DIR).glob("*/checkpoint_*/" + C.CHECKPOINT_META_FILE))) == 8
    # two of eight checkpoints lose two thirds of their tensors, four go: about a third is left
    assert 0.2 < record["bytes_after"] / record["bytes_before"] < 0.45, record
    assert (run_dir / C.TRAIN_DIR / "best" / "checkpoint_manager_snapshot.json").exists()


def test_all_leaves_every_checkpoint_as_it_was(run):
    run_dir, paths, trials, best, ensemble = run
    before = {p: open(f"{p}/{C.CHECKPOINT_FILE}", "rb").read() for p in paths.values()}
    record = prune_checkpoints(str(run_dir), "all", trials, best, ensemble)
    assert {p: open(f"{p}/{C.CHECKPOINT_FILE}", "rb").read() for p in paths.values()} == before
    assert record["bytes_after"] == record["bytes_before"] and record["model_files_after"] == 8


def test_a_run_without_an_ensemble_or_checkpoints_is_handled(tmp_path):
    trials = pd.DataFrame({C.TRIAL_ID: ["a"], C.STATUS: [C.STATUS_ERROR]})
    assert prune_checkpoints(str(tmp_path), "selected", trials, None, None) == {
        "keep_after_sweep": "selected", "model_files_before": 0, "bytes_before": 0, "model_files_after": 0, "bytes_after": 0,
    }  # fmt: skip
