"""Optuna's TPE as a plan's searcher: its settings, what it is seeded with, and its notes.

The Tune searcher itself (what TPE is told of each trial) is ``distsearch.search.tpe``.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import constants as C
from ..space.points import searcher_names
from .kinds import Ledger, PriorMetrics, Resumed, SearcherKind

#: Optuna's own default of random draws before TPE models; the budget may lower it.
MAX_DEFAULT_STARTUP_TRIALS = 10


def startup_trials(spec) -> int:
    """``search.startup_trials``, or what the budget allows: a third of the trials, 2 to 10."""
    if spec.search.startup_trials is not None:
        return spec.search.startup_trials
    return max(2, min(MAX_DEFAULT_STARTUP_TRIALS, spec.budget.num_trials // 3))


class TPESearcher(SearcherKind):
    takes = ("warm_start", "points_to_evaluate")

    def build(self, concurrency: int) -> Any:
        from . import warmstart
        from .tpe import TPESearch, prior_trials

        s = self.spec.search
        tpe = TPESearch(
            self.spec.space,
            metric=self.spec.metric,
            mode=self.spec.mode,
            max_epochs=self.spec.budget.max_epochs,
            seed=self.spec.seed,
            startup_trials=startup_trials(self.spec),
            multivariate=s.multivariate,
            constant_liar=s.constant_liar,
            max_concurrent=concurrency,
            points=[searcher_names(self.spec.space, p) for p in s.points_to_evaluate],
        )
        if s.warm_start:
            tpe.seed_with(prior_trials(tpe, warmstart.load(self.spec)))
        return tpe

    def resume(self, concurrency: int, ledger: Ledger, metrics: PriorMetrics, tune_dir: str) -> Resumed:
        """TPE from its saved JSON and the ledger (``tpe_resume``); the trials the ledger holds
        count against ``budget.num_trials``."""
        from . import tpe, tpe_resume

        searcher = self.build(concurrency)
        carried = tpe_resume.resume(searcher, ledger, metrics, tpe.newest(tune_dir, tpe.STATE_PREFIX), f"{tune_dir}/{tpe.STATE_PREFIX}*")
        ended = frozenset(t for t, r in ledger.items() if r.get(C.ENDED_AT))
        return Resumed(searcher, carried, ended, max(0, self.spec.budget.num_trials - len(ledger)))

    def settings(self) -> dict[str, Any]:
        s = self.spec.search
        return {
            "startup_trials": startup_trials(self.spec),
            "multivariate": s.multivariate,
            "constant_liar": s.constant_liar,
            "warm_start_runs": list(s.warm_start),
            "points_to_evaluate": len(s.points_to_evaluate),
        }

    def settings_line(self) -> str:
        s = self.settings()
        line = f"{s['startup_trials']} startup trials, multivariate {s['multivariate']}, constant liar {s['constant_liar']}"
        return line + ("" if self.models_any() else " (TPE never models: every trial is a startup draw)")

    def models_any(self) -> bool:
        """Whether any trial is proposed by TPE's model rather than drawn at random."""
        return startup_trials(self.spec) + len(self.spec.search.points_to_evaluate) < self.spec.budget.num_trials

    def notes(self) -> list[str]:
        if self.models_any():
            return []
        n = startup_trials(self.spec)
        return [
            f"search.startup_trials: {n} random draws (and {len(self.spec.search.points_to_evaluate)} points to evaluate) cover all "
            f"{self.spec.budget.num_trials} trials of budget.num_trials, so TPE never models the results; fix: lower "
            f"search.startup_trials below {self.spec.budget.num_trials}, or raise budget.num_trials"
        ]

    def running(self):
        from .tpe import quiet_optuna

        return quiet_optuna()

    def saved_summary(self, tune_dir: str) -> Optional[dict[str, Any]]:
        from .tpe import saved_summary  # imports Optuna: only for TPE jobs

        return saved_summary(tune_dir)
