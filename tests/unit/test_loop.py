"""The per-worker loop alone: a config and a fake report, no Ray."""

import io
import math

import pytest
import torch

from distsearch import constants as C
from distsearch.tasks import make_task
from distsearch.train import loop


@pytest.fixture(scope="module")
def digits():
    task = make_task("digits")
    return task, task.splits(seed=0)


def test_reports_every_epoch_and_learns(digits):
    task, splits = digits
    reports = []
    loop.train(task, {"model": "mlp", "model.width": 64, "lr": 3e-3}, lambda m, s: reports.append((m, s)), max_epochs=5, seed=0, splits=splits)
    assert [m[C.EPOCH] for m, _ in reports] == [1, 2, 3, 4, 5]
    metrics, state = reports[-1]
    assert metrics["val_accuracy"] > 0.9 and metrics["train_accuracy"] > 0.9
    assert {"train_loss", "val_loss", "lr", C.EPOCH_SECONDS, C.BUSY_SECONDS} <= set(metrics)
    assert reports[0][0]["val_loss"] > metrics["val_loss"]
    assert state["epoch"] == 5 and set(state) >= {"model", "optimizer", "params"}


def test_costs_are_measured_once_before_training_and_reported_every_epoch(digits):
    task, splits = digits
    params = {"model": "mlp", "model.width": 64, "model.depth": 1, "lr": 3e-3}
    reports, plain = [], []
    costs = {"batch_size": 4, "warmup_passes": 2, "passes": 5}
    loop.train(task, params, lambda m, s: reports.append(m), max_epochs=2, seed=0, splits=splits, costs=costs)
    loop.train(task, params, lambda m, s: plain.append(m), max_epochs=1, seed=0, splits=splits)
    model = task.build_model(params, splits)
    n = sum(p.numel() for p in model.parameters())
    first, second = reports
    assert first[C.NUM_PARAMS] == n and first[C.MODEL_BYTES] == 4 * n + sum(b.numel() * b.element_size() for b in model.buffers())
    assert 0 < first[C.LATENCY_MS] < 1000 and second[C.LATENCY_MS] == first[C.LATENCY_MS]  # once per run, the same every epoch
    assert C.PEAK_MEMORY_BYTES not in first  # a CPU reports no allocator peak
    assert not set(C.COST_METRICS) & set(plain[0])  # measured only when asked for
    # a wider model costs more, by every measure
    wide = []
    loop.train(task, {**params, "model.width": 256, "model.depth": 3}, lambda m, s: wide.append(m), max_epochs=1, seed=0, splits=splits, costs=costs)
    assert wide[0][C.NUM_PARAMS] > first[C.NUM_PARAMS] and wide[0][C.MODEL_BYTES] > first[C.MODEL_BYTES]


def test_splits_are_disjoint_stratified_and_seeded(digits):
    task, splits = digits
    n = [len(s[1]) for s in (splits.train, splits.val, splits.test)]
    assert sum(n) == 1797 and n[2] == pytest.approx(0.15 * 1797, abs=2)
    rows = [{tuple(r.tolist()) for r in s[0]} for s in (splits.train, splits.val, splits.test)]
    assert not (rows[0] & rows[2]) or len(rows[0] & rows[2]) < 5  # digits has a few duplicate images
    assert torch.bincount(splits.test[1]).min() >= 25  # every class present in test (stratified)
    again = task.splits(seed=0)
    assert torch.equal(again.test[0], splits.test[0])
    assert not torch.equal(task.splits(seed=1).test[0], splits.test[0])


def test_resume_continues_after_the_checkpoint_epoch(digits):
    task, splits = digits
    params = {"model": "cnn", "model.channels": 8, "model.width": 32, "model.depth": 1, "optimizer": "sgd", "lr": 0.05, "lr_schedule": "cosine"}
    full, saved = [], []

    def persist(metrics, state):  # what a real reporter does: serialise inside the call
        full.append(metrics)
        buf = io.BytesIO()
        torch.save(state, buf)
        saved.append(buf.getvalue())

    loop.train(task, params, persist, max_epochs=4, seed=0, splits=splits)
    start = torch.load(io.BytesIO(saved[1]), weights_only=False)
    assert start["epoch"] == 2
    rest = []
    loop.train(task, params, lambda m, s: rest.append(m), max_epochs=4, seed=0, splits=splits, start_state=start)
    assert [m[C.EPOCH] for m in rest] == [3, 4]
    assert rest[-1]["val_loss"] == pytest.approx(full[-1]["val_loss"], rel=1e-4)  # same trajectory


def test_every_optimizer_and_activation_builds(digits):
    task, splits = digits
    for opt in ("sgd", "adam", "adamw"):
        for act in ("relu", "tanh", "sigmoid", "gelu"):
            got: list = []
            loop.train(
                task,
                {"optimizer": opt, "activation": act, "model.depth": 1, "model.width": 16},
                lambda m, s, got=got: got.append(m),
                max_epochs=1,
                seed=0,
                splits=splits,
            )
            assert math.isfinite(got[0]["val_loss"])


def test_non_finite_loss_raises(digits):
    task, splits = digits

    class NaNTask:
        def __getattr__(self, name):
            return getattr(task, name)

        def loss(self, outputs, targets):
            return task.loss(outputs, targets) * float("nan")

    with pytest.raises(loop.NonFiniteLossError, match="epoch 1"):
        loop.train(NaNTask(), {}, lambda m, s: None, max_epochs=2, seed=0, splits=splits)


@pytest.mark.parametrize("n,world", [(1257, 2), (1257, 3), (10, 4), (7, 1)])
def test_epoch_shards_are_disjoint_and_equal(n, world):
    shards = [loop.epoch_shard(n, r, world, seed=0, epoch=3) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == n // world
    flat = torch.cat(shards).tolist()
    assert len(set(flat)) == len(flat) and all(0 <= i < n for i in flat)
    assert not torch.equal(loop.epoch_shard(n, 0, world, 0, 3), loop.epoch_shard(n, 0, world, 0, 4)) or n // world < 2


def test_an_interrupted_lone_rank_stops_at_its_next_batch_without_that_epochs_report(digits, monkeypatch):
    """A kept worker's trial that Tune ended leaves mid-epoch: the epoch it was in is not
    reported, and no batch runs after the flag is raised. Several ranks refuse the flag."""
    task, splits = digits
    params = {"model": "mlp", "model.width": 64, "lr": 3e-3, "batch_size": 64}
    batches_per_epoch = math.ceil(len(splits.train[1]) / 64)
    asked, reports = [], []

    def interrupted() -> bool:
        asked.append(len(reports))
        return len(asked) > batches_per_epoch + 3  # three batches into the second epoch

    loop.train(task, params, lambda m, s: reports.append(m), max_epochs=5, seed=0, splits=splits, interrupted=interrupted)
    assert [m[C.EPOCH] for m in reports] == [1]
    assert len(asked) == batches_per_epoch + 4  # asked before each batch; none ran once it said so
    monkeypatch.setattr(loop, "_world", lambda: (0, 2))
    with pytest.raises(ValueError, match="lone rank"):
        loop.train(task, params, lambda m, s: None, max_epochs=1, seed=0, splits=splits, interrupted=lambda: False)
