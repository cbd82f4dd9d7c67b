"""Spare Train worker processes: the next trial's workers start in processes that are already up.

Ray 2.60 cannot keep Train workers across ``fit()``, so every trial's workers are new actors,
and a new actor needs a new Python process: on 2 cores here, about 0.6 s to start the process
and Ray, 0.8 s to import torch and 0.9 s to import ``torch._dynamo`` (torch's optimizers import
it on their first step), all before the first epoch. A raylet can start worker processes ahead
of demand (its ``PrestartWorkers`` call, which Ray's Python API does not expose), and an actor
whose runtime env matches takes an idle one. So:

- the trial gives its Train workers a process setup hook (``HOOK``), which a worker process runs
  as it starts, before it is handed any actor: it imports the training stack;
- each Train worker, as it starts, asks its own raylet for one spare process with its own job
  and runtime env (``ask_for_spare``), to replace itself for the next trial on that node, where
  the driver's ``SparePlan`` says so (by default, only where the trials leave a CPU free);
- the driver asks for the first trials' spares before Tune starts (``driver.start_first_spares``).

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
    """The environment variable through which Ray's worker processes find their setup hook.

    Ray sets it from a job-level ``worker_process_setup_hook``; an actor-level one is ignored,
    so the trial sets the variable itself in its workers' runtime env."""
    from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR

    return WORKER_PROCESS_SETUP_HOOK_ENV_VAR


def import_training_stack() -> None:
    """What every trial's workers import before their first epoch, imported once, at process start."""
    # torch.optim's first step imports torch._dynamo (0.9 s here); distsearch.worker brings
    # torch, Ray Train, the loop and the spec.
    for name in ("torch._dynamo", "torch.distributed", f"{__package__}.models", f"{__package__}.tasks", f"{__package__}.worker"):
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


def prestart(node_id: str, serialized_runtime_env: str, count: int, keep_alive_s: float, batch: int = 0,
             batch_interval_s: float = 1.0, timeout_s: float = 5.0) -> bool:
    """Ask the raylet of ``node_id`` to start ``count`` idle worker processes for the current job
    with this runtime env, kept at least ``keep_alive_s``; with ``batch``, at most that many per
    request, ``batch_interval_s`` apart. Returns whether the raylet took every request; a failure
    is logged once per process and otherwise ignored. Needs a connected Ray.

    The raylet silently drops what exceeds its limit on processes starting at once (the node's
    CPU count), so a spare is likely, not certain."""
    import ray
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc

    try:
        node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
        job_id = bytes.fromhex(ray.get_runtime_context().get_job_id())
        channel = init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")
        try:
            stub = node_manager_pb2_grpc.NodeManagerServiceStub(channel)
            left = count
            while left > 0:
                n = min(left, batch) if batch > 0 else left
                request = node_manager_pb2.PrestartWorkersRequest(
                    language=common_pb2.Language.PYTHON, job_id=job_id, keep_alive_duration_secs=max(1, round(keep_alive_s)), num_workers=n,
                )
                # The raylet matches an idle process to an actor by the hash of this exact string.
                request.runtime_env_info.serialized_runtime_env = serialized_runtime_env
                stub.PrestartWorkers(request, timeout=timeout_s)
                left -= n
                if left > 0:
                    time.sleep(batch_interval_s)
        finally:
            channel.close()
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
