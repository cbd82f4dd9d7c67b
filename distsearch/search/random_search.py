"""Random search: Tune's own sampling of the space's domains, seeded by the job's seed."""

from __future__ import annotations

from typing import Any

from .. import constants as C
from .kinds import Ledger, PriorMetrics, Resumed, SearcherKind


class RandomSearcher(SearcherKind):
    samples_itself = False
    multi_objective = True  # it reads no result

    def build(self, concurrency: int) -> Any:
        # Tune ignores TuneConfig.max_concurrent_trials when the search algorithm is a generator,
        # and the Train workers' resources are invisible to Tune, so the limit must sit here.
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=self.spec.seed, max_concurrent=concurrency)

    def resume(self, concurrency: int, ledger: Ledger, metrics: PriorMetrics, tune_dir: str) -> Resumed:
        """The same seed draws the same trials in the same order: under the first driver's ids,
        the unfinished ones come again as they were, and the ended ones are dropped."""
        from .._ray.tune import continue_ids

        generator = self.build(concurrency)
        continue_ids(generator, list(ledger))
        return Resumed(generator, [], frozenset(t for t, r in ledger.items() if r.get(C.ENDED_AT)), None)

    def tune_env(self, concurrency: int) -> dict[str, str]:
        return {"TUNE_MAX_PENDING_TRIALS_PG": "auto"}
