"""A run's Parquet files as a leaderboard people can read. No Ray import."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from . import constants as C
from .results import read_run


def leaderboard(trials: pd.DataFrame, metric: str, mode: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` trials by best metric (errors last), with status, epochs and hyperparameters."""
    hp = [c for c in trials.columns if c.startswith(C.HP_PREFIX)]
    df = trials.assign(_err=trials[C.STATUS] == C.STATUS_ERROR)
    df = df.sort_values(["_err", C.BEST_METRIC], ascending=[True, mode == "min"], na_position="last", kind="stable")
    cols = [C.TRIAL_ID, C.STATUS, C.EPOCHS_COMPLETED, C.BEST_METRIC] + hp
    out = df[cols].head(top).rename(columns={C.BEST_METRIC: f"best {metric}", **{c: c[len(C.HP_PREFIX):].replace("__", ".") for c in hp}})
    return out.reset_index(drop=True)


def format_run(run: Mapping[str, Any], top: int = 10) -> str:
    """The leaderboard and the best model's test score, as text."""
    job = run["run"]["job"]
    trials = run["trials"]
    lines = [f"run {run['run'].get('run_id', '?')} of job {job['name']} ({job['task']}): {len(trials)} trials"]
    counts = trials[C.STATUS].value_counts().to_dict()
    lines.append("  " + ", ".join(f"{s}: {counts.get(s, 0)}" for s in C.STATUSES))
    if "sweep_wall_seconds" in run["run"]:
        lines.append(f"  sweep wall time: {run['run']['sweep_wall_seconds']:.1f} s, {run['run'].get('max_concurrent_trials')} trials at a time")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        lines.append(leaderboard(trials, job["metric"], job["mode"], top).to_string(index=False))
    best = run.get("best")
    if best:
        test = ", ".join(f"{k} = {v:.4f}" for k, v in best["test"].items())
        lines.append(f"best trial {best[C.TRIAL_ID]} (epoch {best[C.EPOCH]}, {best['metric']} = {best['val_metric']:.4f}); held-out test: {test}")
        if best.get("final_train"):
            # Same model, eval mode, on each split: the overfitting gap at a glance.
            both = [(k.split("_", 1)[1], v, best["final_val"].get("val_" + k.split("_", 1)[1])) for k, v in best["final_train"].items()]
            lines.append("  final train vs val: " + ", ".join(f"{m} {t:.4f} / {v:.4f}" for m, t, v in both if v is not None))
    errors = trials[trials[C.STATUS] == C.STATUS_ERROR]
    for _, r in errors.head(3).iterrows():
        lines.append(f"error in {r[C.TRIAL_ID]}: {str(r[C.ERROR]).strip().splitlines()[-1][:300]}")
    return "\n".join(lines)


def report_run(directory: str, top: int = 10) -> str:
    return format_run(read_run(directory), top)
