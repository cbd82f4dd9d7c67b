"""Raw raylet RPC: ask a node's raylet to start idle worker processes ahead of demand."""

from __future__ import annotations

import time

from . import VOUCHED


def worker_setup_hook_env_var() -> str:
    """The environment variable through which Ray's worker processes find their setup hook.

    Ray sets it from a job-level ``worker_process_setup_hook``; an actor-level one is ignored,
    so a trial sets the variable itself in its workers' runtime env."""
    from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR

    return WORKER_PROCESS_SETUP_HOOK_ENV_VAR


def prestart(
    node: dict,
    job_id_hex: str,
    serialized_runtime_env: str,
    count: int,
    keep_alive_s: float,
    batch: int = 0,
    batch_interval_s: float = 1.0,
    timeout_s: float = 5.0,
) -> None:
    """Ask the raylet of ``node`` (an entry of ``ray.nodes()``) to start ``count`` idle worker
    processes for job ``job_id_hex`` with this runtime env, kept at least ``keep_alive_s``; with
    ``batch``, at most that many per request, ``batch_interval_s`` apart. Raises on failure.

    The raylet silently drops what exceeds its limit on processes starting at once (the node's
    CPU count), so a spare is likely, not certain. On another Ray, nothing is asked for (spares
    are an optimisation)."""
    if not VOUCHED:
        return
    from ray._private.grpc_utils import init_grpc_channel
    from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc

    channel = init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")
    try:
        stub = node_manager_pb2_grpc.NodeManagerServiceStub(channel)
        left = count
        while left > 0:
            n = min(left, batch) if batch > 0 else left
            request = node_manager_pb2.PrestartWorkersRequest(
                language=common_pb2.Language.PYTHON,
                job_id=bytes.fromhex(job_id_hex),
                keep_alive_duration_secs=max(1, round(keep_alive_s)),
                num_workers=n,
            )
            # The raylet matches an idle process to an actor by the hash of this exact string.
            request.runtime_env_info.serialized_runtime_env = serialized_runtime_env
            stub.PrestartWorkers(request, timeout=timeout_s)
            left -= n
            if left > 0:
                time.sleep(batch_interval_s)
    finally:
        channel.close()
