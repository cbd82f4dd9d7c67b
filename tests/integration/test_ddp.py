"""Real gloo DDP with 2 processes through the per-worker loop, without Ray."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distsearch import constants as C
from distsearch.tasks import make_task
from distsearch.train import loop

PARAMS = {"model": "mlp", "model.width": 32, "lr": 0.01, "batch_size": 64}


def _rank_main(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    task = make_task("digits")
    splits = task.splits(seed=0)
    reports = []

    def report(metrics, state):
        reports.append(metrics)
        if state is not None:
            torch.save(state, os.path.join(out_dir, f"state{metrics[C.EPOCH]}.pt"))

    loop.train(task, PARAMS, report, max_epochs=2, seed=0, splits=splits)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(reports, f)
    dist.barrier()
    dist.destroy_process_group()
    # Skip interpreter teardown: gloo's threads can still be joinable when C++ statics are
    # destroyed, which aborts the process ("terminate called without an active exception",
    # seen once in CI) after all the work above is done and written.
    os._exit(0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_two_rank_metrics_are_reduced_over_the_whole_split(tmp_path):
    mp.spawn(_rank_main, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    for a, b in zip(r0, r1, strict=True):  # every rank reports the same, all-reduced numbers
        assert a["val_accuracy"] == b["val_accuracy"] and a["train_loss"] == pytest.approx(b["train_loss"])
    assert not (tmp_path / "rank1.json").read_text() == "" and len(list(tmp_path.glob("state*.pt"))) == 2  # rank 0 only
    # The reported val accuracy equals the final model's accuracy on the *whole* validation
    # split, not on rank 0's half of it.
    task = make_task("digits")
    splits = task.splits(seed=0)
    state = torch.load(tmp_path / "state2.pt", weights_only=False)
    model = task.build_model(PARAMS, splits)
    model.load_state_dict(state["model"])
    whole = task.metrics_from_sums(loop.evaluate(task, model, splits.val, torch.device("cpu")))
    assert r0[-1]["val_accuracy"] == pytest.approx(whole["accuracy"], abs=1e-9)
    half = task.metrics_from_sums(loop.evaluate(task, model, (splits.val[0][0::2], splits.val[1][0::2]), torch.device("cpu")))
    assert half["accuracy"] != whole["accuracy"] or len(splits.val[1]) < 2
