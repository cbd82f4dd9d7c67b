"""BOHB-style search as a plan's searcher: its rungs, its settings, and its resume from the ledger.

The Tune searcher itself (TPE, or a Gaussian process for ``gp``, fitted on one rung's results)
is ``distsearch.search.bohb``.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import constants as C
from ..space.points import searcher_names
from .kinds import Ledger, PriorMetrics, Resumed, SearcherKind
from .tpe_plan import startup_trials


def rung_epochs(spec) -> list[int]:
    """The epochs at which results are compared: the job's ASHA rungs (``grace_period_epochs``
    times powers of ``reduction_factor``, below ``max_epochs``) and ``max_epochs``."""
    grace, factor, top = spec.asha.grace_period_epochs, spec.asha.reduction_factor, spec.budget.max_epochs
    rungs, k = [], 0
    while round(grace * factor**k) < top:
        rungs.append(int(round(grace * factor**k)))
        k += 1
    return sorted(set(rungs)) + [top]


class BOHBSearcher(SearcherKind):
    #: What a rung's results are fitted with (``distsearch.search.bohb.MODELS``).
    model = "tpe"

    def build(self, concurrency: int) -> Any:
        from .bohb import BOHBSearch

        return BOHBSearch(
            self.spec.space,
            metric=self.spec.metric,
            mode=self.spec.mode,
            rungs=rung_epochs(self.spec),
            seed=self.spec.seed,
            min_points=startup_trials(self.spec),
            max_concurrent=concurrency,
            model=self.model,
        )

    def resume(self, concurrency: int, ledger: Ledger, metrics: PriorMetrics, tune_dir: str) -> Resumed:
        """A fresh searcher told every trial of the ledger with the reports its checkpoints hold:
        that is the whole of BOHB's state, so nothing Tune saved is read."""
        searcher = self.build(concurrency)
        for trial_id, record in ledger.items():
            reports = dict(metrics.get(trial_id, []))
            last = record.get(C.LAST_REPORT) or {}
            if self.spec.metric in last and C.EPOCH in last:
                reports.setdefault(int(last[C.EPOCH]), float(last[self.spec.metric]))
            ended = bool(record.get(C.ENDED_AT))
            searcher.relive(trial_id, searcher_names(self.spec.space, record.get(C.PARAMS) or {}), {} if record.get(C.ERROR) else reports, ended)
        carried = [(t, dict(r.get(C.PARAMS) or {})) for t, r in ledger.items() if not r.get(C.ENDED_AT)]
        ended_ids = frozenset(t for t, r in ledger.items() if r.get(C.ENDED_AT))
        return Resumed(searcher, carried, ended_ids, max(0, self.spec.budget.num_trials - len(ledger)))

    def settings(self) -> dict[str, Any]:
        from .bohb import RANDOM_FRACTION

        return {
            "model": self.model,
            "min_points": startup_trials(self.spec),
            "rung_epochs": rung_epochs(self.spec),
            "random_fraction": RANDOM_FRACTION,
        }

    def settings_line(self) -> str:
        s = self.settings()
        return f"{'TPE' if self.model == 'tpe' else 'a Gaussian process'} on the highest of epochs {s['rung_epochs']} with {s['min_points']} results, {s['random_fraction']:.2f} of proposals random"

    def running(self):
        from .tpe import quiet_optuna

        return quiet_optuna()

    def saved_summary(self, tune_dir: str) -> Optional[dict[str, Any]]:
        """How many proposals were random and how many came from each rung's model."""
        from . import bohb, tpe

        saved = tpe.newest(tune_dir, tpe.STATE_PREFIX)
        if saved is None:
            return None
        state = tpe.read_state(saved, f"{tune_dir}/{tpe.STATE_PREFIX}*", bohb.STATE_FORMAT)
        return {"proposed": {k if k == "random" else f"from epoch {k}": v for k, v in state["fits"].items()}}


class GPSearcher(BOHBSearcher):
    """BOHB's rule with Optuna's Gaussian process as the model in place of TPE."""

    model = "gp"
