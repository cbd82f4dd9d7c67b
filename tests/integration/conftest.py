import time

import pytest
import ray

from distsearch import constants as C
from distsearch import driver
from distsearch.results import read_run


@pytest.fixture(scope="module")
def embedded_ray():
    """A small real Ray for one test module: 2 CPUs, like the developer machines; no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def live_job_placement_groups() -> list[str]:
    job = ray.get_runtime_context().get_job_id()
    return [pg for pg, info in ray.util.placement_group_table().items() if pg.endswith(job) and info["state"] != "REMOVED"]


def assert_nothing_left():
    """No placement group of this job and no Ray Train actor is alive (GCS view, no dashboard)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (live_job_placement_groups() or driver.live_train_actors()):
        time.sleep(0.2)
    assert live_job_placement_groups() == []
    assert driver.live_train_actors() == []


def check_run_files(run_dir, spec, expect_stopped=True):
    """Parquet rows match Tune's own record of the trials one for one; returns the run."""
    from ray.tune import ExperimentAnalysis

    run = read_run(run_dir)
    trials, epochs = run["trials"], run["epochs"]
    analysis = ExperimentAnalysis(f"{run_dir}/{C.TUNE_DIR}")
    tune_trials = {t.trial_id: t for t in analysis.trials}
    assert sorted(trials[C.TRIAL_ID]) == sorted(tune_trials)
    assert len(trials) == spec.budget.num_trials
    for _, row in trials.iterrows():
        t = tune_trials[row[C.TRIAL_ID]]
        last_epoch = (t.last_result or {}).get(C.EPOCH, 0)
        assert row[C.EPOCHS_COMPLETED] == last_epoch
        assert (row[C.STATUS] == C.STATUS_ERROR) == (t.status == "ERROR")
        mine = epochs[epochs[C.TRIAL_ID] == row[C.TRIAL_ID]]
        assert sorted(mine[C.EPOCH]) == list(range(1, last_epoch + 1))
        if last_epoch:
            assert mine[spec.metric].iloc[-1] == pytest.approx(t.last_result[spec.metric])
    assert not epochs.duplicated([C.TRIAL_ID, C.EPOCH]).any()
    if expect_stopped:
        assert (trials[C.STATUS] == C.STATUS_STOPPED).sum() >= 1
    return run


def max_overlap(trials) -> int:
    """The most trials that were running at the same instant."""
    events = sorted([(t, 1) for t in trials[C.STARTED_AT].dropna()] + [(t, -1) for t in trials[C.ENDED_AT].dropna()], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak
