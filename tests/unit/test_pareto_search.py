"""Multi-objective searchers (Optuna's TPE and NSGA-II behind ParetoSearch), fed fake results (no cluster)."""

import pytest
from optuna.trial import TrialState

from distsearch import constants as C
from distsearch.search.pareto_search import ParetoSearch
from distsearch.search.plan import build_plan
from distsearch.spec.model import parse_job

from ..conftest import tiny_job

OBJECTIVES = [{"val_accuracy": "max"}, {"latency_ms": "min"}]


def _spec(tmp_path, algorithm="tpe", **job):
    raw = tiny_job(
        tmp_path,
        budget={"num_trials": 12, "max_epochs": 3},
        search={"algorithm": algorithm, "startup_trials": 4},
        objectives=OBJECTIVES,
        constraints={"latency_ms": {"max": 5.0}},
        **job,
    )
    return parse_job(raw)


def _finish(search, trial_id, epochs, acc, ms, error=False):
    for e in range(1, epochs + 1):
        search.on_trial_result(trial_id, {C.EPOCH: e, "val_accuracy": acc - 0.1 * (epochs - e), "latency_ms": ms})
    search.on_trial_complete(trial_id, error=error)


@pytest.mark.parametrize("algorithm", ["tpe", "nsga2"])
def test_each_trial_is_told_complete_pruned_or_failed_with_its_objectives_and_violations(tmp_path, algorithm):
    plan = build_plan(_spec(tmp_path, algorithm))
    assert plan.summary == f"{algorithm}+moasha" and plan.problems() == []
    search = plan.make_searcher(concurrency=2)
    assert isinstance(search, ParetoSearch)
    assert search.suggest("a") is not None and search.suggest("b") is not None and search.suggest("c") is None  # two at once
    _finish(search, "a", 3, 0.9, 4.0)  # complete, within the bound: judged at its best epoch (the last)
    _finish(search, "b", 1, 0.6, 9.0)  # stopped at epoch 1, missing the bound by 4 ms
    search.suggest("c")
    _finish(search, "c", 0, 0.0, 0.0, error=True)
    trials = search.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert trials[0].values == pytest.approx([0.9, 4.0]) and trials[0].constraints == {"latency_ms": -1.0}
    assert trials[1].constraints == {"latency_ms": 4.0}
    assert search.states() == {"complete": 1, "pruned": 1, "fail": 1}
    for i in range(9):  # past the startup draws, the model proposes
        tid = f"t{i}"
        assert search.suggest(tid) is not None
        _finish(search, tid, 3, 0.5 + 0.04 * i, 1.0 + i)
    assert len(search.study.best_trials) >= 1


def test_a_searcher_that_models_one_metric_is_refused_with_objectives_and_nsga2_without(tmp_path):
    bohb = build_plan(_spec(tmp_path, "bohb"))
    assert bohb.problems() == ["search.algorithm: got 'bohb', which models one metric, with objectives; fix: use one of random, tpe, nsga2"]
    lone = build_plan(parse_job(tiny_job(tmp_path, search={"algorithm": "nsga2"})))
    assert "search.algorithm: got 'nsga2', which needs objectives" in lone.problems()[0]
    assert build_plan(_spec(tmp_path, "random")).problems() == []
    warm = build_plan(parse_job({**_spec(tmp_path).to_dict(), "search": {"algorithm": "tpe", "warm_start": ["runs/x"]}}))
    assert warm.problems() == [
        "search.warm_start: given with algorithm: tpe, which does not read it; fix: drop warm_start (no searcher reads it with objectives)"
    ]


def test_a_resumed_searcher_is_told_the_ledgers_ended_trials_and_runs_the_unfinished_again(tmp_path):
    spec = _spec(tmp_path)
    plan = build_plan(spec)
    ledger = {
        "a": {C.PARAMS: {"lr": 0.01}, C.ENDED_AT: 1.0},
        "b": {C.PARAMS: {"lr": 0.001}, C.ENDED_AT: 2.0, C.ERROR: "boom"},
        "c": {C.PARAMS: {"lr": 0.002}},
    }
    metrics = {
        "a": [(e, {"val_accuracy": 0.7 + 0.1 * e, "latency_ms": 3.0}) for e in (1, 2, 3)],
        "c": [(1, {"val_accuracy": 0.5, "latency_ms": 2.0})],
    }
    resumed = plan.resume_searcher(2, ledger, metrics, str(tmp_path))
    assert resumed.carried == [("c", {"lr": 0.002})] and resumed.ended == {"a", "b"} and resumed.new_trials == 9
    trials = resumed.searcher.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING]
    assert trials[0].values == pytest.approx([1.0, 3.0]) and trials[0].params["lr"] == pytest.approx(0.01)
    _finish(resumed.searcher, "c", 3, 0.8, 2.0)
    assert resumed.searcher.study.get_trials()[2].state == TrialState.COMPLETE


def test_validation_names_an_objective_or_a_bound_the_task_never_reports(tmp_path):
    from distsearch.spec.model import SpecError
    from distsearch.validate import check_job

    raw = tiny_job(tmp_path, objectives=[{"val_accuracy": "max"}, {"val_loss": "max"}, {"latency_s": "min"}], constraints={"flops": {"max": 1}})
    with pytest.raises(SpecError) as e:
        check_job(parse_job(raw), dry_run=False)
    text = str(e.value)
    assert "objectives[1]: val_loss: got max; it is better when lower; fix: val_loss: min" in text
    assert "objectives[2]: got 'latency_s'; task digits reports" in text and "latency_ms" in text
    assert "constraints.flops: task digits reports no such metric; fix: bound one of" in text
    check_job(_spec(tmp_path), dry_run=False)  # the costs and the task's metrics pass


def test_constraints_without_objectives_are_refused_with_the_fix(tmp_path):
    from distsearch.spec.model import SpecError

    with pytest.raises(SpecError, match="constraints: given without objectives; fix: list objectives, the job's metric among them"):
        parse_job(tiny_job(tmp_path, constraints={"latency_ms": {"max": 5.0}}))
