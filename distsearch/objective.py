"""The metric's direction: which value is better, the best trial, and the order of a ranking.

Every place that compares metric values (the progress line, trial rows, model selection, the
best checkpoint, the figures, the report and run comparison) asks an ``Objective``, so "better"
is decided once. A failed trial, or one without a finite metric, is never the best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, TypeVar

import pandas as pd

from . import constants as C

T = TypeVar("T")


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

    def best_value(self, values: pd.Series) -> Optional[float]:
        """The best of ``values`` (NaN ignored), or None if there is none."""
        values = values.dropna()
        if values.empty:
            return None
        return float(values.min() if self.mode == "min" else values.max())

    def rank(self, frame: pd.DataFrame, column: str) -> pd.DataFrame:
        """``frame`` sorted best first by ``column``: missing values last, order of equals kept."""
        return frame.sort_values(column, ascending=self.ascending, na_position="last", kind="stable")

    def rank_trials(self, trials: pd.DataFrame) -> pd.DataFrame:
        """Trials best first by ``best_metric``, failed trials after every other."""
        failed = trials[C.STATUS] == C.STATUS_ERROR
        return pd.concat([self.rank(trials[~failed], C.BEST_METRIC), self.rank(trials[failed], C.BEST_METRIC)])

    def best_trial(self, trials: pd.DataFrame) -> Optional[pd.Series]:
        """The row of the best trial that did not fail and has a metric, or None."""
        ok = trials[(trials[C.STATUS] != C.STATUS_ERROR) & trials[C.BEST_METRIC].notna()]
        return None if ok.empty else self.rank(ok, C.BEST_METRIC).iloc[0]

    def within(self, value: float, best: float, fraction: float) -> bool:
        """Whether ``value`` is at most ``fraction`` of ``|best|`` worse than ``best``."""
        slack = abs(best) * fraction
        return value <= best + slack if self.mode == "min" else value >= best - slack
