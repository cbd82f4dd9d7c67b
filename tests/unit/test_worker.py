"""The Train worker's local housekeeping and its stop for reuse, without a Ray cluster."""

import os
import subprocess
import sys

import torch

from distsearch.train.worker import CHECKPOINT_TMP_PREFIX, remove_orphaned_checkpoint_copies, settle_for_reuse


def test_checkpoint_copies_of_dead_workers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited: its copy is an orphan
    orphan = tmp_path / f"{CHECKPOINT_TMP_PREFIX}{dead_pid}-abc123"
    live = tmp_path / f"{CHECKPOINT_TMP_PREFIX}{os.getpid()}-def456"
    other = tmp_path / f"{CHECKPOINT_TMP_PREFIX}notapid"  # not ours to judge
    for d in (orphan, live, other):
        d.mkdir()
        (d / "model.pt").write_bytes(b"x" * 1024)
    assert remove_orphaned_checkpoint_copies(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and live.exists() and other.exists()


class _FakeRun:
    """What settle_for_reuse reads of Ray Train's worker context: the report queue (one slot, as
    Ray Train makes it) and the runner of the training thread (Ray Train's own ThreadRunner)."""

    def __init__(self, train_fn):
        import queue

        from ray.train.v2._internal.execution.worker_group.thread_runner import ThreadRunner

        self.result_queue = queue.Queue(maxsize=1)
        self.training_thread_runner = ThreadRunner()
        self.execution_context = self
        self.training_thread_runner.run(lambda: train_fn(self.result_queue))


def _settle_with(monkeypatch, train_fn, wait_s):
    import time

    from ray.train.v2._internal.execution import context

    run = _FakeRun(train_fn)
    monkeypatch.setattr(context, "get_train_context", lambda: run)
    t0 = time.monotonic()
    return settle_for_reuse(wait_s), time.monotonic() - t0, run


def test_a_training_thread_blocked_on_reports_stops_at_its_next_report_and_the_process_is_reusable(monkeypatch):
    """The training thread reports every 10 ms into a full queue that nobody drains any more
    (the trial's controller is gone): settle drains it, the next report raises StopRequested,
    the thread ends, and the process may serve another trial, with the stop flag cleared."""
    from distsearch.train import worker

    reports = []

    def train(results):
        try:
            for epoch in range(1, 10_000):
                if worker._stop_agreed(torch.device("cpu")):
                    raise worker.StopRequested()
                results.put({"epoch": epoch})  # blocks: one slot, nobody polls
                reports.append(epoch)
        except worker.StopRequested:
            return

    ok, seconds, run = _settle_with(monkeypatch, train, wait_s=5.0)
    assert ok and seconds < 2.0
    assert not run.training_thread_runner.is_running() and run.training_thread_runner.get_error() is None
    assert not worker._STOP.is_set() and run.result_queue.empty() and len(reports) >= 1


def test_a_training_thread_that_does_not_stop_in_time_or_failed_makes_the_process_unfit(monkeypatch):
    import threading

    from distsearch.train import worker

    release = threading.Event()

    def never_reports(results):
        release.wait(30)  # e.g. one long epoch

    ok, seconds, run = _settle_with(monkeypatch, never_reports, wait_s=0.3)
    assert not ok and 0.3 <= seconds < 2.0 and run.training_thread_runner.is_running()
    release.set()
    worker._STOP.clear()

    def fails(results):
        raise ValueError("user code failed")

    ok, _, run = _settle_with(monkeypatch, fails, wait_s=2.0)
    assert not ok and isinstance(run.training_thread_runner.get_error(), Exception)
    worker._STOP.clear()


def test_the_checkpoint_ray_train_keeps_is_the_epoch_the_selection_rule_names():
    """Issue 29, case 12: on tied scores best.json picked epoch 39 while trials.parquet said
    best_epoch 6; Ray Train keeps the later of equal scores. Ray's rule, as its checkpoint
    manager applies it (highest score kept, later wins a tie, the latest always kept), over
    histories full of ties, must keep the epoch that ``recording._best_epoch`` names."""
    import random

    from distsearch import constants as C
    from distsearch.search.objective import Objective
    from distsearch.sweep.recording import _best_epoch
    from distsearch.train.checkpoint import keep_rank

    rng = random.Random(0)
    for mode in ("max", "min"):
        objective = Objective("val_accuracy", mode)
        for _ in range(200):
            history, kept = [], []  # kept: (score, report index), worst first, as Ray orders them
            for epoch in range(1, rng.randint(2, 40)):
                history.append({C.EPOCH: epoch, "val_accuracy": rng.choice([0.5, 0.75, 1.0]), "val_loss": rng.choice([0.1, 0.2, float("nan")])})
                kept.append((keep_rank(objective, history), epoch))
                kept.sort()  # equal scores: the later report sorts after, so counts as better
                latest = max(kept, key=lambda k: k[1])
                kept = [k for k in kept[-1:] if k != latest] + [latest]  # num_to_keep: 1, plus the latest
            _, best = _best_epoch(objective, history)
            assert best in {e for _, e in kept}, (history, kept)
