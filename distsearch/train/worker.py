"""The Ray Train side of a trial: what each DDP worker runs. Knows Ray Train, not Tune.

Kept light on purpose: a worker process that is not kept for later trials (distsearch._ray.warm) is
a fresh process that imports this module, so it imports neither Tune, pandas nor scikit-learn.
The task object and its splits arrive through the object store, built once by the driver, so
workers do not each reload and re-split the data.

A worker process that serves several trials in turn (``harness.trial_processes: kept_worker_group``) is asked
to end a trial's training early with ``request_stop``: every rank leaves at the same report,
the one after the request, so no rank is left waiting in a collective for a peer that has gone;
a lone rank leaves at its next batch.
``settle_for_reuse`` then makes the process ready for the next trial's run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import torch
from ray.train import UserCallback

from .. import constants as C
from .. import storage
from .._ray.train import renew_upload_pool
from ..search.objective import Objective
from ..spec.model import JobSpec
from . import checkpoint, loop, spares

# Set in this worker process to end its trial's training at the next report (every rank agrees
# there first). One Train worker per process, so one flag per process.
_STOP = threading.Event()


class StopRequested(Exception):
    """Raised out of ``report`` when the ranks agreed to stop; ``train_worker`` returns on it."""


def request_stop() -> None:
    """Ask this process's training to end at its next report (the loop's epoch end)."""
    _STOP.set()


def _stop_agreed(device: torch.device) -> bool:
    """Whether any rank was asked to stop: a MAX all-reduce of the flag, called by every rank at
    the same report, so all ranks leave at the same epoch. One rank alone: the flag."""
    stop = _STOP.is_set()
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        flag = torch.tensor([int(stop)], device=device)  # NCCL reduces CUDA tensors only
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


def settle_for_reuse(wait_s: float) -> bool:
    """Run in a Train worker's actor thread when its trial's run ends: have the training thread
    stop at its next report (``request_stop``), take every report it still puts out (nobody
    polls them any more, and the queue holds one), and wait up to ``wait_s`` seconds for the
    thread to end. Then tear down torch.distributed, so the next run's backend can set it up
    again. Returns whether this process can serve another trial: False when the thread is still
    running, or ended with an error, or the worker never had a run."""
    from .._ray.train import execution_context

    try:
        runner, results = execution_context()
    except Exception:  # noqa: BLE001 - no run was ever set up here
        return False
    request_stop()
    deadline = time.monotonic() + wait_s
    while True:
        while not results.empty():
            with contextlib.suppress(queue.Empty):
                results.get_nowait()
                results.task_done()
        if not runner.is_running() or time.monotonic() >= deadline:
            break
        time.sleep(0.001)  # the next trial in this process waits on this loop
    if runner.is_running() or runner.get_error() is not None:
        return False
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _STOP.clear()
    return True


# Local copies of rank 0's checkpoints before Ray Train moves them to storage, named
# <prefix><pid>-<random>: a worker killed mid-upload (ASHA's stop, a job stop) leaves its copy.
CHECKPOINT_TMP_PREFIX = "distsearch-ckpt-"


def remove_orphaned_checkpoint_copies(tmp_dir: Optional[str] = None) -> list[str]:
    """Delete the local checkpoint copies whose worker process is gone; return their paths.
    Each worker calls this at start, so a node keeps at most the copies of live workers."""
    removed = []
    for d in Path(tmp_dir or tempfile.gettempdir()).glob(f"{CHECKPOINT_TMP_PREFIX}*-*"):
        pid = d.name[len(CHECKPOINT_TMP_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
        except PermissionError:
            pass  # alive, another user's
    return removed


def train_worker(cfg: dict[str, Any]) -> None:
    """One Train worker. ``cfg``: ``job`` (a JobSpec dict), ``params`` (flat), ``data`` ([ObjectRef] to (task, splits)),
    ``spare_keep_alive_s`` (> 0: have a spare process started for a later trial, kept this long; see distsearch.train.spares)."""
    import ray
    import ray.train
    import ray.train.torch

    spec = JobSpec.model_validate(cfg["job"])
    if spec.harness.reuses_worker_groups:
        # This run's own upload pool, made here rather than by one more call to each worker
        # between the trials: the next trial's first epoch would wait on it.
        renew_upload_pool()
    objective = Objective.of(spec)
    _STOP.clear()  # a stop asked of this process's previous run is not this run's
    if cfg.get("spare_keep_alive_s", 0) > 0:
        # A thread: the request is a GCS lookup and a raylet call that the first epoch need not wait for.
        threading.Thread(target=spares.ask_for_spare, args=(cfg["spare_keep_alive_s"],), daemon=True).start()
    remove_orphaned_checkpoint_copies()
    torch.set_num_threads(max(1, int(spec.scaling.cpus_per_worker)))
    task, splits = ray.get(cfg["data"][0])
    ctx = ray.train.get_context()
    pg = ray.util.get_current_placement_group()
    node_ids = [ray.get_runtime_context().get_node_id()]
    if torch.distributed.is_initialized() and ctx.get_world_size() > 1:
        node_ids = [None] * ctx.get_world_size()
        torch.distributed.all_gather_object(node_ids, ray.get_runtime_context().get_node_id())
    # Rank 0's copy of these reaches the driver with every report; the PG id is how the
    # driver releases this worker group without the State API (see distsearch.sweep.cleanup).
    tags = {
        C.PLACEMENT_GROUP_ID: pg.id.hex() if pg is not None else "",
        C.NODE_IDS: ",".join(node_ids),
        C.WORLD_SIZE: ctx.get_world_size(),
        C.WORKER_PROCESS_STARTED_AT: spares.process_started_at(),
    }
    start_state = None
    # Every report so far, rank 0's view, stored inside each checkpoint: the latest checkpoint
    # then holds the trial's whole history, on whatever storage Ray Train writes to, as
    # atomically as the checkpoint itself. A driver that restarts reads it from there (Tune's
    # own result logs reach storage only every few seconds).
    history: list[dict[str, Any]] = []
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            path = Path(d, C.CHECKPOINT_FILE)
            start_state = checkpoint.read_state(path.read_bytes(), f"{storage.uri(ckpt.filesystem, ckpt.path)}/{C.CHECKPOINT_FILE}")
            history = json.loads(Path(d, C.CHECKPOINT_HISTORY_FILE).read_text())
        *unseen, restored = checkpoint.resumed_reports(start_state, history, cfg["params"], ckpt.path, cfg.get("seen_epoch"))
        # Repeated (the driver keeps the first copy of each epoch), keeping where that epoch ran
        # (its group may have died before its own report got out, e.g. with a lost node); only
        # the PG id is this group's, for the driver to release.
        for metrics in unseen:
            ray.train.report({**tags, **metrics, C.PLACEMENT_GROUP_ID: tags[C.PLACEMENT_GROUP_ID]})
        ray.train.report(
            {
                **tags,
                **restored,
                C.PLACEMENT_GROUP_ID: tags[C.PLACEMENT_GROUP_ID],
                C.CHECKPOINT_PATH: storage.uri(ckpt.filesystem, ckpt.path),
            }
        )

    device = ray.train.torch.get_device()
    # Only a kept group's workers are ever asked to stop (distsearch._ray.warm); elsewhere the agreement
    # would be one all-reduce per epoch for nothing.
    stoppable = spec.harness.reuses_worker_groups
    # A lone rank has no peer to agree with, so it leaves at its next batch rather than finish
    # an epoch whose report nobody will take: the next trial in this process starts that much sooner.
    interrupted = _STOP.is_set if stoppable and ctx.get_world_size() == 1 else None
    upload_mode = ray.train.CheckpointUploadMode.ASYNC if spec.harness.checkpoint_upload == "async" else ray.train.CheckpointUploadMode.SYNC

    def report(metrics: dict[str, Any], state: Optional[dict[str, Any]]) -> None:
        if stoppable and _stop_agreed(device):
            raise StopRequested()
        metrics = {**metrics, **tags}
        if state is None:
            ray.train.report(metrics)
            return
        metrics = checkpoint.recorded(history, metrics, objective, spec.selection.smoothing_epochs)
        d = tempfile.mkdtemp(prefix=f"{CHECKPOINT_TMP_PREFIX}{os.getpid()}-")
        for name, data in checkpoint.files(state, metrics, history).items():
            Path(d, name).write_bytes(data)
        # async: the copy to storage runs in Ray Train's upload thread (one thread, so in report
        # order; the worker waits for it before it exits) while the next epoch trains, and the
        # metrics reach the driver once their checkpoint is stored. Ray deletes ``d`` after the copy.
        ray.train.report(
            metrics, checkpoint=ray.train.Checkpoint.from_directory(d), checkpoint_upload_mode=upload_mode, delete_local_checkpoint_after_upload=True
        )

    try:
        loop.train_for_job(spec, task, cfg["params"], report, splits=splits, device=device, start_state=start_state, interrupted=interrupted)
    except StopRequested:
        pass  # the trial was ended (ASHA, a limit): its run is over, and this process may serve the next


class ForwardReports(UserCallback):
    """Runs in the Train controller: forwards rank 0's metrics of every report (and the stored
    checkpoint's path) into ``queue``, which the trial function drains into ``tune.report``.

    Replaces Ray's ``TuneReportCallback``, whose hand-off can deadlock a trial: when
    the last report is still in its queue as ``fit()`` returns, Tune's main thread takes it and
    blocks for good on a one-slot result queue that already holds the function's final result.
    """

    def __init__(self, queue):
        self._queue = queue

    def __getstate__(self):
        # Ray Train ships the run config, callbacks included, to every worker, which never
        # calls after_report; an in-process queue stays behind (a Ray Queue's handle travels).
        import queue as _queue

        return {"_queue": None if isinstance(self._queue, _queue.Queue) else self._queue}

    def after_report(self, run_context, metrics, checkpoint):
        item = dict(metrics[0])
        if checkpoint is not None:
            item[C.CHECKPOINT_PATH] = storage.uri(checkpoint.filesystem, checkpoint.path)
        self._queue.put(item)  # returns once the item is in the queue, so none is in flight after fit()
