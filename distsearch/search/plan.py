"""The search plan: built once from a job, the one place that knows its searcher, scheduler and objective.

Every part of distsearch that depends on which searcher or scheduler a job uses asks the plan:
the Ray sweep (Tune's param space, searcher, scheduler and environment), the trial (whether to
wait for Tune's saved state), run.json and the report (the summary line), and validation (its
notes). Adding a searcher or scheduler is one module and one entry in ``distsearch.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from .. import registry
from ..spec.model import JobSpec
from ..spec.objectives import result_metrics
from .kinds import Ledger, PriorMetrics, Resumed, SchedulerKind, SearcherKind
from .objective import Objective


def _scheduler_name(asha: Mapping[str, Any], objectives: Any = ()) -> str:
    """fifo when ASHA is off; else ``asha.variant``, whose asha ranks by Pareto order (moasha) when the job lists objectives."""
    name = asha.get("variant", "asha") if asha.get("enabled", True) else "fifo"
    return "moasha" if objectives and name == "asha" else name


@dataclass(frozen=True)
class SearchPlan:
    """The searcher, the scheduler and the objective of one job; see the module docstring."""

    spec: JobSpec
    searcher: SearcherKind
    scheduler: SchedulerKind
    objective: Objective

    @property
    def summary(self) -> str:
        """Who proposed trials and who stopped them: ``tpe+asha``, ``random (fifo)``."""
        return self.scheduler.summary_format.format(searcher=self.searcher.name, scheduler=self.scheduler.name)

    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``: the space's domains, or empty for a searcher that samples the space itself."""
        return {} if self.searcher.samples_itself else {name: p.tune_domain() for name, p in self.spec.space.items()}

    def make_searcher(self, concurrency: int) -> Any:
        return self.searcher.build(concurrency)

    def make_search(self, concurrency: int, scheduler: Any) -> Any:
        """The search Tune runs for a sweep of ``concurrency`` trials at once beside ``scheduler``
        (``make_scheduler``'s): the searcher, limited by the scheduler where it holds the limit."""
        return self.scheduler.limit_search(self.make_searcher(self.scheduler.searcher_concurrency(concurrency)), scheduler, concurrency)

    def resume_searcher(self, concurrency: int, ledger: Ledger, metrics: PriorMetrics, tune_dir: str) -> Resumed:
        """The searcher for a driver that resumes a run, from its ledger (``SearcherKind.resume``)."""
        return self.searcher.resume(self.scheduler.searcher_concurrency(concurrency), ledger, metrics, tune_dir)

    def limit_search(self, search: Any, scheduler: Any, concurrency: int) -> Any:
        """``search`` (a resumed sweep's) limited by ``scheduler`` where it holds the limit."""
        return self.scheduler.limit_search(search, scheduler, concurrency)

    def result_metrics(self) -> list[str]:
        """The reported metrics the searcher and the scheduler read; a resumed driver replays them (``PriorMetrics``)."""
        return result_metrics(self.spec.metric, self.spec.objectives, self.spec.constraints)

    def make_scheduler(self, prior: Optional[PriorMetrics] = None, ended: Iterable[str] = ()) -> Any:
        return self.scheduler.build(prior, ended)

    def tune_env(self, concurrency: int) -> dict[str, str]:
        env = self.searcher.tune_env(concurrency)
        # Tune keeps one trial pending at a time for a search it does not know (``limit_search``'s)
        return {**env, "TUNE_MAX_PENDING_TRIALS_PG": str(concurrency)} if self.scheduler.holds_limit else env

    def running(self):
        """The context the backend holds while the searcher runs."""
        return self.searcher.running()

    def notes(self) -> list[str]:
        return self.searcher.notes()

    def problems(self) -> list[str]:
        """What of the job's ``search`` section its searcher does not read, each with the fix."""
        name = self.searcher.name
        if self.spec.objectives and not self.searcher.multi_objective:
            many = [n for n, ref in registry.SEARCHERS.items() if n in registry.MULTI_OBJECTIVE_SEARCHERS or registry.resolve(ref).multi_objective]
            return [f"search.algorithm: got {name!r}, which models one metric, with objectives; fix: use one of {', '.join(many)}"]
        if not self.spec.objectives and not self.searcher.single_objective:
            return [
                f"search.algorithm: got {name!r}, which needs objectives; fix: list objectives (e.g. - val_accuracy: max, - latency_ms: min), or use tpe"
            ]
        fix = "drop {} (no searcher reads it with objectives)" if self.spec.objectives else "use a searcher that does (tpe), or drop {}"
        return [
            f"search.{key}: given with algorithm: {name}, which does not read it; fix: {fix.format(key)}"
            for key in ("warm_start", "points_to_evaluate")
            if getattr(self.spec.search, key) and key not in self.searcher.takes
        ]

    def describe(self) -> dict[str, Any]:
        """What run.json records of the search: names, seed, settings and the report's words."""
        return {
            "algorithm": self.searcher.name,
            "scheduler": self.scheduler.name,
            "summary": self.summary,
            "seed": self.spec.seed,
            "settings_line": self.searcher.settings_line(),
            **self.searcher.settings(),
        }

    def saved_summary(self, tune_dir: str) -> Optional[dict[str, Any]]:
        return self.searcher.saved_summary(tune_dir)


def build_plan(spec: JobSpec) -> SearchPlan:
    """The plan of ``spec``: its registered searcher and scheduler, built but holding no Ray state."""
    name = spec.search.algorithm
    ref = registry.SEARCHERS[name]
    if spec.objectives:
        ref = registry.MULTI_OBJECTIVE_SEARCHERS.get(name, ref)
    searcher_cls = registry.resolve(ref)
    scheduler = _scheduler_name(spec.asha.model_dump(), spec.objectives)
    scheduler_cls = registry.resolve(registry.SCHEDULERS[scheduler])
    return SearchPlan(spec, searcher_cls(spec, name), scheduler_cls(spec, scheduler), Objective(spec.metric, spec.mode))


def summary_of(record: Mapping[str, Any]) -> str:
    """The plan's summary for a run.json ``record`` (its ``search`` and ``job``), also one written
    before the plan recorded its summary: the job's searcher, or random for a job without a search
    section, which ran before there was any other searcher."""
    search = record.get("search") or {}
    if search.get("summary"):
        return search["summary"]
    job = record.get("job") or {}
    name = search.get("algorithm") or (job.get("search") or {}).get("algorithm") or "random"
    scheduler = _scheduler_name(job.get("asha") or {}, job.get("objectives"))
    return registry.resolve(registry.SCHEDULERS[scheduler]).summary_format.format(searcher=name, scheduler=scheduler)
