"""One job end to end: validate once, choose or resume a run, connect, sweep, write, evaluate.

The program that runs a job is the Ray *driver*: this module is its top, above ``sweep`` (the Ray
side), ``results`` (files) and ``evaluate`` (the test split); the CLI and the Python API call it.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from . import __version__, cluster, evaluate, results, space, storage
from . import constants as C
from .spec import JobSpec
from .tasks import Task, check_job

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

    return {"distsearch": __version__, "ray": ray.__version__, "torch": torch.__version__, "python": platform.python_version()}


# How a run is started: "auto" resumes the newest unfinished run of the same job and spec whose
# driver is gone, else starts a new one; "require" resumes or fails; "never" always starts anew.
RESUME_MODES = ("auto", "require", "never")
# A driver on another host counts as gone once its heartbeat is this old (seconds): three beats.
HEARTBEAT_INTERVAL_S = 10.0
HEARTBEAT_STALE_S = 3 * HEARTBEAT_INTERVAL_S


def _normalised(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _driver_gone(meta: dict[str, Any], now: float) -> bool:
    """Whether the driver that wrote ``meta`` has stopped: on this host, its process is gone;
    elsewhere, its heartbeat in run.json is older than ``HEARTBEAT_STALE_S``."""
    drv = meta.get("driver") or {}
    if drv.get("host") == socket.gethostname() and drv.get("pid"):
        try:
            os.kill(int(drv["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    beat = meta.get("heartbeat_at") or meta.get("started_at")
    return beat is None or now - datetime.fromisoformat(beat).timestamp() > HEARTBEAT_STALE_S


_FINISHED = "it finished at"  # the reason that needs no warning: a finished run is simply not resumed


def why_not_resumable(out: str, spec: JobSpec) -> Optional[str]:
    """None if the run at ``out`` can be resumed with ``spec``; otherwise the reason, in words."""
    meta = storage.read_json(storage.join(out, C.RUN_FILE))
    if meta.get("finished_at"):
        return f"{_FINISHED} {meta['finished_at']}"
    if _normalised(meta.get("job")) != _normalised(spec.to_dict()):
        old, new = _normalised(meta.get("job")) or {}, _normalised(spec.to_dict())
        fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"it was started with a different job spec (fields {', '.join(fields)} differ)"
    if not _driver_gone(meta, time.time()):
        drv = meta.get("driver") or {}
        return f"its driver (pid {drv.get('pid')} on {drv.get('host')}) is still running"
    from .sweep.resume import has_sweep_state

    if not has_sweep_state(out):
        return "its driver stopped before Tune saved any sweep state"
    return None


def choose_run(spec: JobSpec, run_id: Optional[str] = None, resume: str = "auto") -> tuple[str, bool]:
    """``(run id, resume?)`` for ``spec`` under ``resume`` (one of ``RESUME_MODES``).

    An explicit ``run_id`` of an existing run resumes it unless ``resume == "never"``; a
    ``run_id`` that exists but cannot be resumed is an error, never overwritten. Without one,
    the newest run of the job is the candidate. Raises ``ValueError`` with the reason."""
    if resume not in RESUME_MODES:
        raise ValueError(f"resume: got {resume!r}; use one of {', '.join(RESUME_MODES)}")
    if run_id is not None:
        out = results.run_dir(spec.storage, spec.name, run_id)
        if not storage.exists(storage.join(out, C.RUN_FILE)):
            if resume == "require":
                raise ValueError(f"--resume: there is no run {run_id!r} of job {spec.name!r} under {spec.storage}")
            return run_id, False
        if resume == "never":
            raise ValueError(f"--run-id: run {run_id!r} already exists under {out}; choose another id or drop --new-run to resume it")
        reason = why_not_resumable(out, spec)
        if reason:
            raise ValueError(f"--run-id: run {run_id!r} cannot be resumed: {reason}; choose another --run-id")
        return run_id, True
    if resume != "never":
        ids = results.run_ids(spec.storage, spec.name)
        if ids:
            reason = why_not_resumable(results.run_dir(spec.storage, spec.name, ids[-1]), spec)
            if reason is None:
                return ids[-1], True
            if resume == "require":
                raise ValueError(f"--resume: the newest run of job {spec.name!r}, {ids[-1]}, cannot be resumed: {reason}")
            if not reason.startswith(_FINISHED):
                log.warning("not resuming run %s: %s; starting a new run", ids[-1], reason)
        elif resume == "require":
            raise ValueError(f"--resume: job {spec.name!r} has no run under {spec.storage} to resume")
    return new_run_id(), False


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
) -> RunResult:
    """Run ``spec`` and write ``<storage>/<name>/<run id>/``; Ray is started here only if needed.

    ``resume`` (see ``choose_run``) lets a second call carry on a run whose driver died: trials
    that ended are not rerun, unfinished ones go on from their latest checkpoint, and the files
    hold one row per trial and per (trial, epoch). The Python API defaults to "never"; the CLI
    to "auto". ``progress`` prints one live progress line; ``worker_logs`` forwards the Train
    workers' output (otherwise in Ray's log files, /tmp/ray/session_latest/logs). ``task`` is
    ``tasks.check_job(spec)``'s, when the caller has validated the job already; else it is built
    here, before Ray starts."""
    task = task if task is not None else check_job(spec)  # before Ray starts: a bad job costs seconds, not a cluster start
    run_id, resuming = choose_run(spec, run_id, resume)
    out = results.run_dir(spec.storage, spec.name, run_id)
    started_here = cluster.connect(address, dashboard=dashboard, worker_logs=worker_logs)
    try:
        import ray

        me = {"host": socket.gethostname(), "pid": os.getpid()}
        now = datetime.now(timezone.utc).isoformat()
        if resuming:
            meta = storage.read_json(storage.join(out, C.RUN_FILE))
            meta.setdefault("resumes", []).append({"at": now, "previous_driver": meta.get("driver")})
            log.info("resuming run %s (its driver is gone; ended trials are kept, the rest go on from their checkpoints)", run_id)
        else:
            meta = {
                "run_id": run_id,
                "job": spec.to_dict(),
                "versions": _versions(),
                "cluster_resources": dict(ray.cluster_resources()),
                "started_at": now,
                "schema_version": C.SCHEMA_VERSION,
            }
        meta.update(driver=me, heartbeat_at=now)
        run_file = storage.join(out, C.RUN_FILE)
        storage.write_json(run_file, meta)

        def beat() -> None:
            storage.write_json(run_file, {**meta, "heartbeat_at": datetime.now(timezone.utc).isoformat()})

        from .sweep import run_sweep

        outcome = run_sweep(spec, out, task, progress=progress, resume=resuming, heartbeat=beat, heartbeat_interval_s=HEARTBEAT_INTERVAL_S)
        trials = results.trials_frame(outcome.trial_rows, space.param_types(spec.space))
        epochs = results.epochs_frame(outcome.epoch_rows)
        results.write_tables(out, trials, epochs)
        best, ensemble = evaluate.evaluate_run(spec, task, outcome.splits, trials, epochs, out)
        counts = {s: int((trials[C.STATUS] == s).sum()) for s in C.STATUSES}
        meta.update(
            {
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "sweep_wall_seconds": outcome.wall_seconds,
                "max_concurrent_trials": outcome.max_concurrent_trials,
                "status_counts": counts,
                "leaks": outcome.leaks,
                "error_budget_exceeded": outcome.error_budget_exceeded,
                "out_of_time": outcome.out_of_time,
            }
        )
        storage.write_json(run_file, meta)
        return RunResult(
            run_dir=out, best=best, ensemble=ensemble, status_counts=counts, error_budget_exceeded=outcome.error_budget_exceeded, resumed=resuming
        )
    finally:
        if started_here:
            cluster.shutdown()
