"""The metric's direction: which value is better, the best trial, and the order of a ranking.

Every place that compares metric values (the progress line, trial rows, model selection, the
best checkpoint, the figures, the report and run comparison) asks an ``Objective``, so "better"
is decided once. A failed trial, or one without a finite metric, is never the best. Ties are
broken by one rule: the metric, then the validation loss, then the earlier epoch, then the
trial id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, TypeVar

if TYPE_CHECKING:  # imported where frames are ranked: Train workers use this module and import no pandas
    import pandas as pd

from .. import constants as C

T = TypeVar("T")

#: What tells equal metrics apart: the validation loss, which every task reports.
TIEBREAK_LOSS = "val_loss"
_LOSS_AT_BEST = "_val_loss_at_best_epoch"


def trailing_means(values: Sequence[Optional[float]], window_epochs: int) -> list[Optional[float]]:
    """Each value replaced by the mean of the finite values among it and the ``window_epochs - 1``
    before it (fewer at a curve's start), None where there is none: what selection ranks epochs
    by (``selection.smoothing_epochs``). A window of 1 gives the finite values back."""
    out: list[Optional[float]] = []
    for i in range(len(values)):
        seen = [float(v) for v in values[max(0, i - window_epochs + 1) : i + 1] if v is not None and math.isfinite(float(v))]
        out.append(sum(seen) / len(seen) if seen else None)
    return out


@dataclass(frozen=True)
class Objective:
    """``metric`` to be minimised (``mode == "min"``) or maximised (``"max"``)."""

    metric: str
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode: got {self.mode!r}; fix: set mode to min or max")

    @classmethod
    def of(cls, job: Any) -> "Objective":
        """The objective of a ``JobSpec`` or of its dict form (``run.json``'s ``job``)."""
        if isinstance(job, Mapping):
            return cls(job["metric"], job["mode"])
        return cls(job.metric, job.mode)

    @property
    def ascending(self) -> bool:
        """Sort order that puts the best first."""
        return self.mode == "min"

    def better(self, a: Optional[float], b: Optional[float]) -> bool:
        """Whether ``a`` is strictly better than ``b``; a missing or NaN value is never better, and
        anything finite beats a missing ``b``."""
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return False
        if b is None or (isinstance(b, float) and math.isnan(b)):
            return True
        return a < b if self.mode == "min" else a > b

    def best(self, items: Iterable[T], key=lambda x: x) -> Optional[T]:
        """The item whose ``key`` is best (the first of equals), or None if none has a value."""
        found: Optional[T] = None
        for item in items:
            if self.better(key(item), key(found) if found is not None else None):
                found = item
        return found

    def selection_key(self, value: float, loss: Optional[float], epoch: int, trial_id: str) -> tuple:
        """A result's place under the selection rule of ``rank_trials``, one result at a time
        (smaller is better): the metric, then the validation loss, then the earlier epoch, then the trial id."""
        missing = loss is None or (isinstance(loss, float) and math.isnan(loss))
        return (value if self.mode == "min" else -value, math.inf if missing else loss, epoch, trial_id)

    def best_value(self, values: pd.Series) -> Optional[float]:
        """The best of ``values`` (NaN ignored), or None if there is none."""
        values = values.dropna()
        if values.empty:
            return None
        return float(values.min() if self.mode == "min" else values.max())

    def rank(self, frame: pd.DataFrame, column: str, loss: Optional[str] = None, epoch: Optional[str] = None) -> pd.DataFrame:
        """``frame`` sorted best first by ``column``, missing values last. Equal values are
        ordered by the ``loss`` column (lower first), then the ``epoch`` column (earlier first),
        where given and present, then as they came."""
        keys, ascending = [column], [self.ascending]
        for tiebreak in (loss, epoch):
            if tiebreak is not None and tiebreak in frame and tiebreak != column:
                keys.append(tiebreak)
                ascending.append(True)
        return frame.sort_values(keys, ascending=ascending, na_position="last", kind="stable")

    def rank_trials(self, trials: pd.DataFrame, epochs: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """Trials best first by ``best_metric``, failed trials after every other. Equal metrics
        (common on small validation sets: several trials at accuracy 1.0) are ordered by the
        validation loss at each trial's best epoch, when ``epochs`` holds it, then by the earlier
        best epoch, then by trial id: the same run always ranks the same way."""
        frame = trials.sort_values(C.TRIAL_ID, kind="stable")
        if epochs is not None and TIEBREAK_LOSS in epochs and C.BEST_EPOCH in frame:
            at_best = epochs[[C.TRIAL_ID, C.EPOCH, TIEBREAK_LOSS]].rename(columns={C.EPOCH: C.BEST_EPOCH, TIEBREAK_LOSS: _LOSS_AT_BEST})
            frame = frame.merge(at_best.astype({C.BEST_EPOCH: frame[C.BEST_EPOCH].dtype}), on=[C.TRIAL_ID, C.BEST_EPOCH], how="left")
        failed = frame[C.STATUS] == C.STATUS_ERROR
        parts = [
            self.rank(frame[~failed], C.BEST_METRIC, _LOSS_AT_BEST, C.BEST_EPOCH),
            self.rank(frame[failed], C.BEST_METRIC, _LOSS_AT_BEST, C.BEST_EPOCH),
        ]
        import pandas as pd

        return pd.concat(parts).drop(columns=[_LOSS_AT_BEST], errors="ignore")

    def best_trial(self, trials: pd.DataFrame, epochs: Optional[pd.DataFrame] = None) -> Optional[pd.Series]:
        """The row of the best trial that did not fail and has a metric, or None; ties as in ``rank_trials``."""
        ok = trials[(trials[C.STATUS] != C.STATUS_ERROR) & trials[C.BEST_METRIC].notna()]
        return None if ok.empty else self.rank_trials(ok, epochs).iloc[0]

    def within(self, value: float, best: float, fraction: float) -> bool:
        """Whether ``value`` is at most ``fraction`` of ``|best|`` worse than ``best``."""
        slack = abs(best) * fraction
        return value <= best + slack if self.mode == "min" else value >= best - slack
