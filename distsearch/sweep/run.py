"""The sweep: one job's trials under ASHA on a connected Ray cluster, from plan to leak check."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from .. import _ray as door
from .. import constants as C
from .. import storage
from .._ray import train as ray_train
from .._ray import tune as ray_tune
from ..search.plan import build_plan
from ..spec.model import JobSpec
from ..tasks import Splits, Task
from ..tasks.base import splits_once
from . import cleanup, planning
from .progress import Heartbeat, ProgressView, TensorBoardLogger
from .recording import ResultRecorder, SweepBudget, trial_rows
from .resume import load_prior
from .trial import run_trial, start_first_spares, trial_actor_resources

#: What Tune's driver reads from the environment during ``fit()``, set only while it runs.
TUNE_DRIVER_ENV = {
    # Tune's newer console output prints its banner and paths even at verbose=0; the legacy
    # path honours verbose=0, so ProgressView's line is the only progress output.
    "RAY_AIR_NEW_OUTPUT": "0",
    # TensorBoardLogger writes the event files; Tune would add its own TBX logger beside it.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Tune's SIGINT handler ends fit() normally, as if the sweep were over; cleanup's is a stop.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """``values`` set in this process's environment while the block runs, then put back as they were:
    Tune reads these in the driver, and the caller's process must be left as it was found."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class SweepOutcome:
    """What ``run_sweep`` hands on: raw rows and facts, no files written yet."""

    trial_rows: list[dict[str, Any]]
    epoch_rows: list[dict[str, Any]]
    max_concurrent_trials: int
    cluster_resources: dict[str, float]
    wall_seconds: float
    leaks: dict[str, Any] = field(default_factory=dict)
    error_budget_exceeded: bool = False
    out_of_time: bool = False  # budget.time_s ended the sweep
    out_of_worker_epochs: bool = False  # budget.worker_epochs ended the sweep
    worker_epochs: int = 0  # epochs trained times the workers that trained them, earlier drivers' included
    splits: Optional[Splits] = None  # the task's splits, test included, as the sweep made them
    search: Optional[dict[str, Any]] = None  # what the searcher's saved state says (SearcherKind.saved_summary)


def alive_nodes() -> list[dict[str, float]]:
    """The total resources of every live node of the connected cluster."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def run_sweep(
    spec: JobSpec,
    run_dir: str,
    task: Task,
    *,
    progress: bool = True,
    resume: bool = False,
    heartbeat: Optional[Callable[[], None]] = None,
    heartbeat_interval_s: float = 10.0,
) -> SweepOutcome:
    """Run the ASHA sweep of ``spec`` on the connected Ray cluster; ``run_dir`` is a local path or URI.

    Ray must already be connected (see ``distsearch.cluster.connect``); ``task`` is the one
    ``validate.check_job(spec)`` built. ``progress`` prints ``ProgressView``'s line to stdout
    instead of Tune's status tables. Trials that fail are recorded, not raised.

    ``resume`` continues the sweep an earlier driver of ``run_dir`` left unfinished, from its
    ledger and checkpoints alone (``distsearch.sweep.resume``): trials that ended stay ended,
    unfinished trials go on under their ids from their latest Ray Train checkpoint, new trials
    are drawn where the search stopped, and ASHA's rungs are refilled from the reports stored
    with the checkpoints. ``heartbeat`` is called every ``heartbeat_interval_s``
    while Tune runs.
    """
    plan = build_plan(spec)
    nodes = alive_nodes()
    concurrency = planning.plan_concurrency(spec, nodes)
    # Spares need the pinned Ray's raylet call (distsearch._ray): none on another release.
    spare_plan = planning.resolve_spares(spec, nodes, concurrency) if door.VOUCHED else planning.NO_SPARES
    splits = splits_once(task, spec.seed)  # before the put: a task may set what splitting learns (e.g. target scale)
    # Workers get no test rows: the test split is touched once, by distsearch.select.evaluate, for the best model.
    data_ref = ray.put((task, splits.without_test()))  # owned by this driver for the whole sweep
    prior = load_prior(run_dir) if resume else None
    ledger_dir = storage.join(run_dir, C.LEDGER_DIR)
    recorder = ResultRecorder(spec.metric, ledger_dir, prior)
    h = spec.harness
    ended = [t for t, r in prior.ledger.items() if r.get(C.ENDED_AT)] if prior else []
    scheduler = plan.make_scheduler(prior.results_by_trial(plan.result_metrics()) if prior else None, ended)
    reaper = cleanup.WorkerGroupReaper(
        h.release_timeout_s,
        actors_outlive_trials=h.reuses_trial_actors,
        groups_outlive_trials=h.reuses_worker_groups,
        paused=plan.scheduler.pauses(scheduler),
    )
    budget = SweepBudget(
        spec.budget.max_failed_trials,
        failed=recorder.errors,
        time_s=spec.budget.time_s,
        worker_epochs=spec.budget.worker_epochs,
        prior_epochs=prior.epoch_rows if prior else (),
    )
    callbacks = [recorder, reaper, budget, CSVLoggerCallback(), JsonLoggerCallback(), TensorBoardLogger()]
    callbacks += [ProgressView(spec, prior=prior, scheduler=scheduler)] if progress else []
    callbacks += [Heartbeat(heartbeat, heartbeat_interval_s)] if heartbeat else []
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            job=spec.to_dict(),
            train_storage=storage.join(run_dir, C.TRAIN_DIR),
            data=[data_ref],
            ledger_dir=ledger_dir,
            concurrency=concurrency,
            spare_plan=spare_plan,
        ),
        trial_actor_resources(spec),
    )
    env = plan.tune_env(concurrency)
    if prior:  # a new Tune experiment that goes on from the ledger: see distsearch.sweep.resume
        resumed = plan.resume_searcher(concurrency, prior.ledger, prior.results_by_trial(plan.result_metrics()), storage.join(run_dir, C.TUNE_DIR))
        search_alg = plan.limit_search(
            ray_tune.LedgerResume(resumed.searcher, resumed.carried, resumed.ended, resumed.new_trials), scheduler, concurrency
        )
        # Tune keeps up to 200 trials pending for its own generator alone; a wrapped one gets 1.
        env = {**env, "TUNE_MAX_PENDING_TRIALS_PG": str(concurrency)}
    else:
        search_alg = plan.make_search(concurrency, scheduler)
    tuner = tune.Tuner(
        trainable,
        param_space=plan.param_space(),
        tune_config=tune.TuneConfig(
            num_samples=spec.budget.num_trials,
            search_alg=search_alg,
            scheduler=scheduler,
            reuse_actors=h.reuses_trial_actors,
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
    ray_tune.keep_credentials_out_of_runtime_envs()  # before the first trial actor's runtime env is made
    start_first_spares(spec, concurrency, spare_plan)  # first: the raylet drops spares it has no start slot for
    if not h.trains_in_trial_actor:  # a trial trained in its actor makes no Ray Train run
        ray_train.start_train_coordinator()
    t0 = time.monotonic()
    try:
        with cleanup.released_on_stop(reaper), environment({**TUNE_DRIVER_ENV, **env}), plan.running():
            ray_tune.fit(tuner)
    finally:
        reaper.finish()
    wall = time.monotonic() - t0
    leftover = cleanup.sweep_job_pgs()
    try:
        actors = cleanup.live_train_actors()
    except Exception as e:  # noqa: BLE001 - leak accounting must never fail the run
        actors = [f"unknown: {e}"]
    return SweepOutcome(
        trial_rows=trial_rows(spec, recorder, reaper.release_seconds, sweep_ended_at=budget.ended_at),
        epoch_rows=recorder.epoch_rows,
        max_concurrent_trials=concurrency,
        cluster_resources=dict(ray.cluster_resources()),
        wall_seconds=wall,
        leaks={"placement_groups_swept_at_end": leftover, "train_actors_alive_at_end": actors, "unreleased_by_trial": reaper.unreleased},
        error_budget_exceeded=budget.exceeded,
        out_of_time=budget.ran_out_of_time,
        out_of_worker_epochs=budget.ran_out_of_epochs,
        worker_epochs=budget.spent_worker_epochs,
        splits=splits,
        search=plan.saved_summary(storage.join(run_dir, C.TUNE_DIR)),
    )
