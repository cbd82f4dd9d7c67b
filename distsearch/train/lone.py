"""A lone worker in its trial's own process: a one-worker trial trained in the Tune actor, with no Ray Train run.

With ``harness.trial_processes: trial_actor``, a trial of one worker trains in the actor that
runs its trial function (``sweep.trial``), on a thread beside it: no second process starts and
imports torch, no controller polls a worker for its reports, and the trial makes and removes no
placement group of its own. Tune's actor is the worker, and holds the worker's resources. Ray
Train is not there to keep checkpoints, so the trial keeps its own (``train.store``), in Ray
Train's layout, and resumes from the latest. Knows no Tune: the trial function takes each
report from ``put``.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

import torch

from .. import constants as C
from .. import storage
from ..search.objective import Objective
from ..spec.model import JobSpec
from . import checkpoint, loop, spares
from .store import TrialCheckpoints

#: ``put(metrics, stored)``: an epoch's report, and the future of its checkpoint's directory.
Put = Callable[[dict[str, Any], "Optional[Future[str]]"], None]

# The task and splits this actor last fetched, by object reference: a reused actor's next trial
# of the same sweep takes them again instead of deserialising the data once more.
_DATA: dict[str, Any] = {}


class Stopped(Exception):
    """Raised out of a report once the trial was asked to stop; ``train_lone`` returns on it."""


def _data(ref: Any) -> Any:
    import ray

    key = ref.hex()
    if key not in _DATA:
        _DATA.clear()  # another sweep's: one sweep's data at a time
        _DATA[key] = ray.get(ref)
    return _DATA[key]


def _stored(path: str) -> "Future[str]":
    done: Future[str] = Future()
    done.set_result(path)
    return done


def device_of(spec: JobSpec) -> torch.device:
    """The lone worker's device: the GPU Ray gave the actor (the only one it sees), or the CPU."""
    return torch.device("cuda", 0) if spec.scaling.use_gpu else torch.device("cpu")


def train_lone(cfg: dict[str, Any], trial_dir: str, put: Put, stop: threading.Event) -> None:
    """Train one trial in this thread. ``cfg`` is ``train_worker``'s (``job``, ``params``,
    ``data``); checkpoints go under ``trial_dir`` (``<train dir>/<trial id>``), and a trial with
    one there resumes from the latest, repeating its report first. Each epoch's report goes to
    ``put`` with the future of its checkpoint's directory, set once the checkpoint is on storage:
    with ``harness.checkpoint_upload: async`` the next epoch trains meanwhile (one upload thread,
    so in report order), with ``sync`` before ``put``. Returns when training ends, or at the next
    batch once ``stop`` is set."""
    import ray

    spec = JobSpec.model_validate(cfg["job"])
    objective = Objective.of(spec)
    torch.set_num_threads(max(1, int(spec.scaling.cpus_per_worker)))  # this actor's process is the trial's own
    task, splits = _data(cfg["data"][0])
    tags = {
        C.PLACEMENT_GROUP_ID: "",  # Tune's own, which it keeps for the actor's next trial: not the driver's to remove
        C.NODE_IDS: ray.get_runtime_context().get_node_id(),
        C.WORLD_SIZE: 1,
        C.WORKER_PROCESS_STARTED_AT: spares.process_started_at(),
    }
    store = TrialCheckpoints(trial_dir, spec.checkpointing.num_to_keep)
    start_state, history = None, []
    if store.latest is not None:
        where = store.path(store.latest)
        model_file = storage.join(where, C.CHECKPOINT_FILE)
        start_state = checkpoint.read_state(storage.read_bytes(model_file), model_file)
        history = storage.read_json(storage.join(where, C.CHECKPOINT_HISTORY_FILE))
        *unseen, restored = checkpoint.resumed_reports(start_state, history, cfg["params"], where, cfg.get("seen_epoch"))
        for metrics in unseen:
            put({**tags, **metrics}, None)
        put({**tags, **restored}, _stored(where))
    uploads = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-upload") if spec.harness.checkpoint_upload == "async" else None

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        if stop.is_set():
            raise Stopped()
        metrics = checkpoint.recorded(history, {**metrics, **tags}, objective, spec.selection.smoothing_epochs)
        files = checkpoint.files(state, metrics, history)
        epoch, rank = int(metrics[C.EPOCH]), float(metrics[C.CHECKPOINT_KEEP_RANK])
        put(metrics, uploads.submit(store.write, epoch, rank, files) if uploads else _stored(store.write(epoch, rank, files)))

    try:
        loop.train_for_job(spec, task, cfg["params"], report, splits=splits, device=device_of(spec), start_state=start_state, interrupted=stop.is_set)
    except Stopped:
        pass
    finally:
        if uploads is not None:
            uploads.shutdown(wait=True)  # every checkpoint reported is stored before the trial ends
