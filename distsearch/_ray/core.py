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
