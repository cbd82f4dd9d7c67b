"""The searchers and schedulers a job can name, each a lazy reference to the class that builds it.

Adding one is a module under ``distsearch/search/`` and one entry here: the job spec accepts the
name, and ``distsearch.search.plan`` builds it. A reference is ``"module:Class"`` (imported only
when a plan is built, so that naming Optuna's searcher costs no import until it runs) or the
class itself (``register_searcher("toy", ToySearcher)`` in a test or a plugin).
"""

from __future__ import annotations

import importlib
from typing import Any, Union

Ref = Union[str, type]

#: search.algorithm -> the searcher's class.
SEARCHERS: dict[str, Ref] = {
    "random": "distsearch.search.random_search:RandomSearcher",
    "tpe": "distsearch.search.tpe_plan:TPESearcher",
    "bohb": "distsearch.search.bohb_plan:BOHBSearcher",
    "gp": "distsearch.search.bohb_plan:GPSearcher",
    "nsga2": "distsearch.search.pareto_search:ParetoSearcher",
}
#: search.algorithm -> the searcher's class for a job that lists ``objectives``, where it is not SEARCHERS'.
MULTI_OBJECTIVE_SEARCHERS: dict[str, Ref] = {"tpe": "distsearch.search.pareto_search:ParetoSearcher"}
#: scheduler name -> reference; ``asha.enabled: false`` picks fifo, else ``asha.variant`` names it
#: (asha becomes moasha when the job lists ``objectives``).
SCHEDULERS: dict[str, Ref] = {
    "asha": "distsearch.search.asha:AshaScheduler",
    "pasha": "distsearch.search.pasha:PashaScheduler",
    "promote": "distsearch.search.promote:PromoteScheduler",
    "fifo": "distsearch.search.fifo:FifoScheduler",
    "moasha": "distsearch.search.moasha:MoashaScheduler",
}
#: Schedulers the plan picks from the rest of the job, never named by ``asha.variant``.
CHOSEN_SCHEDULERS = ("fifo", "moasha")


def register_searcher(name: str, ref: Ref) -> None:
    """Make ``name`` a value of ``search.algorithm``, built by ``ref``."""
    SEARCHERS[name] = ref


def register_scheduler(name: str, ref: Ref) -> None:
    """Make ``name`` a scheduler a plan can build."""
    SCHEDULERS[name] = ref


def resolve(ref: Ref) -> Any:
    """The class ``ref`` names."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
