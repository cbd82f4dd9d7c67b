"""The search: the job's space as Ray Tune domains, and the searcher that draws trials from it (random or TPE).

A conditional parameter becomes ``tune.choice`` over one dict per option; Tune resolves the
domains nested inside the chosen dict. The option's name sits under ``space.OPTION_KEY`` in that
dict, and ``space.flatten`` turns the sampled config back into flat names.
"""

from __future__ import annotations

from typing import Any, Mapping

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator

from .. import warmstart
from ..params import Choice, Conditional, Fixed, Param, RandInt, Uniform
from ..search_space import searcher_names
from ..space import OPTION_KEY
from ..spec import JobSpec


def to_tune(space: Mapping[str, Param]) -> dict[str, Any]:
    """Translate a parsed space into Tune's ``param_space``."""
    return {name: _domain(p) for name, p in space.items()}


def _domain(p: Param) -> Any:
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Choice):
        return tune.choice(list(p.values))
    if isinstance(p, Conditional):
        return tune.choice([{OPTION_KEY: opt, **to_tune(sub)} for opt, sub in p.options.items()])
    if isinstance(p, Uniform):
        if p.kind == "uniform":
            return tune.uniform(p.low, p.high)
        if p.kind == "loguniform":
            return tune.loguniform(p.low, p.high)
        if p.kind == "quniform":
            return tune.quniform(p.low, p.high, p.q)
        return tune.qloguniform(p.low, p.high, p.q)
    if isinstance(p, RandInt):
        if p.kind == "randint":
            return tune.randint(p.low, p.high)
        return tune.qrandint(p.low, p.high, p.q)
    raise TypeError(f"unknown parameter type {type(p).__name__}")


def param_space(spec: JobSpec) -> dict[str, Any]:
    """Tune's ``param_space``: the space's domains for random search; empty for TPE, which
    samples the job's space itself (Tune would otherwise resolve the domains beside it)."""
    return to_tune(spec.space) if spec.search.algorithm == "random" else {}


def searcher(spec: JobSpec, concurrency: int) -> Searcher | BasicVariantGenerator:
    """The job's searcher, seeded by the job's seed, at most ``concurrency`` trials at once.

    Tune ignores ``TuneConfig.max_concurrent_trials`` when the search algorithm is a generator,
    and the Train workers' resources are invisible to Tune, so the limit must sit here."""
    s = spec.search
    if s.algorithm == "random":
        return BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency)
    from .tpe import TPESearch, prior_trials

    tpe = TPESearch(
        spec.space,
        metric=spec.metric,
        mode=spec.mode,
        max_epochs=spec.budget.max_epochs,
        seed=spec.seed,
        startup_trials=s.startup_trials,
        multivariate=s.multivariate,
        constant_liar=s.constant_liar,
        max_concurrent=concurrency,
        points=[searcher_names(spec.space, p) for p in s.points_to_evaluate],
    )
    if s.warm_start:
        tpe.seed_with(prior_trials(tpe, warmstart.load(spec)))
    return tpe
