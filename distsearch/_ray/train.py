"""Ray Train V2 internals: the lean trainer, its abortable in-trial controller, worker context.

Imported lazily by the trial and the workers; see the package docstring for why each is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from . import VOUCHED, not_vouched

log = logging.getLogger("distsearch")


class RunAborted(Exception):
    """The trial ended its own Train run (Tune stopped the trial, or reuses its actor)."""


class Abort:
    """A flag that one thread sets once, and that wakes at once the event loops waiting on it
    (``wait``) in other threads: the trial ends its in-trial controller's run with it, and the
    next trial in the actor starts as soon as the run is gone, not at the next poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set, waiters, self._waiters = True, self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._set:
                return
            self._waiters.append((loop, future))
        await future


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def lean_trainer_cls(controller_in_trial: bool, worker_group_cls: Any = None):
    """``TorchTrainer`` minus two default controller callbacks distsearch does not want, and with
    its controller in the calling process when ``controller_in_trial``, using
    ``worker_group_cls`` for its worker group when given (distsearch._ray.warm).

    - ``PlacementGroupCleanerCallback`` starts a detached actor per run that only works with the
      dashboard up; the driver's reaper does its job without it.
    - ``DatasetsCallback`` starts a ``DatasetManager`` actor per run, a process spawn on the
      critical path of every trial, to serve Ray Data shards; distsearch passes no Ray Datasets
      (the task's splits travel through the object store).
    - The controller: ``fit()`` normally starts a ``TrainController`` actor, one more Python
      process that imports torch and Ray Train before the worker group can even be requested.
      In the trial, the same class runs its control loop in the trial's process instead. It
      owns the worker group and its placement group exactly as the actor would, and dies with
      the trial actor. The trainer's ``abort`` event ends the run (``run_until_aborted``).
    """
    from ray.train.torch import TorchTrainer

    if not VOUCHED:
        if controller_in_trial or worker_group_cls is not None:
            raise not_vouched("harness.trial_processes other than ray (the in-trial Train controller, kept worker groups)")

        class PublicTorchTrainer(TorchTrainer):  # Ray's own trainer; the abort flag goes unused
            abort: Abort

        return PublicTorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2._internal.execution.controller import TrainController

    class LeanTorchTrainer(TorchTrainer):
        #: Set (from another thread) to end the run: see ``run_until_aborted``.
        abort: Abort

        def _create_default_callbacks(self):
            unwanted = (PlacementGroupCleanerCallback,) if self.datasets else (PlacementGroupCleanerCallback, DatasetsCallback)
            return [cb for cb in super()._create_default_callbacks() if not isinstance(cb, unwanted)]

        def _initialize_and_run_controller(self, **controller_init_kwargs):
            if not controller_in_trial:
                return super()._initialize_and_run_controller(**controller_init_kwargs)
            controller = TrainController(**controller_init_kwargs)
            if worker_group_cls is not None:
                controller.worker_group_cls = worker_group_cls
            # fit() runs in its own thread (the trial's), so a fresh event loop
            asyncio.run(run_until_aborted(controller, self.abort))
            return controller.get_result()

    return LeanTorchTrainer


async def run_until_aborted(controller, abort: Abort) -> None:
    """``controller.run()``, unless ``abort`` is set first: then cancel the control loop, abort
    the worker group (its workers are killed and its placement group removed, here, before this
    returns) and raise ``RunAborted``. This is ``TrainController.abort()`` without its
    ``exit_actor()``, which would end the trial actor that Tune is about to reuse."""
    from ray.train.v2._internal.execution.controller.state import AbortedState

    run = asyncio.ensure_future(controller.run())
    aborted = asyncio.ensure_future(abort.wait())
    try:
        await asyncio.wait({run, aborted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        aborted.cancel()
    if not run.done():
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # the loop is being dropped
            await run
        controller._controller_callback_manager.invoke_best_effort("before_controller_abort")
        group = controller.get_worker_group()
        try:
            if group is not None:
                group.abort()
        finally:
            controller._set_state(AbortedState())
        raise RunAborted()
    run.result()


def train_propagated_env() -> tuple[str, ...]:
    """The environment variables Ray Train copies from the trial into its workers' runtime env."""
    from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE

    return tuple(ENV_VARS_TO_PROPAGATE)


def execution_context() -> tuple[Any, Any]:
    """In a Train worker: its training thread runner and its result queue; raises if the worker
    never had a run."""
    from ray.train.v2._internal.execution.context import get_train_context

    ctx = get_train_context().execution_context
    return ctx.training_thread_runner, ctx.result_queue


def renew_upload_pool() -> None:
    """In a kept Train worker, once its next run's train context is set: give that context an
    upload pool of its own. Ray Train's ``TrainContext`` declares its checkpoint upload pool as a
    class-level default, one per process, and shuts it down as the first run ends, so the
    second run's first checkpoint would fail with "cannot schedule new futures after shutdown"."""
    from concurrent.futures import ThreadPoolExecutor

    from ray.train.v2._internal.execution.context import get_train_context

    ctx = get_train_context()
    ctx.checkpoint_upload_threadpool = ThreadPoolExecutor(max_workers=ctx.checkpoint_upload_threadpool._max_workers)


def ray_train_error() -> type[Exception]:
    """The base class of Ray Train's own errors (``Result.from_path`` raises it for a cut snapshot);
    on another Ray, any exception."""
    if not VOUCHED:
        return Exception
    from ray.train.v2._internal.exceptions import RayTrainError

    return RayTrainError


def start_train_coordinator() -> bool:
    """Create Ray Train's per-cluster autoscaling coordinator now, if the cluster has none yet.

    Every Ray Train run registers its resource request with this detached actor, and the first
    run on a cluster creates it and waits for it. Asked for before Tune starts, its process
    starts while Tune does. Returns whether this call created it; best effort."""
    import ray

    if not VOUCHED:
        return False
    try:
        ray.get_actor("AutoscalingCoordinator", namespace="AutoscalingCoordinator")
        return False
    except ValueError:
        pass
    try:
        from ray.data._internal.cluster_autoscaler.default_autoscaling_coordinator import get_or_create_autoscaling_coordinator

        get_or_create_autoscaling_coordinator()
        return True
    except Exception as e:  # noqa: BLE001 - Ray Train creates it itself otherwise
        log.debug("could not start Ray Train's autoscaling coordinator early: %r", e)
        return False
