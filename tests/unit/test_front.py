"""A multi-objective run's Pareto ranks and front, from its trials and epochs tables (no cluster)."""

import pandas as pd
import pytest

from distsearch import constants as C
from distsearch.errors import RunFileMissing
from distsearch.results.files import epochs_frame, trials_frame
from distsearch.results.front import figure, ranked
from distsearch.select.load import pick_from_front
from distsearch.spec.model import parse_job

from ..conftest import tiny_job


def _run(tmp_path):
    """A spec with its trials and epochs tables."""
    spec = parse_job(tiny_job(tmp_path, objectives=[{"val_accuracy": "max"}, {"latency_ms": "min"}], constraints={"latency_ms": {"max": 8.0}}))
    # (best epoch, accuracy at it, latency): a accurate, b fast, c dominated by a, d too slow, e failed
    curves = {"a": (2, 0.9, 5.0), "b": (1, 0.6, 1.0), "c": (2, 0.8, 6.0), "d": (2, 0.99, 9.0), "e": (None, None, None)}
    trials = trials_frame(
        [{C.TRIAL_ID: t, "params": {}, C.BEST_EPOCH: e, C.BEST_METRIC: acc, C.STATUS: "completed"} for t, (e, acc, _) in curves.items()], {}
    )
    rows = [
        {C.TRIAL_ID: t, C.EPOCH: k, C.TIMESTAMP: pd.Timestamp.now(tz="UTC"), "val_accuracy": acc - 0.1 * (e - k), "latency_ms": ms}
        for t, (e, acc, ms) in curves.items()
        if e
        for k in (1, 2)
    ]
    return spec, trials, epochs_frame(rows)


def test_each_trial_is_ranked_at_its_best_epoch_and_the_front_meets_the_constraints(tmp_path):
    spec, trials, epochs = _run(tmp_path)
    out, front = ranked(spec, trials, epochs)
    ranks = out.set_index(C.TRIAL_ID)[C.PARETO_RANK]
    assert ranks[["a", "b", "c"]].tolist() == [0, 0, 1] and ranks[["d", "e"]].isna().all() and str(ranks.dtype) == "Int64"
    assert out.set_index(C.TRIAL_ID)[C.DOMINATED].to_dict() == {"a": False, "b": False, "c": True, "d": True, "e": True}
    assert front == [
        {C.TRIAL_ID: "a", C.BEST_EPOCH: 2, "val_accuracy": 0.9, "latency_ms": 5.0},
        {C.TRIAL_ID: "b", C.BEST_EPOCH: 1, "val_accuracy": 0.6, "latency_ms": 1.0},
    ]
    single = parse_job(tiny_job(tmp_path))
    assert ranked(single, trials, epochs) == (trials, [])


def test_the_front_figure_marks_each_kind_of_trial_in_plain_numbers_and_leaves_matplotlib_as_found(tmp_path):
    import matplotlib

    before = dict(matplotlib.rcParams)
    spec, trials, epochs = _run(tmp_path)
    out, _ = ranked(spec, trials, epochs)
    fig = figure({"run": {"job": spec.to_dict()}, "trials": out, "epochs": epochs})
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dominated", "misses a constraint", "Pareto front (2)", "latency_ms bound"]
    fig.canvas.draw()
    labels = [t.get_text() for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels(which="both") if t.get_visible()]
    assert labels and not [label for label in labels if "$" in label]
    assert dict(matplotlib.rcParams) == before
    assert figure({"run": {"job": parse_job(tiny_job(tmp_path)).to_dict()}, "trials": out, "epochs": epochs}) is None


def test_a_pick_takes_the_fronts_best_by_the_metric_within_its_bounds(tmp_path):
    spec, trials, epochs = _run(tmp_path)
    _, front = ranked(spec, trials, epochs)
    meta = {"job": spec.to_dict(), "front": front}
    assert pick_from_front(meta, {}) == "a"
    assert pick_from_front(meta, {"latency_ms": {"max": 2.0}}) == "b"
    with pytest.raises(RunFileMissing, match=r"no trial of the Pareto front meets .* \(the front spans latency_ms 1..5\); fix: loosen the bounds"):
        pick_from_front(meta, {"latency_ms": {"max": 0.5}})
    with pytest.raises(ValueError, match="pick= needs a run with objectives"):
        pick_from_front({"job": parse_job(tiny_job(tmp_path)).to_dict()}, {})
