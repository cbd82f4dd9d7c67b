"""A multi-objective run's Pareto front: each trial's rank over its objectives, and the front itself.

Each trial is placed by its objectives at its best epoch (``best_epoch``, the epoch selection
takes by the job's metric), so the point a trial stands for is a checkpoint a user can load.
Trials that meet the job's constraints are sorted into fronts (``pareto_rank`` 0 is the Pareto
front); a trial that misses a constraint, failed, or never reported every objective has no rank
and counts as dominated. ``run.json``'s ``front`` lists the front's trials with their values.
"""

from __future__ import annotations

from typing import Any

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
    at_best = at_best[at_best[[n for n in names if n in at_best]].notna().all(axis=1)] if set(names) <= set(at_best) else at_best.iloc[0:0]
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
