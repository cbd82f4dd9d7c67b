"""TPE under ASHA on a real Ray: the study is told each trial's end as trials.parquet records it,
and the sweep keeps every slot busy as random search does."""

import pytest

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_run_files, max_overlap

pytestmark = pytest.mark.integration


def test_a_tpe_sweep_under_asha_tells_the_study_the_truth_and_fills_the_slots(embedded_ray, tmp_path):
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 10, "max_epochs": 4},
            asha={"grace_period_epochs": 1, "reduction_factor": 2},
            search={"algorithm": "tpe", "startup_trials": 4, "points_to_evaluate": [{"model": "mlp", "model.depth": 2, "lr": 0.01}]},
        )
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)  # one row per trial, Tune agrees; some stopped early
    trials, meta = run["trials"], run["run"]
    search = meta["search"]
    assert search["algorithm"] == "tpe" and search["startup_trials"] == 4 and search["seed"] == spec.seed
    statuses = trials[C.STATUS].value_counts().to_dict()
    expected = {"complete": statuses.get(C.STATUS_COMPLETED, 0), "pruned": statuses.get(C.STATUS_STOPPED, 0), "fail": statuses.get(C.STATUS_ERROR, 0)}
    assert search["told"] == {k: v for k, v in expected.items() if v}
    first = trials.sort_values(C.STARTED_AT).head(2)  # the first two start together
    point = (first["hp_model"] == "mlp") & (first["hp_model__depth"] == 2) & (first["hp_lr"] == 0.01)
    assert point.sum() == 1  # the point to evaluate ran first
    assert max_overlap(trials) == meta["max_concurrent_trials"] == 2  # TPE filled both slots
    assert result.best is not None
    assert_nothing_left()


def test_a_tpe_sweep_warm_started_from_an_earlier_run_learns_from_its_trials(embedded_ray, tmp_path):
    first = parse_job(
        tiny_job(tmp_path, name="earlier", budget={"num_trials": 4, "max_epochs": 2}, search={"algorithm": "tpe"}, max_concurrent_trials=1)
    )
    earlier = run_job(first).run_dir
    # a narrower learning-rate range: trials of the earlier run outside it are skipped and counted
    raw = tiny_job(
        tmp_path,
        budget={"num_trials": 3, "max_epochs": 2},
        search={"algorithm": "tpe", "startup_trials": 2, "warm_start": [earlier]},
        max_concurrent_trials=1,
    )
    raw["space"]["lr"] = {"loguniform": [1.0e-3, 3.0e-1]}
    spec = parse_job(raw)
    result = run_job(spec)
    warm = check_run_files(result.run_dir, spec, expect_stopped=False)["run"]["search"]["warm_start"]
    from distsearch.results.files import read_run

    lrs = read_run(earlier)["trials"]["hp_lr"]
    assert warm == {"runs": [earlier], "trials": int((lrs >= 1.0e-3).sum()), "skipped": int((lrs < 1.0e-3).sum())}
