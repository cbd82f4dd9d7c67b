"""Several objectives at once: Optuna's multi-objective TPE or NSGA-II as a Tune searcher, with constraints.

For a job that lists ``objectives``, each trial is told to one Optuna study with a direction per
objective, as ``distsearch.search.tpe`` tells a single-metric study: a trial that reached
``max_epochs`` is COMPLETE with its objectives at the epoch where the job's metric was best (the
epoch selection takes); one that ended before (MOASHA stopped it, a budget ended the sweep) is
PRUNED, which Optuna's multi-objective TPE ranks after every complete trial; a failed one is FAIL.
Optuna takes no intermediate values in a multi-objective study, so the reports are kept here. A
trial's ``constraints`` are told as each bound's excess (``Trial.set_constraint``; positive: missed),
which both samplers read: a trial that meets them outranks one that does not.

Only Optuna's public API is used. A resumed sweep rebuilds the study from the ledger and the
reports the checkpoints hold (``ParetoSearcher.resume``); nothing is read from a saved state.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Mapping, Optional

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from .. import constants as C
from ..space.params import Param
from ..space.points import searcher_names
from ..spec.objectives import bounds, pairs, read_metrics
from .kinds import Ledger, PriorMetrics, Resumed, SearcherKind
from .pareto import Bounds, Objectives, excess
from .tpe import quiet_optuna, sample
from .tpe_plan import startup_trials


class ParetoSearch(Searcher):
    """An Optuna study with one direction per objective; see the module docstring for what it is told."""

    def __init__(
        self,
        space: Mapping[str, Param],
        *,
        metric: str,
        mode: str,
        objectives: Objectives,
        bounds: Bounds,
        max_epochs: int,
        sampler: optuna.samplers.BaseSampler,
        max_concurrent: int = 1,
    ):
        super().__init__(metric=metric, mode=mode)
        self.space, self.objectives, self.bounds = space, list(objectives), dict(bounds)
        self.max_epochs, self.max_concurrent = max_epochs, max_concurrent
        self.names = read_metrics(self.objectives, self.bounds)
        directions = ["maximize" if m == "max" else "minimize" for _, m in self.objectives]
        self.study = optuna.create_study(directions=directions, sampler=sampler)
        self.live: dict[str, optuna.Trial] = {}
        self.reports: dict[str, dict[int, dict[str, float]]] = {}
        self.told: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return not config  # the job's space is the only space; Tune's param_space stays empty

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        if len(self.live) >= self.max_concurrent:
            return None
        return self.relive(trial_id)

    def relive(self, trial_id: str, params: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
        """A running trial for ``trial_id``: a new draw, or ``params`` (searcher names) again; its config."""
        if params is not None:
            self.study.enqueue_trial(dict(params), skip_if_exists=False)
        trial = self.study.ask()
        config = sample(trial, self.space)
        self.live[trial_id] = trial
        self.reports.setdefault(trial_id, {})
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.live or C.EPOCH not in result:
            return
        values = {n: result.get(n) for n in self.names}
        if all(v is not None and math.isfinite(float(v)) for v in values.values()):
            self.reports[trial_id].setdefault(int(result[C.EPOCH]), {n: float(v) for n, v in values.items()})

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        if result and not error:
            self.on_trial_result(trial_id, result)
        trial, reports = self.live.pop(trial_id), self.reports[trial_id]
        state, values = self.judge(reports, error)
        if values is not None:
            for name, excess in self._violations(values).items():
                trial.set_constraint(name, excess)
        self.told[trial_id] = state.name
        self.study.tell(trial, [values[n] for n, _ in self.objectives] if state == TrialState.COMPLETE else None, state=state)

    def judge(self, reports: Mapping[int, Mapping[str, float]], error: bool) -> tuple[TrialState, Optional[Mapping[str, float]]]:
        """(Optuna state, the values it is judged by): FAIL; COMPLETE at max_epochs, with the
        values of the epoch whose job metric was best; else PRUNED, with the last epoch's."""
        if error or not reports:
            return TrialState.FAIL, None
        if max(reports) < self.max_epochs:
            return TrialState.PRUNED, reports[max(reports)]
        sign = 1.0 if self.mode == "max" else -1.0
        best = max(sorted(reports), key=lambda e: sign * reports[e][self.metric])
        return TrialState.COMPLETE, reports[best]

    def _violations(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per bounded metric, how far ``values`` lie outside the bound (positive) or inside it (not)."""
        return {name: excess(values[name], low, high) for name, (low, high) in self.bounds.items()}

    def states(self) -> dict[str, int]:
        return dict(Counter(state.lower() for state in self.told.values()))


class ParetoSearcher(SearcherKind):
    """``search.algorithm`` tpe or nsga2 for a job with ``objectives``: ``ParetoSearch`` with
    Optuna's multi-objective ``TPESampler`` or its ``NSGAIISampler``."""

    single_objective = False
    multi_objective = True

    def sampler(self, draws_before: int = 0) -> optuna.samplers.BaseSampler:
        seed = self.spec.seed + draws_before
        if self.name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        s = self.spec.search
        with warnings.catch_warnings():  # group= is marked experimental; the conditional spaces need it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=startup_trials(self.spec),
                multivariate=s.multivariate,
                group=s.multivariate,
                constant_liar=s.constant_liar,
            )

    def build(self, concurrency: int, draws_before: int = 0) -> ParetoSearch:
        spec = self.spec
        return ParetoSearch(
            spec.space,
            metric=spec.metric,
            mode=spec.mode,
            objectives=pairs(spec.objectives),
            bounds=bounds(spec.constraints),
            max_epochs=spec.budget.max_epochs,
            sampler=self.sampler(draws_before),
            max_concurrent=concurrency,
        )

    def resume(self, concurrency: int, ledger: Ledger, metrics: PriorMetrics, tune_dir: str) -> Resumed:
        """A study rebuilt from the ledger: each ended trial told as it ended, from the reports
        its checkpoints hold; the unfinished ones running again, first."""
        searcher = self.build(concurrency, draws_before=len(ledger))
        unfinished = []
        for trial_id, record in ledger.items():
            params = dict(record.get(C.PARAMS) or {})
            searcher.relive(trial_id, searcher_names(self.spec.space, params))
            for epoch, values in metrics.get(trial_id, []):
                searcher.on_trial_result(trial_id, {C.EPOCH: epoch, **(values if isinstance(values, Mapping) else {self.spec.metric: values})})
            if record.get(C.ENDED_AT):
                searcher.on_trial_complete(trial_id, error=bool(record.get(C.ERROR)))
            else:
                unfinished.append((trial_id, params))
        ended = frozenset(t for t, r in ledger.items() if r.get(C.ENDED_AT))
        return Resumed(searcher, unfinished, ended, max(0, self.spec.budget.num_trials - len(ledger)))

    def settings(self) -> dict[str, Any]:
        return {"sampler": self.name, "objectives": [dict(o) for o in self.spec.objectives], "startup_trials": startup_trials(self.spec)}

    def settings_line(self) -> str:
        return f"{'NSGA-II' if self.name == 'nsga2' else 'multi-objective TPE'} on {', '.join(f'{n} ({m})' for n, m in pairs(self.spec.objectives))}"

    def running(self):
        return quiet_optuna()
