"""Kept worker groups: a trial actor's Train worker group serves the trials Tune runs in it next.

Ray Train ends a run's worker group with its ``fit()``: it kills the worker actors and the run's
``SynchronizationActor`` and removes the placement group (PG), so every trial would start 3 new
Python processes that import torch and Ray Train, a cost ASHA cannot save. Ray core cannot hand
an actor's process to another actor, so the only way to keep the processes is to keep the actors.

With the controller in the trial actor and Tune reusing trial actors
(``harness.trial_processes: kept_worker_group``), the same process runs one trial's controller
after another. ``WarmWorkerGroup`` (Ray Train's ``WorkerGroup`` with two changes) then keeps the
group in that process between runs instead of ending it:

- at the end of a run (``shutdown``, or ``abort`` when Tune stops the trial), each worker's
  training thread is asked to stop at its next report and given ``wait_s`` to do so
  (``distsearch.train.worker.settle_for_reuse``); a group whose workers all settled, and whose sync
  actor holds no half-done barrier, is kept (``_KEPT``, at most one per process). Any other
  group is ended as Ray Train ends it, so a worker that does not stop in time costs what it
  always did;
- at the start of the next run with the same shape (worker count, resources, strategy,
  runtime env), the kept workers, sync actor and PG are taken, checked alive and given the new
  run's train context (whose upload pool the run renews as it starts: ``train.renew_upload_pool``,
  called by ``distsearch.train.worker``), and the backend sets torch.distributed up afresh.
  Anything else starts a group as Ray Train does.

A kept group belongs to the trial actor: its workers and sync actor are the actor's (they die
with it), and the driver's reaper removes its PG once the actor is gone, or leaves it when the
actor's next trial takes it.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Any, Callable

from . import VOUCHED, not_vouched

log = logging.getLogger("distsearch")


# This process's kept group, if any: the group's shape (``WarmWorkerGroup._key``) -> Ray Train's
# WorkerGroupState. A trial actor runs one trial, so one run, at a time.
_KEPT: dict[str, Any] = {}
_LOCK = threading.Lock()


def _end(state) -> None:
    try:
        state.shutdown()
    except Exception as e:  # noqa: BLE001 - the driver's reaper removes what is left
        log.warning("could not end a kept worker group: %r", e)


@functools.lru_cache(maxsize=None)
def warm_worker_group_cls(wait_s: float, settle: Callable[[float], bool]):
    """Ray Train's ``WorkerGroup`` that keeps its group for this process's next run (module
    docstring); ``wait_s``: how long a run's end waits for the workers' training threads to stop
    at their next report (seconds) before the group is ended instead.

    Built lazily so that importing this module does not import Ray Train's internals."""
    if not VOUCHED:
        raise not_vouched("harness.trial_processes: kept_worker_group (kept worker groups)")
    import ray
    from ray.exceptions import RayActorError
    from ray.train.v2._internal.exceptions import WorkerGroupStartupFailedError
    from ray.train.v2._internal.execution.worker_group.execution_group import ReplicaGroup
    from ray.train.v2._internal.execution.worker_group.worker_group import WorkerGroup
    from ray.train.v2._internal.util import invoke_context_managers

    class _KeepOnShutdown:
        """Stands in for the ``WorkerGroupState`` while Ray Train ends the group: the same state,
        but its ``shutdown`` keeps the group when the workers settle."""

        def __init__(self, state, key: str):
            self._state, self._key = state, key

        def __getattr__(self, name):
            return getattr(self._state, name)

        def shutdown(self):
            _keep_or_end(self._state, self._key)

    def _keep_or_end(state, key: str) -> None:
        try:
            settled = ray.get([w.execute_async(settle, wait_s) for w in state.workers], timeout=wait_s + 5)
            idle = ray.get(state.sync_actor.get_counter.remote(), timeout=5) == 0  # no rank inside a barrier
            keep = all(settled) and idle
        except Exception as e:  # noqa: BLE001 - a worker died, or did not answer: end the group
            log.debug("not keeping the worker group: %r", e)
            keep = False
        if not keep:
            _end(state)
            return
        with _LOCK:
            old = _KEPT.pop(key, None)
            _KEPT[key] = state
        if old is not None:
            _end(old)

    class WarmWorkerGroup(WorkerGroup):
        def _key(self) -> str:
            ctx = self._worker_group_context
            env = self._get_worker_runtime_env(custom_runtime_env=self._train_run_context.run_config.worker_runtime_env)
            return json.dumps(
                [ctx.num_workers, ctx.resources_per_worker, ctx.placement_strategy, ctx.label_selector, dict(env or {})], sort_keys=True, default=str
            )

        def _take_kept(self):
            """The kept group of this shape with every worker alive, or None; another shape's or
            a dead one's is ended here, so that its resources are free for the new group."""
            with _LOCK:
                kept = list(_KEPT.items())
                _KEPT.clear()
            key, found = self._key(), None
            for k, state in kept:
                if found is None and k == key:
                    try:
                        ray.get([w.actor.get_metadata.remote() for w in state.workers], timeout=5)
                        found = state
                        continue
                    except Exception as e:  # noqa: BLE001 - a worker died since: start afresh
                        log.debug("kept worker group is gone: %r", e)
                _end(state)
            return found

        def _start_impl(self, worker_group_state_builder):
            kept = self._take_kept()
            if kept is None:
                return super()._start_impl(worker_group_state_builder)
            # Ray Train's _start_impl with the PG, sync actor and workers taken from ``kept``.
            self._assert_inactive()
            ctx = self._worker_group_context
            builder = worker_group_state_builder
            with invoke_context_managers([cb.on_worker_group_start for cb in self._callbacks]):
                for cb in self._callbacks:
                    cb.before_worker_group_start(ctx)
                builder.with_placement_group_handle(kept.placement_group_handle)
                builder.with_sync_actor(kept.sync_actor)
                workers = kept.workers
                self._replica_groups = [ReplicaGroup([w], ctx.resources_per_worker, self._replica_group_callbacks) for w in workers]
                self._worker_rank_to_replica_group_rank = {w.distributed_context.world_rank: i for i, w in enumerate(workers)}
                builder.with_workers(workers)
                try:
                    self._init_train_context(workers, kept.sync_actor)
                    self._worker_group_state = builder.build()
                    for cb in self._callbacks:
                        cb.after_worker_group_start(self)
                except RayActorError as e:
                    raise WorkerGroupStartupFailedError("a kept worker died while its next run started") from e
            ray.get([w.actor.run_train_fn.remote(ctx.train_fn_ref) for w in workers])
            for cb in self._callbacks:
                cb.after_worker_group_training_start(self)

        def shutdown(self):
            if self._worker_group_state is not None:
                self._worker_group_state = _KeepOnShutdown(self._worker_group_state, self._key())
            super().shutdown()

        def abort(self):
            if self._worker_group_state is not None:
                self._worker_group_state = _KeepOnShutdown(self._worker_group_state, self._key())
            super().abort()

    return WarmWorkerGroup
