"""Ray Tune internals: a restored tuner's live configuration, a trial's actor, trial actors' env."""

from __future__ import annotations

from typing import Any

from . import PINNED_RAY_VERSION  # noqa: F401 - the version guard runs on import

# Tune refuses an empty resource request; a sliver of the head node's marker resource places the
# trial actor (and its in-trial Train controller) on the head, the one node a sweep cannot lose.
HEAD_NODE_RESOURCE = "node:__internal_head__"


def replace_restored_config(tuner: Any, *, callbacks: list, stop: Any, scheduler: Any) -> None:
    """After ``Tuner.restore``: this driver's live callbacks, stopper and scheduler replace the
    ones pickled when the first driver started (``TunerInternal`` keeps both configs)."""
    internal = tuner._local_tuner
    internal._run_config.callbacks = callbacks
    internal._run_config.stop = stop
    internal._tune_config.scheduler = scheduler


def trial_actor(trial: Any) -> Any:
    """The handle of the actor that runs ``trial`` now, or None before it has one."""
    return getattr(trial.temporary_state, "ray_actor", None)


def trial_actor_env(environ: dict[str, str]) -> dict[str, str]:
    """The environment variables Tune gives each trial actor: the driver's values (``environ``)
    of those it propagates, over its own defaults."""
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE

    return {**DEFAULT_ENV_VARS, **{k: environ[k] for k in ENV_VARS_TO_PROPAGATE if k in environ}}
