"""One job, start to finish: validate, connect, sweep, write the run, test the best model once.

Sits above ``driver`` (Ray) and ``results`` (files); the CLI and the Python API call it.
"""

from __future__ import annotations

import logging
import platform
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from . import __version__
from . import constants as C
from . import driver, results, space, storage
from .spec import JobSpec
from .tasks import check_job

log = logging.getLogger("distsearch")


@dataclass
class RunResult:
    run_dir: str
    best: Optional[dict[str, Any]]
    status_counts: dict[str, int]
    error_budget_exceeded: bool = False


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _versions() -> dict[str, str]:
    import ray
    import torch

    return {"distsearch": __version__, "ray": ray.__version__, "torch": torch.__version__, "python": platform.python_version()}


def select_best(trials, mode: str):
    """The row of the best non-error trial by ``best_metric``, or None if no trial reported."""
    ok = trials[(trials[C.STATUS] != C.STATUS_ERROR) & trials[C.BEST_METRIC].notna()]
    if ok.empty:
        return None
    return ok.sort_values(C.BEST_METRIC, ascending=(mode == "min"), kind="stable").iloc[0]


def run_job(
    spec: JobSpec, *, address: Optional[str] = None, run_id: Optional[str] = None, dashboard: bool = False,
    progress: bool = False, worker_logs: bool = False,
) -> RunResult:
    """Run ``spec`` and write ``<storage>/<name>/<run id>/``; Ray is started here only if needed.

    ``progress`` prints one live progress line; ``worker_logs`` forwards the Train workers'
    output (otherwise in Ray's log files, /tmp/ray/session_latest/logs)."""
    task = check_job(spec)  # before Ray starts: a bad job costs seconds, not a cluster start
    run_id = run_id or new_run_id()
    out = results.run_dir(spec.storage, spec.name, run_id)
    started_here = driver.connect(address, dashboard=dashboard, worker_logs=worker_logs)
    try:
        import ray

        meta: dict[str, Any] = {
            "run_id": run_id, "job": spec.to_dict(), "versions": _versions(),
            "cluster_resources": dict(ray.cluster_resources()), "started_at": datetime.now(timezone.utc).isoformat(),
            "schema_version": C.SCHEMA_VERSION,
        }
        storage.write_json(storage.join(out, C.RUN_FILE), meta)
        outcome = driver.run_sweep(spec, out, task=task, progress=progress)
        trials = results.trials_frame(outcome.trial_rows, space.param_types(spec.space))
        epochs = results.epochs_frame(outcome.epoch_rows)
        results.write_tables(out, trials, epochs)
        best = _test_best(spec, task, trials, epochs)
        if best is not None:
            storage.write_json(storage.join(out, C.BEST_FILE), best)
        counts = {s: int((trials[C.STATUS] == s).sum()) for s in C.STATUSES}
        meta.update({
            "finished_at": datetime.now(timezone.utc).isoformat(), "sweep_wall_seconds": outcome.wall_seconds,
            "max_concurrent_trials": outcome.max_concurrent_trials, "status_counts": counts, "leaks": outcome.leaks,
            "error_budget_exceeded": outcome.error_budget_exceeded,
        })
        storage.write_json(storage.join(out, C.RUN_FILE), meta)
        return RunResult(run_dir=out, best=best, status_counts=counts, error_budget_exceeded=outcome.error_budget_exceeded)
    finally:
        if started_here:
            import ray

            ray.shutdown()


def _test_best(spec: JobSpec, task, trials, epochs) -> Optional[dict[str, Any]]:
    """Restore the best trial's best checkpoint and score it on the test split, once.

    The same model is scored on the train and validation splits too, in eval mode, so the
    overfitting gap (``train`` against ``val``) sits beside the test score in best.json.
    """
    row = select_best(trials, spec.mode)
    if row is None:
        log.warning("no trial reported %s; nothing to test", spec.metric)
        return None
    trial_id = row[C.TRIAL_ID]
    ckpt = results.best_checkpoint(epochs, trial_id, spec.metric, spec.mode)
    if ckpt is None:
        log.warning("trial %s has no checkpoint left to test", trial_id)
        return None
    t0 = time.perf_counter()
    state = results.load_state(ckpt[C.CHECKPOINT_PATH])
    params = state["params"]
    scores = driver.evaluate_checkpoint(task, task.splits(spec.seed), params, state)
    by_split = {s: {k: v for k, v in scores.items() if k.startswith(f"{s}_")} for s in ("train", "val", "test")}
    return {
        C.TRIAL_ID: trial_id, "params": params, "metric": spec.metric, "mode": spec.mode,
        "val_metric": float(ckpt[spec.metric]), C.EPOCH: int(ckpt[C.EPOCH]), C.CHECKPOINT_PATH: ckpt[C.CHECKPOINT_PATH],
        "test": by_split["test"], "final_train": by_split["train"], "final_val": by_split["val"], "test_seconds": time.perf_counter() - t0,
    }
