"""The trial: the Tune function each trial's actor runs, its environment, and its first spares.

A trial is one Ray Train run: ``run_trial`` builds a ``TorchTrainer`` (distsearch._ray.train's
lean one) for the trial's config and calls ``fit()`` beside the Tune thread, which hands every
report the controller forwards (``worker.ForwardReports``) to ``tune.report``. Ray's own
``TuneReportCallback`` is not used: its hand-off can deadlock a trial when the last report and
``fit()``'s return race, and the trial then hangs for good. A trial of one worker under
``harness.trial_processes: trial_actor`` trains in this actor instead (distsearch.train.lone),
its reports handed on the same way.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from typing import Any, Optional

import ray
from ray import tune

from .. import _ray as door
from .. import constants as C
from .. import storage
from .._ray import train as ray_train
from .._ray import tune as ray_tune
from .._ray.warm import warm_worker_group_cls
from ..space import names as space
from ..spec.model import Harness, JobSpec
from ..train import spares
from ..train.worker import ForwardReports, settle_for_reuse, train_worker
from . import planning
from .relay import END, relay, with_checkpoint_path

# Ray Train reads these in the trial process and propagates them to its controller and workers.
_HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
_TRAIN_METRICS_ENV = "RAY_TRAIN_METRICS_ENABLED"
_PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
_CONTROLLER_LOG_ENV = "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING"
_TUNE_THREAD_TIMEOUT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"  # read by Tune's reset of a reused actor, in the trial actor

# Tune's trial actor only waits on fit(); its real work runs in the Train workers. Tune refuses
# an empty resource request, so the trial asks for 1 MiB of memory, and a sliver of the head
# node's marker resource: the trial actor and its Train controller (in the actor, or an actor
# Ray pins to the same node) then live on the head, the one node a sweep cannot lose anyway (the
# driver is there). Losing a worker node costs only the Train workers on it, which the controller
# restarts elsewhere from the last checkpoint (harness.max_worker_failures).
TRIAL_ACTOR_RESOURCES = {"memory": 2**20, **({ray_tune.HEAD_NODE_RESOURCE: 0.001} if door.VOUCHED else {})}


def trial_actor_resources(spec: JobSpec) -> dict[str, float]:
    """What each trial's Tune actor asks for: a trial that trains in it (``harness.trial_processes:
    trial_actor``) asks for its lone worker's resources, anywhere in the cluster; otherwise
    the sliver above, on the head."""
    if not spec.harness.trains_in_trial_actor:
        return TRIAL_ACTOR_RESOURCES
    s = spec.scaling
    return {"cpu": s.cpus_per_worker, **({"gpu": s.gpus_per_worker} if s.use_gpu else {})}


def trial_env(h: Harness) -> dict[str, str]:
    """The environment variables each trial sets in its own process, where Ray Train and Tune read them."""
    env = {
        _HEALTH_CHECK_ENV: str(h.report_poll_interval_s),
        _START_TIMEOUT_ENV: str(h.worker_start_timeout_s),
        _TRAIN_METRICS_ENV: "0",  # per-report Prometheus metrics we never read
        # The watcher is one more actor spawn before training starts; it only observes
        # spot-instance preemption, which the failure budget handles anyway.
        _PREEMPTION_WATCHER_ENV: "0",
        # How long Tune lets the trial thread end before it gives up reusing the actor (and fails
        # the next trial): long enough for run_until_aborted, which waits for the workers.
        _TUNE_THREAD_TIMEOUT_ENV: str(int(h.release_timeout_s) + 5),
    }
    if h.controller_in_trial:
        # Ray Train's controller log setup is a logging.dictConfig for the whole process,
        # which in the trial actor would reconfigure Tune's loggers as well.
        env[_CONTROLLER_LOG_ENV] = "0"
    return env


def worker_runtime_env(plan: planning.SparePlan) -> dict[str, Any]:
    """The Train workers' runtime env: with any spares (``plan.hook``), the setup hook that
    imports the training stack as a worker process starts (see distsearch.train.spares). A hook the
    job already sets is kept."""
    hook = spares.hook_env_var()
    if not plan.hook or hook in os.environ:
        return {}
    return {"env_vars": {hook: spares.HOOK}}


def start_first_spares(spec: JobSpec, concurrency: int, plan: planning.SparePlan) -> int:
    """Before the first trials: spare worker processes on the driver's node for their workers,
    kept ``plan.first_s``; later trials find spares that the workers before them asked for, where
    ``plan.later_s`` has them (see distsearch.train.spares). Returns how many the raylet was asked for.

    A spare serves a worker only with the very runtime env string of that worker's actor, which
    Ray builds in two steps: Tune gives each trial actor the driver's values of the variables it
    propagates, plus its defaults; Ray Train then gives the workers the trial's values of the
    variables it propagates, plus ``worker_runtime_env``, and Ray's core merges the two into
    compact JSON with sorted keys. The driver builds the same string here. A job-level runtime
    env would be merged in too, so with one it asks for none;
    ``tests/integration/test_sweep.py`` checks that the first trial's worker takes a spare."""
    ctx = ray.get_runtime_context()
    if plan.first_s <= 0 or ctx.get_runtime_env_string() not in ("", "{}") or not door.VOUCHED:
        return 0
    trial_actor = ray_tune.trial_actor_env(dict(os.environ))
    in_trial = {**os.environ, **trial_actor, **trial_env(spec.harness)}
    workers = {k: in_trial[k] for k in ray_train.train_propagated_env() if k in in_trial}
    workers.update(worker_runtime_env(plan).get("env_vars", {}))
    serialized = json.dumps({"env_vars": {**trial_actor, **workers}}, sort_keys=True, separators=(",", ":"))
    node_id = ctx.get_node_id()
    here = next((n.get("Resources", {}) for n in ray.nodes() if n["NodeID"] == node_id), {})
    count = planning.first_spare_count(spec, concurrency, here)
    if count < 1:
        return 0
    # A raylet starts at most this many processes at once (Ray's --maximum_startup_concurrency)
    # and drops a request beyond it: the first batch now, before anything else asks for a
    # process, the rest a second apart, off this thread.
    batch = max(1, min(os.cpu_count() or 1, math.floor(here.get("CPU", 0.0))))
    spares.prestart(node_id, serialized, min(count, batch), plan.first_s)
    if count > batch:

        def rest() -> None:
            time.sleep(1.0)
            spares.prestart(node_id, serialized, count - batch, plan.first_s, batch=batch)

        threading.Thread(target=rest, name="first-spares", daemon=True).start()
    return count


def _trial_number(trial_id: str, ledger_dir: str) -> int:
    """The trial's place in start order, from 0: random search's ids end with it (``..._00003``);
    a searcher's ids are random, so count the trials the ledger has seen start before it."""
    tail = trial_id.rsplit("_", 1)[-1]
    if "_" in trial_id and tail.isdigit():
        return int(tail)
    import pyarrow.fs as pafs

    fs, base = storage.filesystem(ledger_dir)
    return max(0, sum(1 for i in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)) if i.base_name.endswith(".json")) - 1)


def _ended_under_earlier_driver(trial_id: str, config: dict[str, Any], ledger_dir: str) -> tuple[bool, Optional[int]]:
    """Replay the end that the ledger records for ``trial_id``, if any: report its last result
    again (Tune wants the metric in a trial's final result) or fail with its error. Returns
    whether the trial had ended, and else the last epoch the ledger says a driver took from it
    (recorded when a scheduler paused it), or None. A trial the ledger records with other
    parameters than ``config`` fails: its checkpoints belong to that other configuration."""
    record = storage.join(ledger_dir, f"{trial_id}.json")
    if not storage.exists(record):
        return False, None
    ledger = storage.read_json(record)
    params, before = json.loads(json.dumps(space.flatten(config))), ledger.get(C.PARAMS)
    if before is not None and params != before:
        raise RuntimeError(
            f"trial {trial_id}: its ledger record has the parameters {before}, but the search drew {params} under its id; fix: resume with the Ray and distsearch versions that started the run"
        )
    if not ledger.get(C.ENDED_AT):
        return False, (ledger.get(C.LAST_REPORT) or {}).get(C.EPOCH)
    if ledger.get(C.ERROR):
        raise RuntimeError(ledger[C.ERROR])
    if not ledger.get(C.LAST_REPORT):
        raise RuntimeError(f"trial {trial_id} ended under an earlier driver before its first report")
    tune.report(ledger[C.LAST_REPORT])
    return True, None


def run_trial(
    config: dict[str, Any],
    job: dict[str, Any],
    train_storage: str,
    data: list,
    ledger_dir: str,
    concurrency: int = 1,
    spare_plan: planning.SparePlan = planning.NO_SPARES,
) -> None:
    """The Tune function trainable: one Train V2 run for this trial's config, or, with
    ``harness.trial_processes: trial_actor``, the trial trained in this actor (``_train_here``).

    ``data`` is ``[ObjectRef]`` to ``(task, splits)``, wrapped in a list so that Ray passes the
    reference on to the workers instead of resolving it here. A trial whose ledger record says
    it ended (under an earlier driver of this run) returns at once, or fails again with the
    same error, instead of training further. Otherwise Ray Train resumes the run it finds
    under ``train_storage``/<trial id> from that run's latest checkpoint, if there is one.
    ``concurrency``: the sweep's trials at once, which tells whether a trial will start after this
    one ends; ``spare_plan``: ``planning.resolve_spares``'s answer for the sweep.
    """
    spec = JobSpec.model_validate(job)
    trial_id = tune.get_context().get_trial_id()
    ended, seen_epoch = _ended_under_earlier_driver(trial_id, config, ledger_dir)
    if ended:
        return
    h = spec.harness
    os.environ.update(trial_env(h))
    # A hung trial reports nothing, so nothing outside it (Tune's stoppers, which are asked on a
    # report) can end it: the trial watches its own clock, and ends its training as a stop does.
    deadline = time.monotonic() + spec.budget.trial_timeout_s if spec.budget.trial_timeout_s else None
    if h.trains_in_trial_actor:
        _train_here(config, job, storage.join(train_storage, trial_id), data, deadline, spec.budget.trial_timeout_s, seen_epoch)
        return
    import ray.train
    from ray.util.queue import Queue

    from ..train.backend import torch_config  # imports ray.train.torch: here, not in the driver that imports this module

    in_trial = h.controller_in_trial
    plan = planning.worker_group_plan(spec)
    # The controller runs ForwardReports: in this process, a plain queue; as an actor, a Ray
    # Queue (itself one more actor).
    reports = queue.Queue() if in_trial else Queue(actor_options={"num_cpus": 0})
    group_cls = warm_worker_group_cls(h.settle_wait_s, settle_for_reuse) if h.reuses_worker_groups else None
    trial_number = _trial_number(trial_id, ledger_dir)
    trainer = ray_train.lean_trainer_cls(in_trial, group_cls)(
        train_worker,
        train_loop_config={
            "job": job,
            "params": space.flatten(config),
            "data": data,
            "spare_keep_alive_s": planning.later_spare_keep_alive_s(spare_plan, trial_number, concurrency, spec.budget.num_trials),
            "seen_epoch": seen_epoch,
        },
        torch_config=torch_config(plan.backend, plan.num_workers),
        scaling_config=ray.train.ScalingConfig(num_workers=plan.num_workers, use_gpu=plan.use_gpu, resources_per_worker=plan.resources_per_worker),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=train_storage,
            checkpoint_config=ray.train.CheckpointConfig(
                # the selection rule's best is always kept (train.checkpoint.keep_rank), whatever ties the metric has
                num_to_keep=spec.checkpointing.num_to_keep,
                checkpoint_score_attribute=C.CHECKPOINT_KEEP_RANK,
                checkpoint_score_order="max",
            ),
            failure_config=ray.train.FailureConfig(max_failures=h.max_worker_failures, controller_failure_limit=h.worker_start_attempts - 1),
            callbacks=[ForwardReports(reports)],
            worker_runtime_env=worker_runtime_env(spare_plan),
        ),
    )
    trainer.abort = ray_train.Abort()
    # fit() runs beside this thread, which hands each forwarded report to Tune itself and
    # returns only after the last one: no report is ever left in flight (see ForwardReports).
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except ray_train.RunAborted:
            pass
        except BaseException as e:  # noqa: BLE001 - re-raised in the trial thread below
            failure.append(e)

    runner = threading.Thread(target=fit, name=f"fit-{trial_id}", daemon=True)
    runner.start()
    # With the controller in this process, a stopped or timed-out trial's run ends before this
    # thread returns, so that a reused actor starts the next trial with the old worker group gone.
    join_s = float(os.environ[_TUNE_THREAD_TIMEOUT_ENV]) - 1 if in_trial else None  # before Tune's own wait ends
    relay(reports, runner, trainer.abort.set, join_s, join_s, deadline, spec.budget.trial_timeout_s, lambda item: item)
    runner.join()
    if not in_trial:
        reports.shutdown()
    if failure:
        e = failure[0]
        if isinstance(e, ray.train.TrainingFailedError):
            raise RuntimeError(f"trial {trial_id} failed in Ray Train: {e}") from e
        raise e


def _train_here(
    config: dict[str, Any],
    job: dict[str, Any],
    trial_dir: str,
    data: list,
    deadline: Optional[float],
    timeout_s: Optional[float],
    seen_epoch: Optional[int] = None,
) -> None:
    """The trial trained in this actor (distsearch.train.lone) on a thread beside this one, which
    hands its reports to Tune, each once its checkpoint is stored. The training thread runs at
    most two reports ahead of Tune, so a stop finds it within an epoch or two."""
    from ..train.lone import train_lone

    reports: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    failure: list[BaseException] = []

    def put(item: Any) -> None:
        while not stop.is_set():  # a stopped trial's last reports are nobody's: leave, do not wait
            try:
                reports.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def train() -> None:
        try:
            cfg = {"job": job, "params": space.flatten(config), "data": data, "seen_epoch": seen_epoch}
            train_lone(cfg, trial_dir, lambda metrics, stored: put((metrics, stored)), stop)
        except BaseException as e:  # noqa: BLE001 - re-raised in the trial thread below
            failure.append(e)
        finally:
            put(END)

    runner = threading.Thread(target=train, name="train-lone", daemon=True)
    runner.start()
    # The training thread leaves at its next batch once stopped. A timed-out trial's batch may
    # hang for good: it is not waited for, and goes with the actor, which Tune ends for a failed trial.
    join_s = float(os.environ[_TUNE_THREAD_TIMEOUT_ENV]) - 1
    relay(reports, runner, stop.set, join_s, 0.0, deadline, timeout_s, with_checkpoint_path)
    runner.join()
    if failure:
        raise failure[0]
