"""The search plan: the one place that knows a job's searcher and scheduler, with a toy searcher
registered and a whole sweep plan run on fake results (no cluster), as Ray's scheduler tests do."""

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from distsearch import registry
from distsearch.search.kinds import SearcherKind
from distsearch.search.plan import build_plan, summary_of
from distsearch.spec.model import SpecError, parse_job

from ..conftest import tiny_job


class GridSearch(Searcher):
    """Proposes the space's lr values in order; remembers what it was told."""

    def __init__(self, lrs):
        super().__init__(metric="val_accuracy", mode="max")
        self.lrs, self.told = list(lrs), {}

    def suggest(self, trial_id):
        return {"lr": self.lrs.pop(0)} if self.lrs else Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told[trial_id] = result


class ToySearcher(SearcherKind):
    """A searcher in one class: what adding one to distsearch takes, beside its registry entry."""

    def build(self, concurrency):
        return GridSearch(self.spec.space["lr"].listed())

    def settings_line(self):
        return "grid over lr"


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(registry.SEARCHERS, "toy", ToySearcher)


def _spec(tmp_path, algorithm, **extra):
    space = {"lr": {"choice": [0.1, 0.01, 0.001, 0.0001]}, "model": {"choice": {"mlp": {"depth": 1, "width": 16}}}}
    return parse_job(tiny_job(tmp_path, space=space, search={"algorithm": algorithm}, budget={"num_trials": 4, "max_epochs": 9}, **extra))


def test_a_registered_toy_searcher_runs_a_sweep_plan_on_fake_results(toy, tmp_path):
    plan = build_plan(_spec(tmp_path, "toy", asha={"grace_period_epochs": 1, "reduction_factor": 3}))
    assert plan.summary == "toy+asha" and plan.param_space() == {}
    assert plan.describe()["settings_line"] == "grid over lr" and plan.notes() == []
    searcher, scheduler = plan.make_searcher(concurrency=2), plan.make_scheduler()
    # The sweep, in simulated time: each trial's accuracy is fixed by its lr; ASHA decides at its rungs.
    quality = {0.1: 0.5, 0.01: 0.9, 0.001: 0.8, 0.0001: 0.3}
    ended = {}
    for i in range(plan.spec.budget.num_trials):
        trial = SimpleNamespace(trial_id=f"t{i}", status="RUNNING")
        config = searcher.suggest(trial.trial_id)
        scheduler.on_trial_add(None, trial)
        for epoch in range(1, plan.spec.budget.max_epochs + 1):
            result = {"epoch": epoch, "val_accuracy": quality[config["lr"]] * epoch / 9}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP or epoch == plan.spec.budget.max_epochs:
                searcher.on_trial_complete(trial.trial_id, result)
                ended[config["lr"]] = epoch
                break
    assert searcher.suggest("t99") == Searcher.FINISHED and len(searcher.told) == 4
    assert ended[0.01] == 9 and ended[0.0001] < 9  # the best ran to the end; ASHA stopped a weak one early


def test_the_summary_comes_from_the_plan_for_every_searcher_and_scheduler(toy, tmp_path):
    assert build_plan(_spec(tmp_path, "random")).summary == "random+asha"
    assert build_plan(_spec(tmp_path, "tpe", asha={"enabled": False})).summary == "tpe (fifo)"
    assert build_plan(_spec(tmp_path, "toy")).describe()["summary"] == "toy+asha"
    assert build_plan(_spec(tmp_path, "bohb", asha={"variant": "pasha"})).summary == "bohb+pasha"
    # a run.json written before the plan recorded its summary: the job's searcher, else random (a job
    # without a search section ran before there was any other searcher)
    assert summary_of({"job": {"asha": {"enabled": False}}}) == "random (fifo)"
    assert summary_of({"job": {"search": {"algorithm": "tpe"}}}) == "tpe+asha"
    assert summary_of({"search": {"algorithm": "random"}, "job": {}}) == "random+asha"


def test_an_unregistered_searcher_is_refused_with_the_registered_ones(tmp_path):
    with pytest.raises(SpecError, match=r"search.algorithm: got 'hyperopt'; fix: use one of random, tpe, bohb"):
        _spec(tmp_path, "hyperopt")


def test_random_search_draws_from_tune_domains_and_tpe_samples_the_space_itself(tmp_path):
    random_plan, tpe_plan = build_plan(_spec(tmp_path, "random")), build_plan(_spec(tmp_path, "tpe"))
    assert set(random_plan.param_space()) == set(random_plan.spec.space) and {"lr", "model"} <= set(random_plan.param_space())
    assert tpe_plan.param_space() == {}
    assert random_plan.tune_env(4)["TUNE_MAX_PENDING_TRIALS_PG"] == "auto" and tpe_plan.tune_env(4)["TUNE_MAX_PENDING_TRIALS_PG"] == "4"


def test_tpe_startup_trials_default_to_what_the_budget_allows_and_a_budget_it_never_models_is_noted(tmp_path):
    def plan(num_trials, **search):
        raw = tiny_job(tmp_path, search={"algorithm": "tpe", **search}, budget={"num_trials": num_trials, "max_epochs": 2})
        return build_plan(parse_job(raw))

    assert [plan(n).describe()["startup_trials"] for n in (4, 8, 16, 30, 100)] == [2, 2, 5, 10, 10]
    assert plan(16).notes() == [] and "TPE never models" not in plan(16).describe()["settings_line"]
    (note,) = plan(8, startup_trials=10).notes()
    assert note.startswith("search.startup_trials: 10 random draws") and "fix: lower search.startup_trials below 8" in note
    assert "(TPE never models: every trial is a startup draw)" in plan(8, startup_trials=10).describe()["settings_line"]


def test_search_settings_the_searcher_does_not_read_are_refused_at_validation(tmp_path):
    from distsearch.validate import check_job

    raw = tiny_job(tmp_path, search={"algorithm": "random", "points_to_evaluate": [{"lr": 0.01}]})
    with pytest.raises(SpecError, match=r"search.points_to_evaluate: given with algorithm: random, which does not read it; fix:"):
        check_job(parse_job(raw), dry_run=False)
    raw["search"]["algorithm"] = "tpe"
    check_job(parse_job(raw), dry_run=False)
