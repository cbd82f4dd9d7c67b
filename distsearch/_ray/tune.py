"""Ray Tune internals: a resumed sweep's search, a trial's actor, trial actors' env, simulated trials' ids."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from typing import Any, Iterator, Optional

from ray.tune.search import SearchAlgorithm, Searcher, SearchGenerator

from . import PINNED_RAY_VERSION, VOUCHED, not_vouched

log = logging.getLogger("distsearch")

# Tune refuses an empty resource request; a sliver of the head node's marker resource places the
# trial actor (and its in-trial Train controller) on the head, the one node a sweep cannot lose.
HEAD_NODE_RESOURCE = "node:__internal_head__"


class LedgerResume(SearchAlgorithm):
    """Tune's search algorithm for a resumed sweep: ``inner`` (the plan's own, built afresh), with
    the trials the ledger says are unfinished (``carried``: ``[(trial id, config)]``) handed out
    first under their old ids, any trial ``inner`` draws again under an id in ``ended`` (random
    search draws the first driver's ids again) dropped, and at most ``new_trials`` new ones (None:
    as many as ``inner`` draws). So the resume reads nothing of Tune's saved state, whose trials
    Tune unpickles (see ``distsearch.sweep.resume``)."""

    def __init__(self, inner: Any, carried: list, ended: frozenset, new_trials: Optional[int] = None):
        if not VOUCHED:
            raise not_vouched("resuming a run (trials created under their old ids)")
        self.inner = SearchGenerator(inner) if isinstance(inner, Searcher) else inner
        self.carried, self.ended, self.new_trials = list(carried), frozenset(ended), new_trials
        self.dropped: list[str] = []  # ids of draws that the ledger says ended
        self.drawn = 0
        self._experiment = None

    @property
    def metric(self):
        return self.inner.metric

    @property
    def total_samples(self) -> int:
        new = self.inner.total_samples if self.new_trials is None else min(self.new_trials, self.inner.total_samples)
        return new + len(self.carried)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments) -> None:
        from ray.tune.experiment.experiment import _convert_to_experiment_list

        self._experiment = _convert_to_experiment_list(experiments)[0]
        self.inner.add_configurations(experiments)

    def next_trial(self):
        if self.carried:
            trial_id, config = self.carried.pop(0)
            return _trial_with_id(self._experiment, trial_id, config)
        if self.new_trials is not None and self.drawn >= self.new_trials:
            return None
        while (trial := self.inner.next_trial()) is not None and trial.trial_id in self.ended:
            self.dropped.append(trial.trial_id)
            self.inner.on_trial_complete(trial.trial_id)  # frees the generator's concurrency slot
        self.drawn += trial is not None
        return trial

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return not self.carried and (self.inner.is_finished() or (self.new_trials is not None and self.drawn >= self.new_trials))

    def set_finished(self) -> None:
        self.carried = []
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return False  # never restored by Tune: a resume builds it afresh from the ledger

    def save_to_dir(self, dirpath: str, **kwargs) -> None:
        self.inner.save_to_dir(dirpath, **kwargs)

    def restore_from_dir(self, dirpath: str) -> None:
        raise RuntimeError("a resumed sweep's search is rebuilt from the ledger, never restored from Tune's saved state")


def _trial_with_id(experiment: Any, trial_id: str, config: dict) -> Any:
    """A Tune trial of ``experiment`` with ``config`` under ``trial_id``, as Tune's own
    ``SearchGenerator`` makes one (which always draws a new id)."""
    import copy

    from ray.tune.experiment.config_parser import _create_trial_from_spec, _make_parser
    from ray.tune.utils import flatten_dict, merge_dicts

    spec = copy.deepcopy(experiment.spec)
    spec["config"] = merge_dicts(spec["config"], copy.deepcopy(config))
    return _create_trial_from_spec(
        spec, _make_parser(), evaluated_params=flatten_dict(config), experiment_tag=f"resumed_{trial_id}", trial_id=trial_id
    )


def continue_ids(generator: Any, trial_ids: list[str]) -> None:
    """Make Tune's ``BasicVariantGenerator`` name its trials as the one that drew ``trial_ids``
    did (``<prefix>_00000`` on): with the same seed it draws the same trials in the same order,
    so a resumed random search goes on under the first driver's ids. Its prefix is random per
    instance and has no public setter."""
    if not VOUCHED:
        raise not_vouched("resuming a random search (its trial id prefix)")
    prefixes = {t.rsplit("_", 1)[0] + "_" for t in trial_ids if "_" in t}
    if len(prefixes) == 1:
        generator._uuid_prefix = prefixes.pop()


def fit(tuner: Any) -> None:
    """``tuner.fit()`` without the ``ResultGrid`` it returns: building the grid unpickles each
    failed trial's ``error.pkl`` from the run folder (cut short on a full disk it raised
    ``UnpicklingError`` after the sweep had ended; planted, it would run code), and distsearch
    reads its results from the recorder, never from the grid. On another Ray: ``tuner.fit()``."""
    if not VOUCHED:
        tuner.fit()
        return
    import copy

    internal = tuner._local_tuner
    internal._fit_internal(internal.converted_trainable, copy.deepcopy(internal.param_space))


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


_IDS_LOCK = threading.Lock()


@contextlib.contextmanager
def sequential_trial_ids() -> Iterator[None]:
    """While the block runs, Tune's new trials get ids ``00000000``, ``00000001``, ... in this process.

    ``SearchGenerator`` names each trial ``Trial.generate_id()``: eight hex digits of a uuid4,
    32 random bits. A real sweep of a few hundred trials almost never draws one twice, but the
    simulator runs millions of trials, and two trials of one sweep with one id share ASHA's
    bookkeeping (its ``on_trial_complete`` of the first drops the second, whose next result
    raises ``KeyError``). Counted ids cannot collide and make a seeded simulation repeat exactly.
    Tune has no public way to choose a new trial's id. The method is put back when the block
    ends; the lock keeps two threads' simulations from interleaving it. On another Ray the ids
    stay Tune's own."""
    if not VOUCHED:
        yield
        return
    from ray.tune.experiment import Trial

    with _IDS_LOCK:
        counter = itertools.count()
        original = Trial.__dict__["generate_id"]
        Trial.generate_id = classmethod(lambda cls: f"{next(counter):08x}")
        try:
            yield
        finally:
            Trial.generate_id = original
