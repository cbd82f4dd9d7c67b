"""One job end to end: validate once, choose or resume a run, connect, sweep, write, evaluate.

The program that runs a job is the Ray *driver*: this module is its top, above ``sweep`` (the Ray
side), ``results`` (files) and ``evaluate`` (the test split); the CLI and the Python API call it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import torch

from . import cluster, lease, storage
from . import constants as C
from .errors import ResourcesMissing, RunChoiceError, StorageFailed, UserError
from .results import files as results
from .results import front
from .search.plan import build_plan
from .select import evaluate
from .select.prune import prune_checkpoints
from .space import names as space
from .spec.model import NAME_RE, JobSpec
from .sweep import planning
from .tasks import Task
from .validate import check_job

log = logging.getLogger("distsearch")


@dataclass
class RunResult:
    run_dir: str
    best: Optional[dict[str, Any]]
    status_counts: dict[str, int]
    ensemble: Optional[dict[str, Any]] = None
    error_budget_exceeded: bool = False
    resumed: bool = False


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _versions() -> dict[str, str]:
    import ray
    import torch

    return {"distsearch": C.VERSION, "ray": ray.__version__, "torch": torch.__version__, "python": platform.python_version()}


# How a run is started: "auto" resumes the newest unfinished run of the same job and spec whose
# driver is gone, else starts a new one; "require" resumes or fails; "never" always starts anew.
RESUME_MODES = ("auto", "require", "never")


def _normalised(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


_FINISHED = "it finished at"  # the reason that needs no warning: a finished run is simply not resumed
_DAMAGED = "its ledger is damaged"  # the reason that is never passed over for a new run: the user decides
_DAMAGED_FIX = (
    "fix: put back that file from a copy and run the same command, or start afresh with --new-run; the run's folder is left "
    "as it is (its train/ keeps every checkpoint it wrote)"
)


def why_not_resumable(out: str, spec: JobSpec, meta: Optional[dict[str, Any]] = None) -> Optional[str]:
    """None if the run at ``out`` can be resumed with ``spec``; otherwise the reason, in words.
    ``meta`` is its run.json, when the caller has read it."""
    meta = meta if meta is not None else storage.read_json(storage.join(out, C.RUN_FILE))
    if meta.get("finished_at"):
        return f"{_FINISHED} {meta['finished_at']}"
    if _normalised(meta.get("job")) != _normalised(spec.to_dict()):
        old, new = _normalised(meta.get("job")) or {}, _normalised(spec.to_dict())
        fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"it was started with a different job spec (fields {', '.join(fields)} differ)"
    current, beat = lease.owner(out, meta)
    if current is not None and lease.alive(current, beat):
        return f"its driver ({lease.describe(current)}) is still running"
    from .sweep.resume import DamagedLedger, has_ledger, read_ledger

    if not has_ledger(out):
        return "its driver stopped before any trial started"
    try:
        read_ledger(out)
    except DamagedLedger as e:
        return f"{_DAMAGED}: {e}"
    return None


def newest_run(spec: JobSpec) -> Optional[tuple[str, dict[str, Any]]]:
    """(id, run.json) of the run of ``spec``'s job that started last; runs whose run.json cannot
    be read are skipped with a warning naming the file."""
    runs = []
    for run_id in results.run_ids(spec.storage, spec.name):
        path = storage.join(results.run_dir(spec.storage, spec.name, run_id), C.RUN_FILE)
        try:
            meta = storage.read_json(path)
            runs.append((datetime.fromisoformat(meta["started_at"]).timestamp(), run_id, meta))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("skipping run %s: its %s cannot be read (%s: %s); fix: repair or delete %s", run_id, C.RUN_FILE, type(e).__name__, e, path)
    return max(runs, key=lambda r: (r[0], r[1]))[1:] if runs else None


def choose_run(spec: JobSpec, run_id: Optional[str] = None, resume: str = "auto") -> tuple[str, bool]:
    """``(run id, resume?)`` for ``spec`` under ``resume`` (one of ``RESUME_MODES``).

    An explicit ``run_id`` of an existing run resumes it unless ``resume == "never"``; a
    ``run_id`` that exists but cannot be resumed is an error, never overwritten. Without one,
    the run of the job that started last is the candidate. Raises ``ValueError`` with the reason.
    Only decides: ``take_run`` makes it this driver's."""
    if resume not in RESUME_MODES:
        raise RunChoiceError(f"resume: got {resume!r}; use one of {', '.join(RESUME_MODES)}")
    if run_id is not None:
        if not isinstance(run_id, str) or not NAME_RE.fullmatch(run_id):
            raise RunChoiceError(
                f"--run-id: got {run_id!r}; a run id is one folder name under the job's storage; fix: use letters, digits, _ . - (up to 64, starting with a letter or digit)"
            )
        out = results.run_dir(spec.storage, spec.name, run_id)
        if not storage.exists(storage.join(out, C.RUN_FILE)):
            if resume == "require":
                raise RunChoiceError(f"--resume: there is no run {run_id!r} of job {spec.name!r} under {spec.storage}")
            return run_id, False
        if resume == "never":
            raise RunChoiceError(f"--run-id: run {run_id!r} already exists under {out}; choose another id or drop --new-run to resume it")
        reason = why_not_resumable(out, spec)
        if reason:
            fix = _DAMAGED_FIX if reason.startswith(_DAMAGED) else "fix: choose another --run-id"
            raise RunChoiceError(f"--run-id: run {run_id!r} cannot be resumed: {reason}; {fix}")
        return run_id, True
    if resume != "never":
        newest = newest_run(spec)
        if newest:
            newest_id, meta = newest
            reason = why_not_resumable(results.run_dir(spec.storage, spec.name, newest_id), spec, meta)
            if reason is None:
                return newest_id, True
            if resume == "require" or reason.startswith(_DAMAGED):
                raise RunChoiceError(
                    f"the newest run of job {spec.name!r}, {newest_id}, cannot be resumed: {reason}"
                    + (f"; {_DAMAGED_FIX}" if reason.startswith(_DAMAGED) else "")
                )
            if not reason.startswith(_FINISHED):
                log.warning("not resuming run %s: %s; starting a new run", newest_id, reason)
        elif resume == "require":
            raise RunChoiceError(f"--resume: job {spec.name!r} has no run under {spec.storage} to resume")
    return new_run_id(), False


def take_run(spec: JobSpec, run_id: str, resuming: bool, explicit_id: bool = False) -> dict[str, Any]:
    """Make the run ``choose_run`` chose this driver's; returns this driver's record for run.json.
    Of drivers that chose the same run at once, exactly one gets it; the others raise
    ``ValueError`` saying which driver did. A new run with a generated id has no rival."""
    out = results.run_dir(spec.storage, spec.name, run_id)
    driver = lease.me()
    meta = storage.read_json(storage.join(out, C.RUN_FILE)) if resuming else None
    try:
        generation = lease.take(out, driver, meta, settle_s=None if resuming or explicit_id else 0.0)
    except lease.RunTaken as e:
        raise RunChoiceError(
            f"run {run_id} of job {spec.name!r} is not resumed by this driver: {e}; fix: wait for that driver to finish, "
            "or pass --new-run to start a separate run"
        ) from None
    return {**driver, "generation": generation}


def check_local_gpus(spec: JobSpec, address: Optional[str]) -> None:
    """For a GPU job on the embedded Ray (no address): this machine's CUDA devices fit one trial,
    or ``ResourcesMissing`` names the field and the fix, before Ray starts."""
    import ray

    if not spec.scaling.use_gpu or address or os.environ.get(C.ADDRESS_ENV) or ray.is_initialized():
        return
    import torch

    have, need = torch.cuda.device_count(), planning.per_trial_resources(spec)["GPU"]
    if have < need:
        raise ResourcesMissing(
            f"scaling.use_gpu: one trial needs {need:g} GPU(s) ({spec.scaling.num_workers} workers x {spec.scaling.gpus_per_worker:g}), "
            f"but this machine has {have} CUDA device(s) and no cluster address was given; fix: set scaling.use_gpu: false "
            f"(CPU and gloo), or run with --address on a cluster with GPUs"
        )


def run_job(
    spec: JobSpec,
    *,
    task: Optional[Task] = None,
    address: Optional[str] = None,
    run_id: Optional[str] = None,
    dashboard: bool = False,
    progress: bool = False,
    worker_logs: bool = False,
    resume: str = "never",
    on_finished: Optional[Callable[[str], None]] = None,
) -> RunResult:
    """Run ``spec`` and write ``<storage>/<name>/<run id>/``; Ray is started here only if needed.

    ``resume`` (see ``choose_run``) lets a second call carry on a run whose driver died: trials
    that ended are not rerun, unfinished ones go on from their latest checkpoint, and the files
    hold one row per trial and per (trial, epoch). The Python API defaults to "never"; the CLI
    to "auto". ``progress`` prints one live progress line; ``worker_logs`` forwards the Train
    workers' output (otherwise in Ray's log files, /tmp/ray/session_latest/logs). ``task`` is
    ``validate.check_job(spec)``'s, when the caller has validated the job already; else it is built
    here, before Ray starts. ``on_finished`` is called with the run folder once its files are
    final, before the Ray started here shuts down: the CLI starts the report there, so that the
    figures are drawn while Ray's processes end rather than after."""
    # the dry run, the splits and the selected models' builds draw from torch's global
    # generator; the caller's is put back as it was
    with cluster.environment_restored(), torch.random.fork_rng(devices=[]):
        try:
            return _run_job(spec, task, address, run_id, dashboard, progress, worker_logs, resume, on_finished)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as e:
            failed = storage.failure(e)
            if failed is None:
                raise
            raise StorageFailed(spec.storage, failed) from e


def _run_job(
    spec: JobSpec,
    task: Optional[Task],
    address: Optional[str],
    run_id: Optional[str],
    dashboard: bool,
    progress: bool,
    worker_logs: bool,
    resume: str,
    on_finished: Optional[Callable[[str], None]],
) -> RunResult:
    task = task if task is not None else check_job(spec)  # before Ray starts: a bad job costs seconds, not a cluster start
    explicit_id = run_id is not None
    run_id, resuming = choose_run(spec, run_id, resume)
    check_local_gpus(spec, address)  # before Ray starts, and before a run folder is written
    out = results.run_dir(spec.storage, spec.name, run_id)
    started_here = cluster.connect(address, dashboard=dashboard, worker_logs=worker_logs)
    try:
        import ray

        from .sweep.run import alive_nodes

        planning.plan_concurrency(spec, alive_nodes())  # the cluster fits a trial: checked before the run folder is written
        me = take_run(spec, run_id, resuming, explicit_id)

        now = datetime.now(timezone.utc).isoformat()
        if resuming:
            meta = storage.read_json(storage.join(out, C.RUN_FILE))
            meta.setdefault("resumes", []).append({"at": now, "previous_driver": meta.get("driver")})
            log.info("resuming run %s (its driver is gone; ended trials are kept, the rest go on from their checkpoints)", run_id)
        else:
            meta = {
                "run_id": run_id,
                "job": spec.to_dict(),
                # run.json's keys are sorted; Tune draws a space's parameters and options in the job's
                # own order, so a replay of this run (distsearch.simulate) needs the space as written.
                "space_json": json.dumps(spec.to_dict()["space"]),
                "versions": _versions(),
                "cluster_resources": dict(ray.cluster_resources()),
                "started_at": now,
                "schema_version": C.SCHEMA_VERSION,
                "search": build_plan(spec).describe(),
            }
        meta.update(driver=me, heartbeat_at=now)
        run_file = storage.join(out, C.RUN_FILE)
        storage.write_json(run_file, meta)

        def beat() -> None:
            storage.write_json(run_file, {**meta, "heartbeat_at": datetime.now(timezone.utc).isoformat()})

        from .sweep import run_sweep

        outcome = run_sweep(spec, out, task, progress=progress, resume=resuming, heartbeat=beat, heartbeat_interval_s=lease.HEARTBEAT_INTERVAL_S)
        trials = results.trials_frame(outcome.trial_rows, space.param_types(spec.space))
        epochs = results.epochs_frame(outcome.epoch_rows)
        trials, pareto_front = front.ranked(spec, trials, epochs)
        results.write_tables(out, trials, epochs)
        best, ensemble = evaluate.evaluate_run(spec, task, outcome.splits, trials, epochs, out)
        pareto_front = evaluate.score_front(spec, task, outcome.splits, epochs, pareto_front)
        # after the selected models are saved: nothing later reads the checkpoints it drops
        checkpoints = prune_checkpoints(out, spec.checkpointing.keep_after_sweep, trials, best, ensemble, [p[C.TRIAL_ID] for p in pareto_front])
        counts = {s: int((trials[C.STATUS] == s).sum()) for s in C.STATUSES}
        meta.update(
            {
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "sweep_wall_seconds": outcome.wall_seconds,
                "max_concurrent_trials": outcome.max_concurrent_trials,
                "status_counts": counts,
                "trials_ran": int(len(trials) - counts[C.STATUS_NOT_STARTED]),
                "leaks": outcome.leaks,
                "error_budget_exceeded": outcome.error_budget_exceeded,
                "out_of_time": outcome.out_of_time,
                "out_of_worker_epochs": outcome.out_of_worker_epochs,
                "worker_epochs": outcome.worker_epochs,
                "checkpoints": checkpoints,
            }
        )
        if spec.objectives:
            meta["front"] = pareto_front
        if outcome.search:
            meta["search"] = {**meta.get("search", {}), **outcome.search}
        storage.write_json(run_file, meta)
        if on_finished is not None:
            on_finished(out)
        return RunResult(
            run_dir=out, best=best, ensemble=ensemble, status_counts=counts, error_budget_exceeded=outcome.error_budget_exceeded, resumed=resuming
        )
    finally:
        if started_here:
            cluster.shutdown()
