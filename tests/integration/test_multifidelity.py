"""BOHB-style search under PASHA on a real Ray: the plan's names reach run.json, PASHA holds
the maximum at the second rung, and every proposal is counted."""

import pytest

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_run_files

pytestmark = pytest.mark.integration


def test_a_bohb_sweep_under_pasha_runs_and_records_what_it_proposed(embedded_ray, tmp_path):
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 8, "max_epochs": 4},
            asha={"grace_period_epochs": 1, "reduction_factor": 2, "variant": "pasha"},
            search={"algorithm": "bohb", "startup_trials": 3},
        )
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)
    trials, search = run["trials"], run["run"]["search"]
    assert search["summary"] == "bohb+pasha" and search["rung_epochs"] == [1, 2, 4]
    assert sum(search["proposed"].values()) == spec.budget.num_trials
    # PASHA's maximum starts at the second rung (2 epochs): the first trial there has nobody to
    # be ranked against, so it stops at 2, where ASHA would let it go on
    at_two = trials[(trials[C.EPOCHS_COMPLETED] == 2) & (trials[C.STATUS] == C.STATUS_STOPPED)]
    assert len(at_two) >= 1
    assert result.best is not None
    assert_nothing_left()
