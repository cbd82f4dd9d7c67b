"""FIFO: every trial runs to max_epochs (``asha.enabled: false``), as plain random search does."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from .kinds import PriorMetrics, SchedulerKind


class FifoScheduler(SchedulerKind):
    stops_early = False
    summary_format = "{searcher} ({scheduler})"

    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
