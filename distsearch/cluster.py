"""Connecting to Ray: join a cluster by address, or start an embedded local Ray when none is given."""

from __future__ import annotations

import contextlib
import os
from typing import Optional

from . import constants as C
from .errors import ClusterUnreachable


def connect(address: Optional[str] = None, *, dashboard: bool = False, worker_logs: bool = False) -> bool:
    """Join ``address`` (or $RAY_ADDRESS), or start an embedded local Ray when neither is set.

    Returns True if this call started Ray (so the caller should shut it down). The embedded Ray
    has no dashboard unless asked for: distsearch's cleanup does not need it. Worker output
    (Ray Train's per-report lines) stays in Ray's log files unless ``worker_logs``.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get(C.ADDRESS_ENV)
    if address:
        try:
            ray.init(address=address, log_to_driver=worker_logs)
        except ConnectionError as e:
            hint = ""
            if address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
                # Ray sends its token only to clusters it finds itself ("auto"); for an
                # explicit address the caller must opt in.
                hint = (
                    " If the cluster uses token authentication, fix: set RAY_AUTH_MODE=token "
                    "and provide the token in ~/.ray/auth_token or RAY_AUTH_TOKEN, or connect with --address auto."
                )
            raise ClusterUnreachable(f"cannot connect to the Ray cluster at {address!r}: {e}.{hint}") from e
    else:
        ray.init(include_dashboard=dashboard, log_to_driver=worker_logs)
    return True


@contextlib.contextmanager
def environment_restored():
    """This process's environment put back as it was when the block began: ``ray.init`` and the
    modules a sweep imports set variables of their own (usage stats, auth mode, OpenMP, the
    breakpoint hook), and a library call leaves the caller's process as it found it."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k not in before]:
            del os.environ[key]
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def shutdown() -> None:
    """Shut down the Ray that ``connect`` started."""
    import gc

    import ray

    # Another thread may run meanwhile (the CLI draws the report while Ray shuts down), and a
    # garbage collection there that frees a Ray handle while the core worker is being torn down
    # ends the whole process ("The core worker has already been shutdown"). So collect here,
    # while Ray can still take the releases, and let no collection run until it is down.
    from ._ray.core import end_local_monitor

    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        end_local_monitor()  # a second of every shutdown otherwise (see distsearch._ray.core)
        ray.shutdown()
    finally:
        if was_enabled:
            gc.enable()
