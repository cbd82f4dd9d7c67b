"""What a search plan asks of a searcher and of a scheduler: the two small interfaces to implement.

A searcher or scheduler is one module with one class deriving from these, and one entry in
``distsearch.registry``. Each is built with the job's spec; Ray Tune's objects are made only by
``build``, so a plan is cheap to make and holds no Ray state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Mapping, Optional, Union

from .. import constants as C
from ..spec.model import JobSpec

#: {trial id: [(epoch, metric), ...]} that earlier drivers of a run saw, for a resumed scheduler;
#: with ``objectives``, {metric: value} of each metric the plan's searcher and scheduler read (``SearchPlan.result_metrics``).
PriorMetrics = Mapping[str, list[tuple[int, Union[float, Mapping[str, float]]]]]
#: {trial id: ledger record} of a run's earlier drivers (``C.PARAMS``, ``C.ENDED_AT``, ``C.ERROR``, ...).
Ledger = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Resumed:
    """A searcher built afresh for a resumed sweep from what the ledger holds (``SearcherKind.resume``)."""

    searcher: Any  #: the Tune searcher, told of the ledger's trials
    carried: list[tuple[str, dict[str, Any]]]  #: (trial id, config) of unfinished trials, to run first under their ids
    ended: frozenset[str]  #: ids of ended trials: a draw under one of them is dropped
    new_trials: Optional[int]  #: how many more trials the searcher may draw (None: its own count holds)


class SearcherKind:
    """A searcher: who proposes each trial's parameters."""

    #: Whether it samples the job's space itself (Tune's ``param_space`` stays empty) or draws
    #: from Tune's domains (``Param.tune_domain``).
    samples_itself: bool = True
    #: The ``search.*`` lists it reads (``warm_start``, ``points_to_evaluate``); a job that gives
    #: another is refused at validation.
    takes: tuple[str, ...] = ()
    #: Whether it serves a job with one metric, and one with ``objectives``.
    single_objective: bool = True
    multi_objective: bool = False

    def __init__(self, spec: JobSpec, name: str):
        self.spec = spec
        self.name = name

    def build(self, concurrency: int) -> Any:
        """The Tune searcher (``ray.tune.search.Searcher`` or a generator), at most ``concurrency`` trials at once."""
        raise NotImplementedError

    def resume(self, concurrency: int, ledger: Ledger, metrics: PriorMetrics, tune_dir: str) -> Resumed:
        """The searcher for a driver that resumes a run whose earlier drivers left ``ledger`` and
        ``metrics``; ``tune_dir`` holds the state this searcher saved, if it saves any. By
        default a fresh searcher, told nothing, with the unfinished trials carried over under
        their flat parameters."""
        unfinished = [(t, dict(r.get(C.PARAMS) or {})) for t, r in ledger.items() if not r.get(C.ENDED_AT)]
        ended = frozenset(t for t, r in ledger.items() if r.get(C.ENDED_AT))
        return Resumed(self.build(concurrency), unfinished, ended, max(0, self.spec.budget.num_trials - len(ledger)))

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
        # once would fill one by one; the searcher's own limit is the job's concurrency.
        return {"TUNE_MAX_PENDING_TRIALS_PG": str(concurrency)}

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
    #: Whether it holds the sweep's concurrency itself (``limit_search``) rather than the searcher.
    holds_limit: bool = False

    def __init__(self, spec: JobSpec, name: str):
        self.spec = spec
        self.name = name

    def build(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        """The Tune ``TrialScheduler``; ``prior`` replays what earlier drivers of the run saw, of
        trials this driver runs on and of the ``ended`` ones, which it never runs."""
        raise NotImplementedError

    def searcher_concurrency(self, concurrency: int) -> int:
        """The trials at once the searcher is built for, for a sweep of ``concurrency``: the same,
        unless the scheduler holds the limit itself (``limit_search``)."""
        return concurrency

    def limit_search(self, search: Any, scheduler: Any, concurrency: int) -> Any:
        """The search Tune runs beside ``scheduler`` (this kind's ``build``): ``search`` itself, unless the scheduler holds the limit."""
        return search

    def pauses(self, scheduler: Any) -> Optional[Callable[[str], bool]]:
        """Whether ``scheduler`` (this kind's ``build``) has paused a trial, by id; None for one that never pauses."""
        return None
