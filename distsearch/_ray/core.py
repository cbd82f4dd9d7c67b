"""Ray core internals: an actor handle's id, and the GCS view of a job's actors."""

from __future__ import annotations

from typing import Any

from . import VOUCHED, not_vouched


def actor_id(handle: Any) -> str:
    """The hex id of the actor behind ``handle`` (on another Ray, an id unique in this process)."""
    return handle._actor_id.hex() if VOUCHED else f"handle-{id(handle):x}"


def job_actors_alive(job_id_hex: str) -> dict[str, str]:
    """Job ``job_id_hex``'s actors that are not dead yet: actor id (hex) -> class name. Read from
    the GCS, so it needs no dashboard."""
    if not VOUCHED:
        raise not_vouched("the GCS view of a job's actors (the leak census)")
    from ray._private import state

    return {aid: a.get("ActorClassName", "") for aid, a in state.actors().items() if a.get("State") != "DEAD" and a.get("JobID") == job_id_hex}


def end_local_monitor() -> bool:
    """End the autoscaler monitor of the Ray this process started, at once, before ``ray.shutdown``;
    returns whether it did. ``ray.shutdown`` ends the GCS first and then sends the monitor SIGTERM,
    whose handler tries to report the monitor's death to that GCS, so Ray waits out its one-second
    grace before the SIGKILL; an embedded single-node Ray has nothing for its monitor to scale."""
    if not VOUCHED:
        return False
    from ray._private import ray_constants, worker

    node = worker._global_node
    if node is None or not node.head or ray_constants.PROCESS_TYPE_MONITOR not in node.all_processes:
        return False
    try:
        node.kill_monitor(check_alive=False)  # SIGKILL, reaped; Ray's shutdown then skips it
    except Exception:  # noqa: BLE001 - best effort: Ray's own shutdown still ends it
        return False
    return True
