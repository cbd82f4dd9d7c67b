"""Random search: Tune's own sampling of the space's domains, seeded by the job's seed."""

from __future__ import annotations

from typing import Any

from .kinds import SearcherKind


class RandomSearcher(SearcherKind):
    samples_itself = False
    # Tune names a generator's trials in order (``..._00003``), and lists them in its saved state
    # before they start, so nothing needs to wait.
    waits_for_saved_state = False

    def build(self, concurrency: int) -> Any:
        # Tune ignores TuneConfig.max_concurrent_trials when the search algorithm is a generator,
        # and the Train workers' resources are invisible to Tune, so the limit must sit here.
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=self.spec.seed, max_concurrent=concurrency)

    def tune_env(self, concurrency: int) -> dict[str, str]:
        return {"TUNE_MAX_PENDING_TRIALS_PG": "auto", "TUNE_GLOBAL_CHECKPOINT_S": "auto"}
