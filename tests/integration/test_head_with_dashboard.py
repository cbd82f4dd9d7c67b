"""The same guarantees on a real `ray start --head` cluster with the dashboard up, driven by the CLI."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml

from distsearch import constants as C

from ..conftest import ROOT, tiny_job
from .conftest import check_run_files
from distsearch.spec import parse_job

pytestmark = pytest.mark.integration

GCS_PORT = 6391
DASHBOARD_PORT = 8271


def _ray_cli():
    return shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"


@pytest.fixture(scope="module")
def head_with_dashboard():
    # Token authentication stays on: `ray start` enables it because a token exists (the
    # embedded Ray of an earlier test, or .ci/run, made ~/.ray/auth_token).
    subprocess.run(
        [_ray_cli(), "start", "--head", f"--port={GCS_PORT}", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={DASHBOARD_PORT}", "--disable-usage-stats"],
        check=True, capture_output=True, timeout=120,
    )
    address = f"127.0.0.1:{GCS_PORT}"
    try:
        # "auto" (the head just started here) is the form Ray 2.60 authenticates on its own.
        ray.init(address="auto")
        yield address
    finally:
        ray.shutdown()
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120)


def test_cli_sweep_on_a_head_with_dashboard_leaks_nothing(head_with_dashboard, tmp_path):
    from ray.util.state import list_actors, list_placement_groups

    assert isinstance(list_actors(limit=5), list)  # the State API answers: the dashboard is up
    assert (Path.home() / ".ray" / "auth_token").exists()
    # storage as a URI, so the whole URI path (Tune, Train checkpoints, Parquet, best model) runs
    raw = tiny_job(tmp_path, name="headjob", budget={"num_trials": 8, "max_epochs": 3}, storage=f"file://{tmp_path}/store")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(job), "--address", head_with_dashboard, "--run-id", "r1", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
        # a client naming the cluster's address must opt in to sending the token
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out test" in proc.stdout and "best val_accuracy" in proc.stdout
    run_dir = f"{raw['storage']}/headjob/r1"
    assert (tmp_path / "store" / "headjob" / "r1" / C.TRIALS_FILE).exists()
    run = check_run_files(run_dir, parse_job(raw))
    assert run["best"][C.CHECKPOINT_PATH].startswith(str(tmp_path / "store")) and run["best"]["test"]["test_accuracy"] > 0.5
    assert run["trials"][C.RELEASE_SECONDS].max() < 10
    assert run["run"]["leaks"]["train_actors_alive_at_end"] == []
    # The driver job has ended; across the whole cluster, no Train actor and no placement group
    # of that job may be left (the dashboard view, all jobs).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        actors = [a for a in list_actors(filters=[("state", "!=", "DEAD")], limit=1000)
                  if a.class_name in ("RayTrainWorker", "TrainController", "PlacementGroupCleaner")]
        pgs = [p for p in list_placement_groups(limit=1000) if p.state != "REMOVED"]
        if not actors and not pgs:
            break
        time.sleep(0.5)
    assert actors == [] and pgs == []
    report = subprocess.run([sys.executable, "-m", "distsearch", "report", run_dir], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert report.returncode == 0 and "test_accuracy" in report.stdout
