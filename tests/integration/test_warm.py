"""Kept worker groups (distsearch.warm) on a real embedded Ray (2 CPUs) with 2 gloo workers per trial."""

from pathlib import Path

import pytest

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job

from .conftest import assert_nothing_left, check_run_files, max_overlap

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_a_group_whose_workers_do_not_stop_in_time_is_ended_and_the_next_trial_starts_afresh(embedded_ray, tmp_path, monkeypatch):
    """Epochs of about 1 s against a settle wait of 0.25 s (release_timeout_s / 2), one trial at
    a time, so each trial runs in the actor of the one before. A trial that ASHA stopped was
    mid-epoch: its workers cannot reach their next report in time, so its group is ended as Ray
    Train ends it, and the next trial starts in new processes. A trial that completed had
    nothing left to run: its group is kept, and the next trial runs in the same processes. The
    sweep neither hangs nor leaks, and no trial fails."""
    monkeypatch.chdir(ROOT)  # the custom task's module is imported relative to the repository root
    log_dir = tmp_path / "seen"
    log_dir.mkdir()
    spec = parse_job(
        {
            "name": "slow",
            "task": "custom",
            "metric": "val_accuracy",
            "mode": "max",
            "seed": 1,
            "task_options": {"factory": "tests.integration.spy_task:make", "log_dir": str(log_dir), "seconds_per_batch": 0.16},
            # lr 1e-6 stays at chance, so ASHA stops those trials at their first rung once a 0.5 one has set
            # it; the points fix the order whatever a searcher would draw: 0.5, 1e-6, 1e-6, 1e-6, 0.5, 0.5
            "space": {"model": "spy", "lr": {"choice": [0.5, 1.0e-6]}, "batch_size": 32},
            "search": {"algorithm": "tpe", "points_to_evaluate": [{"lr": lr} for lr in (0.5, 1.0e-6, 1.0e-6, 1.0e-6, 0.5, 0.5)]},
            "budget": {"num_trials": 6, "max_epochs": 3},
            "asha": {"grace_period_epochs": 1, "reduction_factor": 3},
            "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
            "max_concurrent_trials": 1,
            "harness": {"release_timeout_s": 0.5},
            "storage": str(tmp_path / "runs"),
        }
    )
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec)
    trials, epochs = run["trials"].sort_values(C.STARTED_AT).reset_index(drop=True), run["epochs"]
    assert result.status_counts[C.STATUS_ERROR] == 0 and max_overlap(trials) == 1
    assert epochs[C.EPOCH_SECONDS].median() > 2 * spec.harness.settle_wait_s  # the premise: epochs outlast the wait
    started = epochs[epochs[C.EPOCH] == 1].set_index(C.TRIAL_ID)[C.WORKER_PROCESS_STARTED_AT]
    follows = []
    for before, after in zip(trials.itertuples(), trials.iloc[1:].itertuples(), strict=False):
        same = abs(started[before.trial_id] - started[after.trial_id]) < 0.05
        follows.append((getattr(before, C.STATUS), same))
    assert (C.STATUS_STOPPED, False) in follows, follows  # the case this test is for happened
    assert all(same == (status == C.STATUS_COMPLETED) for status, same in follows), follows
    assert run["run"]["leaks"] == {"placement_groups_swept_at_end": [], "train_actors_alive_at_end": [], "unreleased_by_trial": {}}
    assert trials[C.RELEASE_SECONDS].notna().all()
    assert_nothing_left()
