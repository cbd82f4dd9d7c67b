"""Spare Train worker processes: the next trial's workers start in processes that are already up.

Unless a trial keeps its actor's worker group (distsearch._ray.warm), its workers are new
actors, and a new actor needs a new Python process that starts Ray, imports torch and imports
``torch._dynamo`` (torch's optimizers import it on their first step), all before the first
epoch. A raylet can start worker processes ahead
of demand (its ``PrestartWorkers`` call, which Ray's Python API does not expose), and an actor
whose runtime env matches takes an idle one. So:

- the trial gives its Train workers a process setup hook (``HOOK``), which a worker process runs
  as it starts, before it is handed any actor: it imports the training stack;
- each Train worker, as it starts, asks its own raylet for one spare process with its own job
  and runtime env (``ask_for_spare``), to replace itself for the next trial on that node, where
  the driver's ``SparePlan`` says so (by default, only where the trials leave a CPU free);
- the driver asks for the first trials' spares before Tune starts (``sweep.trial.start_first_spares``).

A spare that no trial takes is an idle worker: Ray keeps it for ``keep_alive_s``, then may end
it like any idle worker, and ends it with the job. Everything here is best effort: when the
call fails (another Ray version, a raylet that refuses), the next trial starts as it would
have anyway, in a fresh process.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("distsearch")

#: Import path of the setup hook that Ray runs in each new Train worker process.
HOOK = f"{__name__}.import_training_stack"


def hook_env_var() -> str:
    """The environment variable through which Ray's worker processes find their setup hook."""
    from .._ray.raylet import worker_setup_hook_env_var

    return worker_setup_hook_env_var()


def import_training_stack() -> None:
    """What every trial's workers import before their first epoch, imported once, at process start."""
    # torch.optim's first step imports torch._dynamo; distsearch.train.worker brings
    # torch, Ray Train, the loop and the spec.
    for name in ("torch._dynamo", "torch.distributed", "distsearch.models", "distsearch.tasks", "distsearch.train.worker"):
        importlib.import_module(name)


def process_started_at() -> float:
    """UTC seconds at which this process started, to about 10 ms (Linux); NaN where /proc is missing.

    A Train worker that took a spare started before its trial did; a new process, after."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime_s - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return float("nan")


_warned = threading.Event()


def prestart(node_id: str, serialized_runtime_env: str, count: int, keep_alive_s: float, batch: int = 0) -> bool:
    """Ask the raylet of ``node_id`` to start ``count`` idle worker processes for the current job
    with this runtime env, kept at least ``keep_alive_s``; with ``batch``, at most that many per
    request, a second apart. Returns whether the raylet took every request; a failure is logged
    once per process and otherwise ignored. Needs a connected Ray."""
    import ray

    from .._ray import raylet

    try:
        node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
        raylet.prestart(node, ray.get_runtime_context().get_job_id(), serialized_runtime_env, count, keep_alive_s, batch=batch)
        return True
    except Exception as e:  # noqa: BLE001 - a spare only saves time; trials go on without one
        if not _warned.is_set():
            _warned.set()
            log.warning("could not ask the raylet for spare worker processes (trials start new ones instead): %r", e)
        return False


def ask_for_spare(keep_alive_s: float) -> bool:
    """From a Train worker: one spare like this worker's process, on its node, for the next trial."""
    import ray

    ctx = ray.get_runtime_context()
    return prestart(ctx.get_node_id(), ctx.get_runtime_env_string(), 1, keep_alive_s)
