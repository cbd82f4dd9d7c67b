"""Ray Tune internals: a restored tuner's live configuration, a trial's actor, trial actors' env."""

from __future__ import annotations

import logging
import os
from typing import Any

from . import PINNED_RAY_VERSION, VOUCHED, not_vouched

log = logging.getLogger("distsearch")

# Tune refuses an empty resource request; a sliver of the head node's marker resource places the
# trial actor (and its in-trial Train controller) on the head, the one node a sweep cannot lose.
HEAD_NODE_RESOURCE = "node:__internal_head__"


def replace_restored_config(tuner: Any, *, callbacks: list, stop: Any, scheduler: Any) -> None:
    """After ``Tuner.restore``: this driver's live callbacks, stopper and scheduler replace the
    ones pickled when the first driver started (``TunerInternal`` keeps both configs)."""
    if not VOUCHED:
        raise not_vouched("resuming a run (the restored tuner's callbacks, stopper and scheduler)")
    internal = tuner._local_tuner
    internal._run_config.callbacks = callbacks
    internal._run_config.stop = stop
    internal._tune_config.scheduler = scheduler


def trial_actor(trial: Any) -> Any:
    """The handle of the actor that runs ``trial`` now, or None before it has one (or on another Ray)."""
    if not VOUCHED:
        return None
    return getattr(trial.temporary_state, "ray_actor", None)


def trial_actor_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment variables Tune gives each trial actor: the driver's values (``environ``)
    of those it propagates, over its own defaults."""
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE

    return {**DEFAULT_ENV_VARS, **{k: environ[k] for k in ENV_VARS_TO_PROPAGATE if k in environ}}


#: Cloud credentials Tune copies from the driver's environment into every trial actor's runtime
#: env. Ray's runtime-env agent logs each runtime env in full, by design, to runtime_env_agent.log
#: in the session directory (ray-project/ray#29985), a file any local user can read.
CREDENTIAL_ENV_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"})


def keep_credentials_out_of_runtime_envs() -> None:
    """Stop Tune from putting ``CREDENTIAL_ENV_VARS`` into trial actors' runtime envs: workers take
    credentials from their node's environment instead (inherited from the driver on an embedded
    Ray or a ``ray start`` from the same shell; an instance role or the pod's env on a cluster)."""
    if not VOUCHED:
        if CREDENTIAL_ENV_VARS & set(os.environ):
            log.warning("Ray %s: Tune copies AWS credentials into trial actors' runtime envs, which Ray logs", PINNED_RAY_VERSION)
        return
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(CREDENTIAL_ENV_VARS)
