"""A multi-objective run's Pareto front: each trial's rank over its objectives, and the front itself.

Each trial is placed by its objectives at its best epoch (``best_epoch``, the epoch selection
takes by the job's metric), so the point a trial stands for is a checkpoint a user can load.
Trials that meet the job's constraints are sorted into fronts (``pareto_rank`` 0 is the Pareto
front); a trial that misses a constraint, failed, or never reported every objective has no rank
and counts as dominated. ``run.json``'s ``front`` lists the front's trials with their values, and
``figure`` draws them (the report's ``front.png``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import constants as C
from ..search.pareto import as_minimised, non_dominated_ranks, violation
from ..spec.model import JobSpec
from ..spec.objectives import bounds, pairs, result_metrics


def ranked(spec: JobSpec, trials: pd.DataFrame, epochs: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """``trials`` with ``pareto_rank`` and ``dominated`` added, and the front, best by the job's
    metric first; ``trials`` as given and an empty front for a job without objectives."""
    if not spec.objectives:
        return trials, []
    objectives, names = pairs(spec.objectives), result_metrics(spec.metric, spec.objectives, spec.constraints)
    at_best = (
        trials[[C.TRIAL_ID, C.BEST_EPOCH]].dropna().merge(epochs.rename(columns={C.EPOCH: C.BEST_EPOCH}), on=[C.TRIAL_ID, C.BEST_EPOCH], how="left")
    )
    at_best = at_best[at_best[names].notna().all(axis=1)] if set(names) <= set(at_best) else at_best.iloc[0:0]
    values = [{n: float(r[n]) for n in names} for _, r in at_best.iterrows()]
    feasible = np.array([violation(v, bounds(spec.constraints)) <= 0 for v in values], dtype=bool)
    rank = pd.Series(pd.NA, index=trials.index, dtype="Int64")
    front: list[dict[str, Any]] = []
    if feasible.any():
        ids = at_best[C.TRIAL_ID].to_numpy()[feasible]
        fronts = non_dominated_ranks(as_minimised([v for v, ok in zip(values, feasible, strict=True) if ok], objectives))
        by_id = dict(zip(ids, fronts.tolist(), strict=True))
        rank = pd.Series([by_id.get(t, pd.NA) for t in trials[C.TRIAL_ID]], index=trials.index, dtype="Int64")
        kept = {t: v for t, v, ok in zip(at_best[C.TRIAL_ID], values, feasible, strict=True) if ok and by_id[t] == 0}
        epochs_of = dict(zip(trials[C.TRIAL_ID], trials[C.BEST_EPOCH], strict=True))
        front = [{C.TRIAL_ID: t, C.BEST_EPOCH: int(epochs_of[t]), **v} for t, v in kept.items()]
        sign = -1.0 if spec.mode == "max" else 1.0
        front.sort(key=lambda p: sign * p[spec.metric])
    out = trials.copy()
    out[C.PARETO_RANK] = rank
    out[C.DOMINATED] = (rank.fillna(1) > 0).astype("boolean")
    return out, front


def figure(run: Mapping[str, Any]):
    """The job's metric against its next objective, one point per trial at its best epoch: the
    front joined by a step line, dominated trials grey, trials that miss a constraint as red
    crosses; a bound on either axis dashed. None for a run without objectives."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    job = run["run"]["job"]
    if not job.get("objectives"):
        return None
    metric, modes = job["metric"], dict(pairs(job["objectives"]))
    other = next(n for n in modes if n != metric)
    trials, epochs = run["trials"], run["epochs"]
    at = trials[[C.TRIAL_ID, C.BEST_EPOCH, C.PARETO_RANK]].dropna(subset=[C.BEST_EPOCH])
    at = at.merge(epochs.rename(columns={C.EPOCH: C.BEST_EPOCH}), on=[C.TRIAL_ID, C.BEST_EPOCH], how="left").dropna(subset=[metric, other])
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    on = at[at[C.PARETO_RANK] == 0].sort_values(other)
    behind = at[at[C.PARETO_RANK] > 0]
    missed = at[at[C.PARETO_RANK].isna()]
    ax.scatter(behind[other], behind[metric], color="0.6", s=18, label="dominated")
    ax.scatter(missed[other], missed[metric], color="tab:red", marker="x", s=22, label="misses a constraint")
    ax.step(on[other], on[metric], where="post" if modes[metric] == "max" else "pre", color="tab:blue", alpha=0.6)
    ax.scatter(on[other], on[metric], color="tab:blue", s=30, zorder=3, label=f"Pareto front ({len(on)})")
    for name, b in (job.get("constraints") or {}).items():
        for bound in (b.get("min"), b.get("max")):
            seen = at[name] if name in (metric, other) and name in at else None
            # a bound far outside the trials' values would squash them into a corner: drawn only within reach
            if (
                bound is not None
                and seen is not None
                and len(seen)
                and seen.min() - (seen.max() - seen.min()) <= bound <= 2 * seen.max() - seen.min()
            ):
                (ax.axvline if name == other else ax.axhline)(bound, color="tab:red", linestyle="--", linewidth=1, label=f"{name} bound")
    values = at[other][at[other] > 0]
    if len(values) and values.max() / values.min() > 100:
        ax.set_xscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))  # plain numbers, never mathtext
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.set(xlabel=f"{other} ({modes[other]})", ylabel=f"{metric} ({modes[metric]})", title=f"{metric} against {other}, each trial at its best epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
