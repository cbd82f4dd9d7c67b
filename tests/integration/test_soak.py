"""Leak soak: 100 short trials, 2 gloo workers each, aggressive ASHA, on a 2-CPU Ray.

Opt-in: ``python -m pytest -m soak``. Twice: with kept worker groups (the default), where each
trial actor's group serves its trials in turn and must be removed once the actor goes, and
without them (``harness.trial_processes: reused_actor``), where every trial starts and tears
down a Train worker group. A leak
of one placement group or actor per trial shows up as a hang (the next trial never gets its
CPUs) or as actors left at the end.
"""

import threading
import time
from pathlib import Path

import pytest

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_run_files

pytestmark = [pytest.mark.integration, pytest.mark.soak]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.parametrize("kept", [True, False], ids=["kept_groups", "group_per_trial"])
def test_100_trials_leave_nothing_behind(embedded_ray, tmp_path, kept):
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 100, "max_epochs": 2},
            asha={"grace_period_epochs": 1, "reduction_factor": 4},
            scaling={"num_workers": 2, "cpus_per_worker": 0.5},
            harness={"trial_processes": "kept_worker_group" if kept else "reused_actor"},
        )
    )
    samples: list[tuple[float, float, int]] = []  # (seconds, driver RSS MiB, trials ended)
    done = threading.Event()
    t0 = time.monotonic()

    def sample():
        while not done.is_set():
            ended = len(list(tmp_path.glob(f"runs/tiny/*/{C.LEDGER_DIR}/*.json")))
            samples.append((time.monotonic() - t0, _rss_mib(), ended))
            done.wait(2.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = run_job(spec)
    done.set()
    sampler.join()
    wall = time.monotonic() - t0
    run = check_run_files(result.run_dir, spec, expect_stopped=True)
    trials = run["trials"]
    assert len(trials) == 100 and result.status_counts[C.STATUS_ERROR] == 0
    leaks = run["run"]["leaks"]
    assert leaks["placement_groups_swept_at_end"] == [] and leaks["train_actors_alive_at_end"] == []
    assert leaks["unreleased_by_trial"] == {} and trials[C.RELEASE_SECONDS].notna().all()
    groups = run["epochs"][C.PLACEMENT_GROUP_ID].nunique()
    assert groups < 10 if kept else groups == 100, groups
    assert_nothing_left()
    # driver memory: after the first 10 trials (imports and Ray's caches warm) against the end
    warm = next((rss for _, rss, n in samples if n >= 10), samples[0][1])
    end = _rss_mib()
    print(
        f"soak, {'kept groups' if kept else 'a group per trial'}: 100 trials ({result.status_counts}) in {wall:.0f} s; {trials[C.WALL_SECONDS].median():.1f} s median trial; "
        f"release {trials[C.RELEASE_SECONDS].median():.2f} s median, {trials[C.RELEASE_SECONDS].max():.2f} s max; "
        f"driver RSS {samples[0][1]:.0f} MiB at start, {warm:.0f} MiB after 10 trials, {end:.0f} MiB at the end "
        f"({(end - warm) / 90 * 1024:.0f} KiB per trial after warm-up)"
    )
    assert end - warm < 300, f"driver memory grew by {end - warm:.0f} MiB over 90 trials"
