"""Ray core internals: an actor handle's id, and the GCS view of a job's actors."""

from __future__ import annotations

from typing import Any

from . import PINNED_RAY_VERSION  # noqa: F401 - the version guard runs on import


def actor_id(handle: Any) -> str:
    """The hex id of the actor behind ``handle``."""
    return handle._actor_id.hex()


def job_actors_alive(job_id_hex: str) -> dict[str, str]:
    """Job ``job_id_hex``'s actors that are not dead yet: actor id (hex) -> class name. Read from
    the GCS, so it needs no dashboard."""
    from ray._private import state

    return {aid: a.get("ActorClassName", "") for aid, a in state.actors().items() if a.get("State") != "DEAD" and a.get("JobID") == job_id_hex}
