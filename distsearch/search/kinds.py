"""What a search plan asks of a searcher and of a scheduler: the two small interfaces to implement.

A searcher or scheduler is one module with one class deriving from these, and one entry in
``distsearch.registry``. Each is built with the job's spec; Ray Tune's objects are made only by
``build``, so a plan is cheap to make and holds no Ray state.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Mapping, Optional

from ..spec.model import JobSpec

#: {trial id: [(epoch, metric), ...]} that earlier drivers of a run saw, for a resumed scheduler.
PriorMetrics = Mapping[str, list[tuple[int, float]]]


class SearcherKind:
    """A searcher: who proposes each trial's parameters."""

    #: Whether it samples the job's space itself (Tune's ``param_space`` stays empty) or draws
    #: from Tune's domains (``Param.tune_domain``).
    samples_itself: bool = True
    #: Whether a trial must wait until Tune's saved state lists it before it trains: a searcher's
    #: trial ids are random, so a trial the state does not list would be lost to a resumed driver.
    waits_for_saved_state: bool = True
    #: The ``search.*`` lists it reads (``warm_start``, ``points_to_evaluate``); a job that gives
    #: another is refused at validation.
    takes: tuple[str, ...] = ()

    def __init__(self, spec: JobSpec, name: str):
        self.spec = spec
        self.name = name

    def build(self, concurrency: int) -> Any:
        """The Tune searcher (``ray.tune.search.Searcher`` or a generator), at most ``concurrency`` trials at once."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """What run.json records of its settings, beside its name and the seed."""
        return {}

    def settings_line(self) -> str:
        """Its settings as the report's words, or ''."""
        return ""

    def notes(self) -> list[str]:
        """Warnings validation prints about this job's search (e.g. it would never model the results)."""
        return []

    def tune_env(self, concurrency: int) -> dict[str, str]:
        """Environment variables Tune's driver must read while this searcher runs."""
        # Tune keeps one trial pending at a time for a Searcher (not a generator), so slots freed at
        # once would fill one by one; the searcher's own limit is the job's concurrency. A trial
        # that waits for the saved state (waits_for_saved_state) needs Tune to save often.
        return {"TUNE_MAX_PENDING_TRIALS_PG": str(concurrency), "TUNE_GLOBAL_CHECKPOINT_S": "1"}

    def running(self) -> ContextManager[None]:
        """A context the sweep holds while the searcher runs (a library's log level, say), undone after it."""
        return contextlib.nullcontext()

    def saved_summary(self, tune_dir: str) -> Optional[dict[str, Any]]:
        """After the sweep: how the searcher was told each trial ended, from its saved state; None if it keeps none."""
        return None


class SchedulerKind:
    """A scheduler: who decides which trials go on."""

    #: Whether it may end a trial before max_epochs (what a trial's end is called in the report).
    stops_early: bool = True
    #: How the plan's summary names the searcher and this scheduler: ``tpe+asha``.
    summary_format: str = "{searcher}+{scheduler}"

    def __init__(self, spec: JobSpec, name: str):
        self.spec = spec
        self.name = name

    def build(self, prior: Optional[PriorMetrics] = None) -> Any:
        """The Tune ``TrialScheduler``; ``prior`` replays what earlier drivers of the run saw."""
        raise NotImplementedError
