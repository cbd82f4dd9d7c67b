"""What selection ranks: each trial's curve as the trailing mean of its metric, and each trial's best under it.

On a validation split of a hundred rows, one lucky epoch can put a trial first and hand the test
split a checkpoint whose neighbours were all worse. With ``selection.smoothing_epochs`` above 1,
selection (the single best, the ensemble's candidates, ``load_model(run, trial=...)``) ranks
every epoch by the mean of its metric and the ones before it (``Objective``'s
``trailing_means``, which the Train workers use to choose the checkpoints they keep). The
trials and epochs as recorded stay as they are: this is a view, made where selection starts.
"""

from __future__ import annotations

import pandas as pd

from .. import constants as C
from ..search.objective import TIEBREAK_LOSS, Objective, trailing_means


def smoothed_epochs(epochs: pd.DataFrame, objective: Objective, smoothing_epochs: int) -> pd.DataFrame:
    """``epochs`` with each row's metric replaced by its trial's trailing mean over
    ``smoothing_epochs`` epochs; with 1, ``epochs`` itself."""
    metric = objective.metric
    if smoothing_epochs <= 1 or epochs.empty or metric not in epochs:
        return epochs
    view = epochs.sort_values([C.TRIAL_ID, C.EPOCH], kind="stable").copy()
    smoothed = []
    for _, curve in view.groupby(C.TRIAL_ID, sort=False)[metric]:
        smoothed += trailing_means(curve.tolist(), smoothing_epochs)
    view[metric] = pd.Series(smoothed, index=view.index, dtype="float64")
    return view


def selection_view(trials: pd.DataFrame, epochs: pd.DataFrame, objective: Objective, smoothing_epochs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``trials`` and ``epochs`` as selection sees them: the metric of each epoch row replaced by
    its trial's trailing mean over ``smoothing_epochs`` epochs, and each trial's best metric and
    best epoch taken from those means under the selection rule (the metric, then the lower
    validation loss, then the earlier epoch). With 1, both frames are returned unchanged."""
    metric = objective.metric
    view = smoothed_epochs(epochs, objective, smoothing_epochs)
    if view is epochs:
        return trials, epochs
    best = objective.rank(view[view[metric].notna()], metric, loss=TIEBREAK_LOSS if TIEBREAK_LOSS in view else None, epoch=C.EPOCH)
    best = best.drop_duplicates(C.TRIAL_ID)[[C.TRIAL_ID, metric, C.EPOCH]]
    best = best.rename(columns={metric: C.BEST_METRIC, C.EPOCH: C.BEST_EPOCH}).astype({C.BEST_EPOCH: "Int64"})
    ranked = trials.drop(columns=[C.BEST_METRIC, C.BEST_EPOCH], errors="ignore").merge(best, on=C.TRIAL_ID, how="left")
    return ranked[list(trials.columns)], view
