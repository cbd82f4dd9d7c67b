"""The only module that knows Ray Tune: trials, ASHA, the TorchTrainer per trial, and cleanup.

Shape (the Train V2 pattern Ray 2.60 supports): a Tune *function trainable* per trial builds a
``TorchTrainer`` and calls ``fit()``; a controller callback forwards every report to Tune. ASHA
decides on the per-epoch validation metric that rank 0 forwards. The callback is distsearch's
``ForwardReports`` rather than Ray's ``TuneReportCallback``, whose hand-off can deadlock a trial
when the last report and ``fit()``'s return race (seen here: 1 trial in ~200 hung for good).

Why there is a reaper. When ASHA stops a trial, Tune ends the trial actor; the Train controller
(in that actor by default, else an actor it owns) dies with it, and so do the workers, but the
worker group's placement group (PG) is scoped to the job and outlives them. Ray's own fix is a
detached ``PlacementGroupCleaner`` actor per run that watches the controller through the State
API, so it needs the dashboard; without it the cleaner never exits and the PG keeps its CPUs,
and the next trial waits on them forever (ray-project/ray#54305, #65443, #65881). distsearch therefore:

1. does not start Ray's cleaner (``_lean_trainer_cls``), so nothing detached is left;
2. has rank 0 attach its own PG id (``ray.util.get_current_placement_group()``) to every report;
3. removes a finished trial's PG from the driver (``WorkerGroupReaper``) once the trial actor is
   gone, and records how long the release took. A trial actor that Tune reuses
   (``harness.reuse_trial_actors``) stays alive; it ends the old trial's run itself before its
   next trial (``_run_until_aborted``), and the reaper waits for that. With
   ``harness.reuse_worker_groups`` it keeps the group for that next trial instead
   (distsearch.warm): the PG is then the actor's, and the reaper removes it once the actor is gone;
4. bounds worker-group start: a per-attempt timeout and a finite attempt count, so a trial whose
   workers cannot be placed fails with a clear error instead of retrying forever;
5. sweeps any PG of this job still alive when the sweep ends, and records what it found;
6. on SIGTERM (``ray job stop``), kills its trial actors and sweeps the job's PGs before it
   exits (``released_on_sigterm``): GCS misses a PG that a dying controller registers late.

None of it needs the dashboard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import ray
import torch
from ray import tune

from . import constants as C
from . import loop, space, spares, storage, warm
from .spec import Harness, JobSpec
from .tasks import Splits, Task, check_job
from .worker import ForwardReports, train_worker

log = logging.getLogger("distsearch")

# Ray Train reads these in the trial process and propagates them to its controller and workers.
_HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
_TRAIN_METRICS_ENV = "RAY_TRAIN_METRICS_ENABLED"
_PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
_CONTROLLER_LOG_ENV = "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING"
_TUNE_THREAD_TIMEOUT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # read by Tune's reset of a reused actor, in the trial actor
_ABORT_POLL_S = 0.05
# Tune's trial actor only waits on fit(); its real work runs in the Train workers. Tune refuses
# an empty resource request, so the trial asks for 1 MiB of memory, and a sliver of the head
# node's marker resource: the trial actor and its Train controller (in the actor, or an actor
# Ray pins to the same node) then live on the head, the one node a sweep cannot lose anyway (the
# driver is there). Losing a worker node costs only the Train workers on it, which the controller
# restarts elsewhere from the last checkpoint (harness.max_worker_failures).
_HEAD_NODE_RESOURCE = "node:__internal_head__"
_TRIAL_ACTOR_RESOURCES = {"memory": 2**20, _HEAD_NODE_RESOURCE: 0.001}
# Train worker actors in our job, by class name; used only to report leaks at the end.
_TRAIN_ACTOR_CLASSES = ("RayTrainWorker", "TrainController", "PlacementGroupCleaner")


class InfeasibleJobError(ValueError):
    """The cluster cannot run even one trial of the job; names the field and the fix."""


# ---------------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------------
def per_trial_resources(spec: JobSpec) -> dict[str, float]:
    """What one trial's worker group reserves in total: CPU and, if used, GPU."""
    plan = worker_group_plan(spec)
    return {k: plan.num_workers * v for k, v in plan.resources_per_worker.items()}


@dataclass(frozen=True)
class WorkerGroupPlan:
    """How one trial's Train worker group is built: the collective backend and its resources."""

    backend: str  # "nccl" on CUDA, "gloo" on CPU
    num_workers: int
    use_gpu: bool
    resources_per_worker: dict[str, float]


def worker_group_plan(spec: JobSpec) -> WorkerGroupPlan:
    """NCCL with whole or fractional GPUs when ``scaling.use_gpu``, else gloo on CPUs.

    Fractional GPUs for multi-worker groups are refused by the spec itself (NCCL cannot put two
    ranks of one group on one device), so a plan with GPU fractions always has one worker.
    """
    s = spec.scaling
    resources = {"CPU": s.cpus_per_worker, **({"GPU": s.gpus_per_worker} if s.use_gpu else {})}
    return WorkerGroupPlan(backend="nccl" if s.use_gpu else "gloo", num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources)


def plan_concurrency(spec: JobSpec, nodes: list[Mapping[str, float]]) -> int:
    """How many trials can run at once on nodes with these total resources.

    Raises ``InfeasibleJobError`` if no node fits one worker or the cluster cannot fit one trial.
    ``spec.max_concurrent_trials``, when set, caps the derived number but may not exceed it.
    """
    s = spec.scaling
    eps = 1e-9
    worker = worker_group_plan(spec).resources_per_worker
    if not any(all(n.get(k, 0.0) + eps >= v for k, v in worker.items()) for n in nodes):
        biggest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in worker}
        field_name = "scaling.gpus_per_worker" if s.use_gpu and biggest.get("GPU", 0) < s.gpus_per_worker else "scaling.cpus_per_worker"
        raise InfeasibleJobError(
            f"{field_name}: one worker needs {worker}, but the largest node has {biggest}; lower {field_name} "
            f"{'or set use_gpu: false ' if s.use_gpu else ''}or run on a cluster with bigger nodes"
        )
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in worker}
    per_trial = per_trial_resources(spec)
    fits = min(math.floor(total[k] / v + eps) for k, v in per_trial.items() if v > 0)
    if fits < 1:
        raise InfeasibleJobError(
            f"scaling.num_workers: one trial needs {per_trial} in all, but the cluster has {total}; "
            f"lower num_workers or cpus_per_worker/gpus_per_worker"
        )
    if spec.max_concurrent_trials is not None:
        if spec.max_concurrent_trials > fits:
            raise InfeasibleJobError(
                f"max_concurrent_trials: got {spec.max_concurrent_trials}, but {total} fits only {fits} trial(s) of {per_trial}; "
                f"set max_concurrent_trials to at most {fits} or leave it unset"
            )
        return spec.max_concurrent_trials
    return fits


#: harness.spare_worker_keep_alive_s when unset (seconds).
DEFAULT_SPARE_KEEP_ALIVE_S = 600.0


@dataclass(frozen=True)
class SparePlan:
    """Which spare worker processes a sweep asks for (see distsearch.spares), as keep-alives in
    seconds, 0 meaning none: ``first_s`` for the first trials' workers, which the driver asks for
    before Tune starts; ``later_s`` for the spare each Train worker asks for, as it starts, for
    the trial after its own."""

    first_s: float
    later_s: float

    @property
    def hook(self) -> bool:
        """Whether the Train workers carry the import hook: a spare serves only workers whose
        runtime env is the spare's, so every trial's workers must carry it when any spare does."""
        return self.first_s > 0 or self.later_s > 0


def resolve_spares(spec: JobSpec, nodes: list[Mapping[str, float]], concurrency: int) -> SparePlan:
    """``harness.spare_worker_keep_alive_s`` resolved for the sweep: a value set applies to both.

    Unset: spares where they cost nothing. A spare does the same work a new process would, ahead
    of time. The first trials' spares start before any trial trains, so they always are free.
    A later trial's spare starts while the trials before it train, so it is free only on a CPU
    that would otherwise idle: when the trials at full concurrency reserve every CPU (the
    quickstart on 2 cores), spares for every trial made the sweep 2-3 s longer and cost 9 CPU
    seconds more. Where trials keep their worker groups (``harness.reuse_worker_groups``), later
    trials start in the kept processes, so they get no spares: an unused spare is an import of
    torch for nothing."""
    if spec.harness.spare_worker_keep_alive_s is not None:
        return SparePlan(spec.harness.spare_worker_keep_alive_s, spec.harness.spare_worker_keep_alive_s)
    free = sum(n.get("CPU", 0.0) for n in nodes) - concurrency * per_trial_resources(spec).get("CPU", 0.0)
    later = free >= 1 - 1e-9 and not spec.harness.reuses_worker_groups
    return SparePlan(DEFAULT_SPARE_KEEP_ALIVE_S, DEFAULT_SPARE_KEEP_ALIVE_S if later else 0.0)


def _alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def connect(address: Optional[str] = None, *, dashboard: bool = False, worker_logs: bool = False) -> bool:
    """Join ``address`` (or $RAY_ADDRESS), or start an embedded local Ray when neither is set.

    Returns True if this call started Ray (so the caller should shut it down). The embedded Ray
    has no dashboard unless asked for: distsearch's cleanup does not need it. Worker output
    (Ray Train's per-report lines) stays in Ray's log files unless ``worker_logs``.
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get(C.ADDRESS_ENV)
    if address:
        try:
            ray.init(address=address, log_to_driver=worker_logs)
        except ConnectionError as e:
            hint = ""
            if address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
                # Ray 2.60 sends its token only to clusters it finds itself ("auto"); for an
                # explicit address the caller must opt in.
                hint = (" If the cluster uses token authentication (Ray 2.60's default), set RAY_AUTH_MODE=token "
                        "and provide the token in ~/.ray/auth_token or RAY_AUTH_TOKEN, or connect with --address auto.")
            raise ConnectionError(f"cannot connect to the Ray cluster at {address!r}: {e}.{hint}") from e
    else:
        ray.init(include_dashboard=dashboard, log_to_driver=worker_logs)
    return True


# ---------------------------------------------------------------------------------------------
# What runs inside a trial
# ---------------------------------------------------------------------------------------------
def _lean_trainer_cls(controller_in_trial: bool, warm_wait_s: float = 0.0):
    """TorchTrainer minus two default controller callbacks distsearch does not want, and with
    its controller in the calling process when ``controller_in_trial``; that controller keeps its
    worker group for the process's next run when ``warm_wait_s`` > 0 (distsearch.warm, which
    waits that long for the workers to stop).

    - ``PlacementGroupCleanerCallback`` starts a detached actor per run that only works with the
      dashboard up; the driver's ``WorkerGroupReaper`` does its job without it (module docstring).
    - ``DatasetsCallback`` starts a ``DatasetManager`` actor per run, a ~3 s process spawn on the
      critical path of every trial, to serve Ray Data shards; distsearch passes no Ray Datasets
      (the task's splits travel through the object store), and a worker's shard provider is
      optional in Ray Train.
    - The controller: ``fit()`` normally starts a ``TrainController`` actor, one more Python
      process that imports torch and Ray Train before the worker group can even be requested.
      With ``controller_in_trial`` the same class runs its control loop in this (the trial's)
      process instead, so a trial is its actor plus its workers. It owns the worker group and
      its placement group exactly as the actor would, and dies with the trial actor as the
      actor did. Private API (``TrainController``, ``_initialize_and_run_controller``), pinned
      by ray==2.60.0; ``harness.train_controller: actor`` keeps Ray's own path. The controller's
      handle, which Ray Train gives each worker for ``ray.train.get_all_reported_checkpoints``
      (unused here), is then the trial actor's.

    Built lazily so that importing this module does not import Ray Train's internals.
    """
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2._internal.execution.controller import TrainController

    class _LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            unwanted = (PlacementGroupCleanerCallback,) if self.datasets else (PlacementGroupCleanerCallback, DatasetsCallback)
            return [cb for cb in super()._create_default_callbacks() if not isinstance(cb, unwanted)]

        #: Set (from another thread) to end the run: see ``_run_until_aborted``.
        abort: threading.Event

        def _initialize_and_run_controller(self, **controller_init_kwargs):
            if not controller_in_trial:
                return super()._initialize_and_run_controller(**controller_init_kwargs)
            import asyncio

            controller = TrainController(**controller_init_kwargs)
            if warm_wait_s > 0:
                controller.worker_group_cls = warm.warm_worker_group_cls(warm_wait_s)
            # fit() runs in its own thread (_run_trial), so a fresh loop
            asyncio.run(_run_until_aborted(controller, self.abort))
            return controller.get_result()

    return _LeanTorchTrainer


class _RunAborted(Exception):
    """The trial ended its own Train run (Tune stopped the trial, or reuses its actor)."""


async def _run_until_aborted(controller, abort: threading.Event) -> None:
    """``controller.run()``, unless ``abort`` is set first: then cancel the control loop, abort
    the worker group (its workers are killed and its placement group removed, here, before this
    returns) and raise ``_RunAborted``. This is ``TrainController.abort()`` without its
    ``exit_actor()``, which would end the trial actor that Tune is about to reuse."""
    import asyncio

    from ray.train.v2._internal.execution.controller.state import AbortedState

    run = asyncio.ensure_future(controller.run())
    while not run.done():
        await asyncio.wait({run}, timeout=_ABORT_POLL_S)
        if abort.is_set() and not run.done():
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
            raise _RunAborted()
    run.result()


def _trial_env(h: Harness) -> dict[str, str]:
    """The environment variables each trial sets in its own process, where Ray Train and Tune read them."""
    env = {
        _HEALTH_CHECK_ENV: str(h.report_poll_interval_s),
        _START_TIMEOUT_ENV: str(h.worker_start_timeout_s),
        _TRAIN_METRICS_ENV: "0",  # per-report Prometheus metrics we never read
        # The watcher is one more actor spawn (~3 s on 2 cores) before training starts; it only
        # observes spot-instance preemption, which the failure budget handles anyway.
        _PREEMPTION_WATCHER_ENV: "0",
        # How long Tune lets the trial thread end before it gives up reusing the actor (and fails
        # the next trial): long enough for _run_until_aborted, which waits up to 5 s for workers.
        _TUNE_THREAD_TIMEOUT_ENV: str(int(h.release_timeout_s) + 5),
    }
    if h.train_controller == "trial":
        # Ray Train's controller log setup is a logging.dictConfig for the whole process,
        # which in the trial actor would reconfigure Tune's loggers as well.
        env[_CONTROLLER_LOG_ENV] = "0"
    return env


def _worker_runtime_env(plan: SparePlan) -> dict[str, Any]:
    """The Train workers' runtime env: with any spares (``plan.hook``), the setup hook that
    imports the training stack as a worker process starts (see distsearch.spares). A hook the
    job already sets is kept."""
    hook = spares.hook_env_var()
    if not plan.hook or hook in os.environ:
        return {}
    return {"env_vars": {hook: spares.HOOK}}


def start_first_spares(spec: JobSpec, concurrency: int, plan: SparePlan) -> int:
    """Before the first trials: spare worker processes on the driver's node for their workers,
    kept ``plan.first_s``; later trials find spares that the workers before them asked for, where
    ``plan.later_s`` has them (see distsearch.spares). Returns how many the raylet was asked for.

    A spare serves a worker only with the very runtime env string of that worker's actor, which
    Ray builds in two steps (private, pinned by ray==2.60.0): Tune gives each trial actor the
    driver's values of the variables it propagates, plus its defaults; Ray Train then gives the
    workers the trial's values of the variables it propagates, plus ``_worker_runtime_env``,
    and Ray's core merges the two into compact JSON with sorted keys. The driver builds the same
    string here. A job-level runtime env would be merged in too, so with one it asks for none;
    ``tests/integration/test_sweep.py`` checks that the first trial's worker takes a spare."""
    from ray.train.v2._internal.constants import ENV_VARS_TO_PROPAGATE as TRAIN_PROPAGATES
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE as TUNE_PROPAGATES

    h, keep_alive_s = spec.harness, plan.first_s
    ctx = ray.get_runtime_context()
    if keep_alive_s <= 0 or ctx.get_runtime_env_string() not in ("", "{}"):
        return 0
    trial_actor = {**DEFAULT_ENV_VARS, **{k: os.environ[k] for k in TUNE_PROPAGATES if k in os.environ}}
    in_trial = {**os.environ, **trial_actor, **_trial_env(h)}
    workers = {k: in_trial[k] for k in TRAIN_PROPAGATES if k in in_trial}
    workers.update(_worker_runtime_env(plan).get("env_vars", {}))
    serialized = json.dumps({"env_vars": {**trial_actor, **workers}}, sort_keys=True, separators=(",", ":"))
    node_id = ctx.get_node_id()
    here = next((n.get("Resources", {}) for n in ray.nodes() if n["NodeID"] == node_id), {})
    group = worker_group_plan(spec)
    fits = min(math.floor(here.get(k, 0.0) / v + 1e-9) for k, v in group.resources_per_worker.items() if v > 0)
    count = min(min(concurrency, spec.budget.num_trials) * group.num_workers, fits)
    if count < 1:
        return 0
    # A raylet starts at most this many processes at once (Ray's --maximum_startup_concurrency)
    # and drops a request beyond it: the first batch now, before anything else asks for a
    # process, the rest a second apart, off this thread.
    batch = max(1, min(os.cpu_count() or 1, math.floor(here.get("CPU", 0.0))))
    spares.prestart(node_id, serialized, min(count, batch), keep_alive_s)
    if count > batch:
        def rest() -> None:
            time.sleep(1.0)
            spares.prestart(node_id, serialized, count - batch, keep_alive_s, batch=batch)

        threading.Thread(target=rest, name="first-spares", daemon=True).start()
    return count


def start_train_coordinator() -> bool:
    """Create Ray Train's per-cluster autoscaling coordinator now, if the cluster has none yet.

    Every Ray Train run registers its resource request with this detached actor (Ray's own,
    named ``AutoscalingCoordinator``), and the first run on a cluster creates it and waits for
    it: 0.9 s of the first trial's start here, every time ``distsearch run`` starts an embedded
    Ray. Asked for here, before Tune starts, its process starts while Tune does. Returns whether
    this call created it; best effort (private, pinned by ray==2.60.0)."""
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


def _run_trial(
    config: dict[str, Any], job: dict[str, Any], train_storage: str, data: list, ledger_dir: str, concurrency: int = 1,
    spare_plan: SparePlan = SparePlan(0.0, 0.0),
) -> None:
    """The Tune function trainable: one Train V2 run for this trial's config.

    ``data`` is ``[ObjectRef]`` to ``(task, splits)``, wrapped in a list so that Ray passes the
    reference on to the workers instead of resolving it here. A trial whose ledger record says
    it ended (under an earlier driver of this run) returns at once, or fails again with the
    same error, instead of training further. Otherwise Ray Train resumes the run it finds
    under ``train_storage``/<trial id> from that run's latest checkpoint, if there is one.
    ``concurrency``: the sweep's trials at once, which tells whether a trial will start after this
    one ends; ``spare_plan``: ``resolve_spares``'s answer for the sweep.
    """
    import queue

    import ray.train
    from ray.train.torch import TorchConfig
    from ray.util.queue import Queue

    spec = JobSpec.model_validate(job)
    trial_id = tune.get_context().get_trial_id()
    record = storage.join(ledger_dir, f"{trial_id}.json")
    if storage.exists(record):
        ledger = storage.read_json(record)
        if ledger.get(C.ENDED_AT):
            if ledger.get(C.ERROR):
                raise RuntimeError(ledger[C.ERROR])
            if not ledger.get(C.LAST_REPORT):
                raise RuntimeError(f"trial {trial_id} ended under an earlier driver before its first report")
            tune.report(ledger[C.LAST_REPORT])  # Tune wants the metric in a trial's final result; the driver has this epoch already
            return
    h = spec.harness
    os.environ.update(_trial_env(h))
    in_trial = h.train_controller == "trial"
    plan = worker_group_plan(spec)
    # The controller runs ForwardReports: in this process, a plain queue; as an actor, a Ray
    # Queue (itself one more actor).
    reports = queue.Queue() if in_trial else Queue(actor_options={"num_cpus": 0})
    trainer = _lean_trainer_cls(in_trial, h.settle_wait_s if h.reuses_worker_groups else 0.0)(
        train_worker,
        train_loop_config={"job": job, "params": space.flatten(config), "data": data,
                           # Tune numbers trials in the order it starts them: the spare a worker asks for
                           # serves the trial that takes this one's place, if there is one to come.
                           "spare_keep_alive_s": spare_plan.later_s if int(trial_id.rsplit("_", 1)[-1]) + concurrency < spec.budget.num_trials else 0.0},
        torch_config=TorchConfig(backend=plan.backend),
        scaling_config=ray.train.ScalingConfig(num_workers=plan.num_workers, use_gpu=plan.use_gpu, resources_per_worker=plan.resources_per_worker),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=train_storage,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=spec.checkpointing.num_to_keep, checkpoint_score_attribute=spec.metric, checkpoint_score_order=spec.mode
            ),
            failure_config=ray.train.FailureConfig(
                max_failures=h.max_worker_failures, controller_failure_limit=h.worker_start_attempts - 1
            ),
            callbacks=[ForwardReports(reports)],
            worker_runtime_env=_worker_runtime_env(spare_plan),
        ),
    )
    trainer.abort = threading.Event()
    # fit() runs beside this thread, which hands each forwarded report to Tune itself and
    # returns only after the last one: no report is ever left in flight (see ForwardReports).
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except _RunAborted:
            pass
        except BaseException as e:  # noqa: BLE001 - re-raised in the trial thread below
            failure.append(e)

    runner = threading.Thread(target=fit, name=f"fit-{trial_id}", daemon=True)
    runner.start()
    try:
        while True:
            try:
                item = reports.get(timeout=0.25)
            except queue.Empty:  # ray.util.queue.Empty is a subclass
                if runner.is_alive():
                    continue
                try:  # fit() has returned, so every put has landed: drain what is left
                    item = reports.get_nowait()
                except queue.Empty:
                    break
            tune.report(item)
    except SystemExit:
        # Tune ends a trial that it stopped (ASHA, a limit) by raising SystemExit in tune.report
        # here: when it stops the actor, and when it reuses the actor for the next trial. With
        # the controller in this process, end the run before this thread returns, so that a
        # reused actor starts the next trial with the old worker group gone.
        trainer.abort.set()
        if in_trial:
            runner.join(timeout=float(os.environ[_TUNE_THREAD_TIMEOUT_ENV]) - 1)  # before Tune's own wait ends
        raise
    runner.join()
    if not in_trial:
        reports.shutdown()
    if failure:
        e = failure[0]
        if isinstance(e, ray.train.TrainingFailedError):
            raise RuntimeError(f"trial {trial_id} failed in Ray Train: {e}") from e
        raise e


# ---------------------------------------------------------------------------------------------
# Driver-side callbacks
# ---------------------------------------------------------------------------------------------
def _pg_from_hex(pg_hex: str):
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_hex)))


def _pg_state(pg_hex: str) -> str:
    try:
        return ray.util.placement_group_table(_pg_from_hex(pg_hex)).get("state", "UNKNOWN")
    except Exception:  # noqa: BLE001 - an unknown PG is as good as removed
        return "REMOVED"


class WorkerGroupReaper(tune.Callback):
    """Removes each finished trial's worker-group PG from the driver; see the module docstring."""

    def __init__(self, release_timeout_s: float, actors_outlive_trials: bool = False, groups_outlive_trials: bool = False):
        self.release_timeout_s = release_timeout_s
        self.actors_outlive_trials = actors_outlive_trials
        # harness.reuse_worker_groups: a trial's group may be kept by its actor for the actor's next trial
        self.groups_outlive_trials = groups_outlive_trials
        self._pgs: dict[str, set[str]] = {}
        self._actors: dict[str, Any] = {}
        self._every_actor: dict[str, Any] = {}
        self._actor_started: dict[str, float] = {}  # actor id -> monotonic time its latest trial started
        self._threads: list[threading.Thread] = []
        self.release_seconds: dict[str, float] = {}
        self.unreleased: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        # Tune pickles callbacks into its experiment state; threads, locks and actor handles
        # belong to this driver process only.
        state = self.__dict__.copy()
        state.update(_threads=[], _lock=None, _actors={}, _every_actor={})
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def on_trial_start(self, iteration, trials, trial, **info):
        actor = getattr(trial.temporary_state, "ray_actor", None)
        self._actors[trial.trial_id] = actor
        if actor is not None:
            aid = actor._actor_id.hex()  # ActorHandle has no public id accessor in Ray 2.60
            self._every_actor[aid] = actor
            self._actor_started[aid] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        pg = result.get(C.PLACEMENT_GROUP_ID)
        if pg:
            self._pgs.setdefault(trial.trial_id, set()).add(pg)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._start_reap(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._start_reap(trial.trial_id)

    def _start_reap(self, trial_id: str) -> None:
        pgs = sorted(self._pgs.get(trial_id, ()))
        actor = self._actors.pop(trial_id, None)
        t = threading.Thread(target=self._reap, args=(trial_id, pgs, actor, time.monotonic()), daemon=True, name=f"reap-{trial_id}")
        self._threads.append(t)
        t.start()

    def _reap(self, trial_id: str, pgs: list[str], actor: Any, t0: float) -> None:
        deadline = t0 + self.release_timeout_s
        aid = actor._actor_id.hex() if actor is not None else ""
        # Wait for the trial actor to be gone first: the Train controller runs in it (or is owned
        # by it) and could otherwise see its workers die with the PG and start a replacement group.
        # A reused actor lives on, but ends the trial's run itself before its next trial
        # (_run_trial), and the run's PGs go with it. Or it keeps its group (distsearch.warm): the
        # group is then the actor's for as long as the actor lives, so there is no deadline, and
        # this trial's part ends when the actor starts its next trial (which took the group, or
        # ended it) or dies (then the PG is removed here).
        while actor is not None and (time.monotonic() < deadline or self.groups_outlive_trials):
            if self.actors_outlive_trials and all(_pg_state(pg) == "REMOVED" for pg in pgs):
                break
            started = self._actor_started.get(aid, 0.0)
            if self.groups_outlive_trials and started > t0:
                with self._lock:
                    self.release_seconds[trial_id] = started - t0
                return
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=1.0)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError):
                break
            except ray.exceptions.GetTimeoutError:
                pass
            time.sleep(0.2 if self.groups_outlive_trials else 0.05)
        deadline = max(deadline, time.monotonic())
        for pg in pgs:
            if _pg_state(pg) != "REMOVED":
                try:
                    ray.util.remove_placement_group(_pg_from_hex(pg))
                except Exception as e:  # noqa: BLE001
                    log.warning("could not remove placement group %s of trial %s: %s", pg, trial_id, e)
        while time.monotonic() < deadline + self.release_timeout_s:
            left = [pg for pg in pgs if _pg_state(pg) != "REMOVED"]
            if not left:
                with self._lock:
                    self.release_seconds[trial_id] = time.monotonic() - t0
                return
            time.sleep(0.05)
        with self._lock:
            self.unreleased[trial_id] = left

    def live_trial_actors(self) -> list[Any]:
        """Handles of every trial actor this sweep has started, including dead ones (killing those
        is a no-op): a reused actor may still run the worker group of a trial that has ended."""
        return list(self._every_actor.values())

    def finish(self) -> None:
        for t in self._threads:
            t.join(timeout=3 * self.release_timeout_s)


# Tune's own bookkeeping keys: not the loop's metrics, so not in epochs.parquet.
_TUNE_KEYS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "date", "pid", "hostname", "node_ip",
    "done", "trial_id", "experiment_tag", "config", "iterations_since_restore", "time_since_restore",
    "checkpoint_dir_name", "should_checkpoint", "experiment_id",
})


def _epoch_row(trial_id: str, result: Mapping[str, Any], received: datetime) -> dict[str, Any]:
    row = {k: v for k, v in result.items() if k not in _TUNE_KEYS}
    row[C.TRIAL_ID] = trial_id
    row[C.TIMESTAMP] = received
    return row


def _error_text(trial) -> str:
    """The trial's error as Tune stored it: its driver-side error file is written before the
    error callbacks run; the copy on storage (``get_error``) only after the next sync."""
    local = getattr(trial, "error_file", None)
    text = Path(local).read_text() if local and os.path.exists(local) else str(trial.get_error() or "")
    return (text.strip() or "trial failed (no error text was stored)")[-4000:]


class ResultRecorder(tune.Callback):
    """Collects every per-epoch report in driver memory, and keeps a ledger record per trial
    (start, end, error, last report) in memory and in ``ledger_dir``: what a resumed driver
    must not run again. ``prior`` seeds both with what earlier drivers of the run recorded.

    Each (trial, epoch) is kept once, the first time it arrives.
    """

    def __init__(self, metric: str, ledger_dir: Optional[str] = None, prior: Optional["PriorRun"] = None):
        self.metric, self.ledger_dir = metric, ledger_dir
        self.epoch_rows: list[dict[str, Any]] = list(prior.epoch_rows) if prior else []
        self._seen = {(r[C.TRIAL_ID], r[C.EPOCH]) for r in self.epoch_rows}
        self.ledger: dict[str, dict[str, Any]] = {t: dict(r) for t, r in prior.ledger.items()} if prior else {}
        self.trials: list[Any] = []

    def record(self, trial_id: str) -> dict[str, Any]:
        """The ledger record of ``trial_id``; every key present, None where not known yet."""
        return self.ledger.setdefault(
            trial_id, {C.TRIAL_ID: trial_id, C.STARTED_AT: None, C.ENDED_AT: None, C.ERROR: None, C.LAST_REPORT: None}
        )

    @property
    def errors(self) -> dict[str, str]:
        return {t: r[C.ERROR] for t, r in self.ledger.items() if r.get(C.ERROR)}

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self.record(trial.trial_id)
        if record[C.STARTED_AT] is None:
            record[C.STARTED_AT] = time.time()
            self._write(record)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = (trial.trial_id, result.get(C.EPOCH))
        if key[1] is None or key in self._seen:
            return
        self._seen.add(key)
        self.epoch_rows.append(_epoch_row(trial.trial_id, result, datetime.now(timezone.utc)))
        if self.metric in result:
            self.record(trial.trial_id)[C.LAST_REPORT] = {C.EPOCH: key[1], self.metric: result[self.metric]}

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, _error_text(trial))

    def _end(self, trial, error: Optional[str]) -> None:
        record = self.record(trial.trial_id)
        if record[C.ENDED_AT] is not None:
            return  # ended under an earlier driver: keep that record
        record.update({C.ENDED_AT: time.time(), C.ERROR: error})
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self.ledger_dir:
            storage.write_json(storage.join(self.ledger_dir, f"{record[C.TRIAL_ID]}.json"), record)

    def on_experiment_end(self, trials, **info):
        self.trials = list(trials)


@dataclass
class PriorRun:
    """What earlier drivers of a run left on storage: every trial's reports up to its latest
    checkpoint, and the ledger (start, end, error per trial)."""

    epoch_rows: list[dict[str, Any]]
    ledger: dict[str, dict[str, Any]]

    def metric_by_trial(self, metric: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for r in sorted(self.epoch_rows, key=lambda r: r[C.EPOCH]):
            if r.get(metric) is not None:
                out.setdefault(r[C.TRIAL_ID], []).append((int(r[C.EPOCH]), float(r[metric])))
        return out


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def load_prior(run_dir: str) -> PriorRun:
    """Read ``run_dir`` as earlier drivers left it: the ledger, and per trial the reports up to
    the latest checkpoint Ray Train registered (``history.json`` in it, see ``worker``), which
    is the one Train resumes from. Checkpoints Train never registered (a worker that outlived
    its driver for a moment) are ignored. Each kept checkpoint gives its epoch's path."""
    import pyarrow.fs as pafs
    from ray.train import Result
    from ray.train.v2._internal.exceptions import RayTrainError

    fs, base = storage.filesystem(run_dir)
    ledger = {}
    for info in fs.get_file_info(pafs.FileSelector(f"{base}/{C.LEDGER_DIR}", allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            record = storage.read_json(storage.uri(fs, info.path))
            ledger[record[C.TRIAL_ID]] = record
    rows: list[dict[str, Any]] = []
    for trial in fs.get_file_info(pafs.FileSelector(f"{base}/{C.TRAIN_DIR}", allow_not_found=True)):
        if trial.type != pafs.FileType.Directory:
            continue
        try:
            with _quiet("ray.train"):  # Train logs a paragraph per run it finds
                train_run = Result.from_path(storage.uri(fs, trial.path))
        except RayTrainError as e:  # a snapshot cut short by the crash: Train cannot resume it either
            log.warning("trial %s: Ray Train cannot read its checkpoint record (%s); it starts over", trial.base_name, e)
            continue
        except RuntimeError:  # no checkpoint was registered: the trial starts from scratch
            continue
        if train_run.checkpoint is None:
            continue
        latest = storage.uri(train_run.checkpoint.filesystem, train_run.checkpoint.path)
        history = storage.read_json(storage.join(latest, C.CHECKPOINT_HISTORY_FILE))
        paths = {int(m[C.EPOCH]): storage.uri(c.filesystem, c.path) for c, m in train_run.best_checkpoints or []}
        paths[int(history[-1][C.EPOCH])] = latest
        record = ledger.get(trial.base_name, {})
        if record.get(C.ENDED_AT):
            # An ended trial's workers may train on for a moment after Tune stops it; those
            # epochs never reached the driver and are not results.
            last = (record.get(C.LAST_REPORT) or {}).get(C.EPOCH, 0)
            history = [h for h in history if h[C.EPOCH] <= last]
        for h in history:
            row = _epoch_row(trial.base_name, {k: v for k, v in h.items() if k != C.TIMESTAMP}, datetime.fromtimestamp(h[C.TIMESTAMP], timezone.utc))
            if h[C.EPOCH] in paths:
                row[C.CHECKPOINT_PATH] = paths[h[C.EPOCH]]
            rows.append(row)
    return PriorRun(epoch_rows=rows, ledger=ledger)


def has_sweep_state(run_dir: str) -> bool:
    """Whether Tune saved the experiment state of ``run_dir``'s sweep (needed to resume it)."""
    import pyarrow.fs as pafs

    fs, base = storage.filesystem(run_dir)
    found = fs.get_file_info(pafs.FileSelector(f"{base}/{C.TUNE_DIR}", allow_not_found=True))
    return any(i.base_name.startswith("experiment_state") and i.base_name.endswith(".json") for i in found)


class Heartbeat(tune.Callback):
    """Calls ``beat`` from Tune's loop at most every ``interval_s`` (it says the driver is alive)."""

    def __init__(self, beat: Callable[[], None], interval_s: float):
        self.beat, self.interval_s = beat, interval_s
        self._last = time.monotonic()

    def __getstate__(self):  # Tune pickles callbacks into its experiment state
        return {**self.__dict__, "beat": None}

    def on_step_end(self, iteration, trials, **info):
        if self.beat is not None and time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed heartbeat must never fail the sweep
                log.exception("heartbeat failed")


class ProgressView(tune.Callback):
    """One live line for the whole sweep: trials by state, epochs done out of the budget, and the
    best metric so far. Rewritten in place on a terminal; a new line every ``interval_s``
    otherwise (e.g. under ``ray job logs``)."""

    def __init__(self, spec: JobSpec, interval_s: Optional[float] = None, stream=None, prior: Optional["PriorRun"] = None):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (1.0 if self.tty else 10.0)
        self.metric, self.mode, self.max_epochs = spec.metric, spec.mode, spec.budget.max_epochs
        self.budget = spec.budget.num_trials * spec.budget.max_epochs
        self.epochs = len(prior.epoch_rows) if prior else 0
        self.last_epoch: dict[str, int] = {t: v[-1][0] for t, v in prior.metric_by_trial(self.metric).items()} if prior else {}
        self.best: Optional[tuple[float, str]] = None
        self.t0 = time.monotonic()
        self._last_print = 0.0

    def __getstate__(self):  # Tune pickles callbacks into its experiment state
        return {**self.__dict__, "stream": None}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get(C.EPOCH, 0))
        if epoch <= self.last_epoch.get(trial.trial_id, 0):
            return  # a resumed trial repeating its checkpoint's report
        self.epochs += 1
        self.last_epoch[trial.trial_id] = epoch
        value = result.get(self.metric)
        if value is not None and math.isfinite(value):
            if self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0]):
                self.best = (float(value), trial.trial_id)

    def line(self, trials) -> str:
        states = [t.status for t in trials]
        ended = [t for t in trials if t.status == "TERMINATED"]
        done = sum(self.last_epoch.get(t.trial_id, 0) >= self.max_epochs for t in ended)
        best = f"best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else f"best {self.metric} -"
        return (f"[{time.monotonic() - self.t0:6.0f} s] trials: {states.count('RUNNING')} running, {states.count('PENDING')} pending, "
                f"{done} done, {len(ended) - done} stopped early, {states.count('ERROR')} failed | epochs {self.epochs}/{self.budget} | {best}")

    def _print(self, trials, final: bool = False) -> None:
        if self.stream is None:
            return
        text = self.line(trials)
        if self.tty:
            self.stream.write("\r" + text.ljust(150)[:150] + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last_print >= self.interval_s:
            self._last_print = now
            self._print(trials)

    def on_experiment_end(self, trials, **info):
        self._print(trials, final=True)


def _hparams_logger():
    """Tune's TensorBoard logger, with hparams written from the flat trial parameters.

    Tune's own version flattens the raw config, where a conditional option's sub-space still
    holds unresolved domain objects; those are dropped and the sub-parameters go missing."""
    from ray.tune.logger import TBXLoggerCallback

    class _FlatHParamsTBX(TBXLoggerCallback):
        def _try_log_hparams(self, trial, result):
            from tensorboardX.summary import hparams

            params = {k: v for k, v in space.flatten(trial.config).items() if isinstance(v, (bool, int, float, str))}
            metrics = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            try:
                for summary in hparams(hparam_dict=params, metric_dict=metrics):
                    self._trial_writer[trial].file_writer.add_summary(summary)
            except Exception:  # noqa: BLE001 - TensorBoard extras must never fail a sweep
                log.exception("could not write TensorBoard hparams for trial %s", trial.trial_id)

    return _FlatHParamsTBX()


class ErrorBudget(tune.Callback, tune.stopper.Stopper):
    """Ends the sweep once more than ``max_failed`` trials have failed: Tune then stops every
    running trial and starts no new one. Both a callback (it counts failures) and the stopper."""

    def __init__(self, max_failed: Optional[int], failed: Iterable[str] = ()):
        self.max_failed = max_failed
        # a set: a trial that failed under an earlier driver may fail once more when restarted
        self.failed: set[str] = set(failed)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed.add(trial.trial_id)

    @property
    def exceeded(self) -> bool:
        return self.max_failed is not None and len(self.failed) > self.max_failed

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.exceeded


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepOutcome:
    """What ``run_sweep`` hands to ``results``: raw rows and facts, no files written yet."""

    trial_rows: list[dict[str, Any]]
    epoch_rows: list[dict[str, Any]]
    max_concurrent_trials: int
    cluster_resources: dict[str, float]
    wall_seconds: float
    leaks: dict[str, Any] = field(default_factory=dict)
    error_budget_exceeded: bool = False
    splits: Optional[Splits] = None  # the task's splits, test included, as the sweep made them


def _trial_rows(spec: JobSpec, rec: ResultRecorder, reaper: WorkerGroupReaper, cancelled: bool = False) -> list[dict[str, Any]]:
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in rec.epoch_rows:
        by_trial.setdefault(row[C.TRIAL_ID], []).append(row)
    better = max if spec.mode == "max" else min
    rows = []
    for trial in rec.trials:
        tid = trial.trial_id
        epochs = by_trial.get(tid, [])
        values = [(r[spec.metric], r[C.EPOCH]) for r in epochs if r.get(spec.metric) is not None]
        done = max((r[C.EPOCH] for r in epochs), default=0)
        if trial.status == "ERROR":
            status = C.STATUS_ERROR
            error = rec.record(tid)[C.ERROR] or _error_text(trial)
        else:
            status = C.STATUS_COMPLETED if done >= spec.budget.max_epochs else C.STATUS_CANCELLED if cancelled else C.STATUS_STOPPED
            error = None
        best = better(values, key=lambda v: v[0]) if values else (None, None)
        start, end = rec.record(tid)[C.STARTED_AT], rec.record(tid)[C.ENDED_AT]
        rows.append({
            C.TRIAL_ID: tid,
            "params": space.flatten(trial.config),
            C.STATUS: status,
            C.EPOCHS_COMPLETED: done,
            C.BEST_METRIC: best[0],
            C.BEST_EPOCH: best[1],
            C.LAST_METRIC: values[-1][0] if values else None,
            C.STARTED_AT: datetime.fromtimestamp(start, timezone.utc) if start else None,
            C.ENDED_AT: datetime.fromtimestamp(end, timezone.utc) if end else None,
            C.WALL_SECONDS: (end - start) if start and end else None,
            C.RELEASE_SECONDS: reaper.release_seconds.get(tid),
            C.ERROR: error,
        })
    return rows


def _sweep_job_pgs() -> list[str]:
    """Remove every placement group of this job that is still alive; return their ids."""
    job = ray.get_runtime_context().get_job_id()
    found = []
    for pg_hex, info in ray.util.placement_group_table().items():
        if pg_hex.endswith(job) and info.get("state") != "REMOVED":
            found.append(pg_hex)
            try:
                ray.util.remove_placement_group(_pg_from_hex(pg_hex))
            except Exception as e:  # noqa: BLE001
                log.warning("could not remove leftover placement group %s: %s", pg_hex, e)
    return found


def _job_actors_alive() -> dict[str, str]:
    """This job's actors that are not dead yet: actor id (hex) -> class name (GCS view; no dashboard needed)."""
    from ray._private import state  # the public ray.util.state API needs the dashboard

    job = ray.get_runtime_context().get_job_id()
    return {aid: a.get("ActorClassName", "") for aid, a in state.actors().items() if a.get("State") != "DEAD" and a.get("JobID") == job}


def live_train_actors() -> list[str]:
    """Class names of this job's Ray Train actors still alive."""
    return [c for c in _job_actors_alive().values() if c in _TRAIN_ACTOR_CLASSES]


# Ray's job supervisor sends SIGTERM on `ray job stop` and SIGKILL 3 s later
# (RAY_JOB_STOP_WAIT_TIME_S); Kubernetes waits 30 s. The cleanup must fit in the shorter.
STOP_CLEANUP_S = 2.0


def release_everything(trial_actors: Iterable[Any] = (), deadline_s: float = STOP_CLEANUP_S) -> dict[str, Any]:
    """Kill ``trial_actors``, then remove every placement group of this job until none of them
    and no Train controller actor of the job is alive, and two sweeps in a row find nothing, or
    ``deadline_s`` passes. Workers may take longer to go; with their groups removed, Ray ends them.

    Why not leave it to Ray: when a job ends, GCS removes a group only if it already knows the
    group's creator is dead. A group that a Train controller registers while it is being
    killed (its worker group's start or restart racing the stop) arrives after the controller's
    death was processed and is never removed. Killing the controllers first (they run in, or die
    with, their trial actor) and sweeping until nothing comes back closes that window.
    Returns what it did, for the log line and for tests."""
    t0 = time.monotonic()
    killed = set()
    for actor in trial_actors:
        killed.add(actor._actor_id.hex())  # ActorHandle has no public id accessor in Ray 2.60
        with contextlib.suppress(Exception):  # already dead is as good
            ray.kill(actor, no_restart=True)
    removed: list[str] = []
    clean_sweeps = 0
    while True:
        found = _sweep_job_pgs()
        removed += found
        alive = _job_actors_alive()
        # only a controller can register a new group (in its trial actor, or as its own actor); workers cannot
        creators = [aid for aid, cls in alive.items() if aid in killed or cls == "TrainController"]
        clean_sweeps = clean_sweeps + 1 if not found and not creators else 0
        if clean_sweeps >= 2 or time.monotonic() - t0 > deadline_s:
            train_alive = [cls for cls in alive.values() if cls in _TRAIN_ACTOR_CLASSES]
            return {"placement_groups_removed": removed, "train_actors_alive": train_alive, "seconds": time.monotonic() - t0}
        time.sleep(0.1)


@contextlib.contextmanager
def released_on_sigterm(reaper: "WorkerGroupReaper"):
    """While the sweep runs, SIGTERM (`ray job stop`, `kill`, a pod's deletion) first releases
    every trial, worker group and placement group of this job (``release_everything``), prints
    what it did, and only then exits as before (Ray's driver handler raises ``SystemExit``).
    The run stays unfinished, so the same command resumes it. Main thread only (Python's rule)."""
    previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else signal.SIG_IGN
    if previous == signal.SIG_IGN:  # not the main thread, or SIGTERM is ignored on purpose
        yield
        return
    restore = previous if previous is not None else signal.SIG_DFL  # None: installed outside Python

    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, restore)  # a second SIGTERM exits at once
        try:
            done = release_everything(reaper.live_trial_actors())
            print(
                f"distsearch: SIGTERM: stopped the sweep; removed {len(done['placement_groups_removed'])} placement groups in "
                f"{done['seconds']:.2f} s; Train actors still alive: {done['train_actors_alive'] or 'none'}",
                file=sys.stderr, flush=True,
            )
        except Exception:  # noqa: BLE001 - exiting matters more than the cleanup report
            log.exception("cleanup on SIGTERM failed")
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, restore)


def asha_scheduler(spec: JobSpec, prior: Optional[Mapping[str, list[tuple[int, float]]]] = None):
    """The ASHA scheduler of ``spec``: decides on ``spec.metric`` at epoch rungs. With
    ``asha.enabled: false``, FIFO: every trial runs to ``max_epochs`` (plain random search).

    ``prior`` ({trial id: [(epoch, metric), ...]}, from an earlier driver of the same run) is
    replayed into the rungs as each restored trial is added: Tune saves no scheduler state, and
    without it a resumed sweep would judge its trials against empty rungs. A trial the replay
    would cut at a rung (it may have reached the rung after the old driver's last look) is
    stopped at its first result.
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if not spec.asha.enabled:
        return FIFOScheduler()
    history = dict(prior or {})
    cut_by_replay: set[str] = set()

    class _ResumableASHA(ASHAScheduler):
        def on_trial_add(self, tune_controller, trial):
            super().on_trial_add(tune_controller, trial)
            bracket = self._trial_info[trial.trial_id]
            for epoch, value in history.pop(trial.trial_id, ()):
                if bracket.on_result(trial, epoch, self._metric_op * value) == TrialScheduler.STOP:
                    cut_by_replay.add(trial.trial_id)

        def on_trial_result(self, tune_controller, trial, result):
            action = super().on_trial_result(tune_controller, trial, result)
            return TrialScheduler.STOP if trial.trial_id in cut_by_replay else action

    return _ResumableASHA(
        time_attr=C.EPOCH, metric=spec.metric, mode=spec.mode, max_t=spec.budget.max_epochs,
        grace_period=spec.asha.grace_period_epochs, reduction_factor=spec.asha.reduction_factor, brackets=spec.asha.brackets,
    )


def run_sweep(
    spec: JobSpec, run_dir: str, *, task: Optional[Task] = None, progress: bool = True, resume: bool = False,
    heartbeat: Optional[Callable[[], None]] = None, heartbeat_interval_s: float = 10.0,
) -> SweepOutcome:
    """Run the ASHA sweep of ``spec`` on the connected Ray cluster; ``run_dir`` is a local path or URI.

    Ray must already be connected (see ``connect``). ``task`` is ``check_job(spec)``'s, built
    here if not given. ``progress`` prints ``ProgressView``'s line to stdout instead of Tune's
    status tables. Trials that fail are recorded, not raised.

    ``resume`` continues the sweep an earlier driver of ``run_dir`` left unfinished: trials that
    ended stay ended (the ledger outranks Tune's last experiment save, which may be seconds
    old), unfinished trials go on from their latest Ray Train checkpoint, new trials are drawn
    where the search stopped, and ASHA's rungs are refilled from the reports stored with the
    checkpoints (``load_prior``). ``heartbeat`` is called every ``heartbeat_interval_s`` while
    Tune runs.
    """
    from ray.tune.search.basic_variant import BasicVariantGenerator

    task = task if task is not None else check_job(spec)
    nodes = _alive_nodes()
    concurrency = plan_concurrency(spec, nodes)
    spare_plan = resolve_spares(spec, nodes, concurrency)
    job = spec.to_dict()
    splits = task.splits(spec.seed)  # before the put: a task may set what splitting learns (e.g. target scale)
    # Workers get no test rows: the test split is touched once, by the runner, for the best model.
    data_ref = ray.put((task, splits.without_test()))  # owned by this driver for the whole sweep
    prior = load_prior(run_dir) if resume else None
    ledger_dir = storage.join(run_dir, C.LEDGER_DIR)
    recorder = ResultRecorder(spec.metric, ledger_dir, prior)
    reaper = WorkerGroupReaper(
        spec.harness.release_timeout_s, actors_outlive_trials=spec.harness.reuses_trial_actors,
        groups_outlive_trials=spec.harness.reuses_worker_groups,
    )
    budget = ErrorBudget(spec.budget.max_failed_trials, failed=recorder.errors)
    callbacks = [recorder, reaper, budget, _hparams_logger()]
    callbacks += [ProgressView(spec, prior=prior)] if progress else []
    callbacks += [Heartbeat(heartbeat, heartbeat_interval_s)] if heartbeat else []
    trainable = tune.with_resources(
        tune.with_parameters(
            _run_trial, job=job, train_storage=storage.join(run_dir, C.TRAIN_DIR), data=[data_ref], ledger_dir=ledger_dir,
            concurrency=concurrency, spare_plan=spare_plan,
        ),
        _TRIAL_ACTOR_RESOURCES,
    )
    scheduler = asha_scheduler(spec, prior.metric_by_trial(spec.metric) if prior else None)
    if prior:
        tuner = tune.Tuner.restore(storage.join(run_dir, C.TUNE_DIR), trainable, resume_unfinished=True, resume_errored=False)
        # Tuner.restore takes callbacks, stopper and scheduler from tuner.pkl, pickled when the
        # first driver started; this driver's live objects must replace them (private, pinned
        # by ray==2.60.0: TunerInternal keeps both configs as attributes).
        internal = tuner._local_tuner
        internal._run_config.callbacks = callbacks
        internal._run_config.stop = budget
        internal._tune_config.scheduler = scheduler
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space.to_tune(spec.space),
            tune_config=tune.TuneConfig(
                num_samples=spec.budget.num_trials,
                # Tune ignores TuneConfig.max_concurrent_trials when search_alg is a generator, and the
                # Train workers' resources are invisible to Tune, so the limit must sit here.
                search_alg=BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency),
                scheduler=scheduler,
                reuse_actors=spec.harness.reuses_trial_actors,
                # Tune's default folder name embeds the config's repr, which for a conditional
                # parameter includes unresolved domain objects; the trial id is enough.
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=tune.RunConfig(
                name=C.TUNE_DIR,
                storage_path=run_dir,
                callbacks=callbacks,
                stop=budget,
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                verbose=0,  # ProgressView instead of Tune's tables
            ),
        )
    # Tune's newer console output prints its banner and paths even at verbose=0; the legacy
    # path honours verbose=0, so ProgressView's line is the only progress output.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    start_first_spares(spec, concurrency, spare_plan)  # first: the raylet drops spares it has no start slot for
    start_train_coordinator()
    t0 = time.monotonic()
    try:
        with released_on_sigterm(reaper):
            tuner.fit()
    finally:
        reaper.finish()
    wall = time.monotonic() - t0
    leftover = _sweep_job_pgs()
    try:
        actors = live_train_actors()
    except Exception as e:  # noqa: BLE001 - leak accounting must never fail the run
        actors = [f"unknown: {e}"]
    return SweepOutcome(
        trial_rows=_trial_rows(spec, recorder, reaper, cancelled=budget.exceeded),
        epoch_rows=recorder.epoch_rows,
        max_concurrent_trials=concurrency,
        cluster_resources=dict(ray.cluster_resources()),
        wall_seconds=wall,
        leaks={"placement_groups_swept_at_end": leftover, "train_actors_alive_at_end": actors, "unreleased_by_trial": reaper.unreleased},
        error_budget_exceeded=budget.exceeded,
        splits=splits,
    )


# ---------------------------------------------------------------------------------------------
# The best model, once, on the test split
# ---------------------------------------------------------------------------------------------
def evaluate_checkpoint(task: Task, splits: Splits, params: Mapping[str, Any], state: Mapping[str, Any], split_names=("train", "val", "test")) -> dict[str, float]:
    """Restore ``state`` into ``task``'s model for ``params`` and score it on each named split, on
    CPU, in eval mode: ``{"<split>_<metric>": value}``."""
    model = task.build_model(params, splits)
    model.load_state_dict(state["model"])
    scores = {}
    for split in split_names:
        sums = loop.evaluate(task, model, getattr(splits, split), torch.device("cpu"))
        scores.update({f"{split}_{k}": v for k, v in task.metrics_from_sums(sums).items()})
    return scores
