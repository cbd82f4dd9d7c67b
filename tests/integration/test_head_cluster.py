"""A real `ray start --head` cluster with the dashboard and token auth: the CLI, `ray job submit`."""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import ray
import yaml

from distsearch import constants as C
from distsearch.spec.model import load_job, parse_job

from ..conftest import ROOT, tiny_job
from .conftest import check_run_files, end_session, own_ray_tmpdir

pytestmark = pytest.mark.integration


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli():
    return shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"


@pytest.fixture(scope="module")
def head_with_dashboard():
    # Token authentication is on: `ray start` enables it because a token exists (the session's
    # own, at RAY_AUTH_TOKEN_PATH: conftest's _session_ray_tmpdir).
    # The head runs under this module's own temp dir (so "auto" finds it and no other), on free
    # ports, in its own session, which the fixture ends: another Ray on the machine is never touched.
    # Ray's dashboard agent listens on 52365 unless told otherwise: a second head on the machine
    # (a user's own) would hold it, and this head's agent could take no job.
    gcs_port, dashboard_port, agent_port = _free_port(), _free_port(), _free_port()
    with own_ray_tmpdir():
        start = subprocess.Popen(
            [
                _ray_cli(),
                "start",
                "--head",
                f"--port={gcs_port}",
                "--num-cpus=2",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard_port}",
                f"--dashboard-agent-listen-port={agent_port}",
                "--disable-usage-stats",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # as on a real node, the environment's python comes first: job entrypoints run `python`
            env={**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")},
        )
        try:
            out = start.communicate(timeout=120)[0]
            assert start.returncode == 0, out[-3000:]
            # "auto" (the head just started here) is the form Ray 2.60 authenticates on its own.
            ray.init(address="auto")
            HEAD["dashboard"] = f"http://127.0.0.1:{dashboard_port}"
            yield f"127.0.0.1:{gcs_port}"
        finally:
            ray.shutdown()
            end_session(start.pid)


HEAD: dict[str, str] = {}  # the dashboard's address of the head this module started

TRAIN_ACTORS = ("RayTrainWorker", "TrainController", "PlacementGroupCleaner")


def _auth_env() -> dict[str, str]:
    """A client's environment: naming the address, it opts in to the token."""
    return {**os.environ, "RAY_AUTH_MODE": "token"}


def _wait_until_nothing_left(timeout_s=20):
    """Across the whole cluster (all jobs, dashboard view): no Train actor, no live placement group."""
    from ray.util.state import list_actors, list_placement_groups

    deadline = time.monotonic() + timeout_s
    while True:
        actors = [a.class_name for a in list_actors(filters=[("state", "!=", "DEAD")], limit=1000) if a.class_name in TRAIN_ACTORS]
        pgs = [p.placement_group_id for p in list_placement_groups(limit=1000) if p.state != "REMOVED"]
        if (not actors and not pgs) or time.monotonic() > deadline:
            return actors, pgs
        time.sleep(0.5)


def _job_cli(*args, timeout=120):
    return subprocess.run([_ray_cli(), "job", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=_auth_env())


def _job_status(job_id):
    proc = _job_cli("status", "--address", HEAD["dashboard"], job_id)
    out = (proc.stdout + proc.stderr).upper()
    for state in ("SUCCEEDED", "STOPPED", "FAILED", "RUNNING", "PENDING"):
        if state in out:
            return state
    return out


def _submit(submission_id: str, job: str, store, *run_args: str):
    """``ray job submit`` of ``distsearch run JOB`` with its results under ``store``, not waiting. A
    head's job agent registers a few seconds after `ray start` returns (longer on a busy machine),
    and until then Ray answers "No available agent ... try again later": so it tries again."""
    submit = ["submit", "--address", HEAD["dashboard"], "--working-dir", ".", "--submission-id", submission_id, "--no-wait"]
    deadline = time.monotonic() + 90
    while True:
        proc = _job_cli(*submit, "--", "python", "-m", "distsearch", "run", job, "--storage", str(store), *run_args)
        if proc.returncode == 0 or "No available agent" not in proc.stderr or time.monotonic() > deadline:
            return proc
        time.sleep(2)


def test_ray_job_submit_runs_the_sweep_to_success(head_with_dashboard, tmp_path):
    store = tmp_path / "store"
    sub = _submit("ds-ok", "jobs/smoke.yaml", store, "--run-id", "submitted")
    assert sub.returncode == 0, sub.stderr[-2000:]
    deadline = time.monotonic() + 600
    while _job_status("ds-ok") in ("PENDING", "RUNNING") and time.monotonic() < deadline:
        time.sleep(2)
    logs = _job_cli("logs", "--address", HEAD["dashboard"], "ds-ok").stdout
    assert _job_status("ds-ok") == "SUCCEEDED", logs[-3000:]
    # the progress line and the leaderboard reach `ray job logs`; Ray Train's per-report lines do not
    assert "trials:" in logs and "| epochs " in logs and "held-out test" in logs
    assert "Reporting training result" not in logs
    run_dir = store / "smoke" / "submitted"
    assert (run_dir / C.TRIALS_FILE).exists() and (run_dir / C.EPOCHS_FILE).exists()
    check_run_files(str(run_dir), load_job(ROOT / "jobs" / "smoke.yaml"))
    assert _wait_until_nothing_left() == ([], [])


def test_ray_job_stop_cancels_the_sweep_cleanly(head_with_dashboard, tmp_path):
    store = tmp_path / "store"
    sub = _submit("ds-stop", "jobs/quickstart.yaml", store)
    assert sub.returncode == 0, sub.stderr[-2000:]
    from ray.util.state import list_actors

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # stop it mid-sweep, once trials' workers are training
        if any(a.class_name == "RayTrainWorker" for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)):
            break
        time.sleep(1)
    else:
        pytest.fail("no Train worker ever started")
    stop = _job_cli("stop", "--address", HEAD["dashboard"], "ds-stop")
    assert stop.returncode == 0, stop.stderr[-2000:]
    deadline = time.monotonic() + 60
    while _job_status("ds-stop") not in ("STOPPED", "FAILED", "SUCCEEDED") and time.monotonic() < deadline:
        time.sleep(1)
    assert _job_status("ds-stop") == "STOPPED"
    # The driver released everything itself before exiting (cleanup.released_on_stop): GCS
    # alone misses a worker group that a controller registers while it is being killed.
    logs = _job_cli("logs", "--address", HEAD["dashboard"], "ds-stop").stdout
    released = re.search(
        r"distsearch: SIGTERM: stopped the sweep; removed (\d+) placement groups in ([\d.]+) s; Train actors still alive: (.*)", logs
    )
    assert released, logs[-3000:]
    assert int(released[1]) >= 2  # at least a trial's group and its worker group
    assert "TrainController" not in released[3]  # workers may still be going; a controller could make a new group
    assert float(released[2]) < 3.0  # inside Ray's 3 s before SIGKILL
    assert _wait_until_nothing_left() == ([], [])


def test_cli_sweep_on_a_head_with_dashboard_leaks_nothing(head_with_dashboard, tmp_path):
    from ray.util.state import list_actors

    assert isinstance(list_actors(limit=5), list)  # the State API answers: the dashboard is up
    # token authentication is on: a client that sends no token (no RAY_AUTH_MODE, no token where
    # it would look) is refused by the head's job API
    bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)}
    refused = subprocess.run([_ray_cli(), "job", "list", "--address", HEAD["dashboard"]], capture_output=True, text=True, env=bare, timeout=120)
    assert refused.returncode != 0 and "auth" in (refused.stdout + refused.stderr).lower(), refused.stdout[-2000:] + refused.stderr[-2000:]
    # storage as a URI, so the whole URI path (Tune, Train checkpoints, Parquet, best model) runs
    raw = tiny_job(tmp_path, name="headjob", budget={"num_trials": 6, "max_epochs": 3}, storage=f"file://{tmp_path}/store", max_concurrent_trials=1)
    # a recipe that learns in 3 epochs whatever the draws, so that the test score below checks the
    # saved model, not the luck of six draws (SGD at lr 1e-4 stays near chance)
    raw["space"].update(optimizer="adam", lr={"loguniform": [1.0e-2, 1.0e-1]})
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(job), "--address", head_with_dashboard, "--run-id", "r1", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env=_auth_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out test" in proc.stdout and "best val_accuracy" in proc.stdout
    run_dir = f"{raw['storage']}/headjob/r1"
    assert (tmp_path / "store" / "headjob" / "r1" / C.TRIALS_FILE).exists()
    run = check_run_files(run_dir, parse_job(raw))
    assert run["best"][C.CHECKPOINT_PATH].startswith(str(tmp_path / "store")) and run["best"]["test"]["test_accuracy"] > 0.5
    assert run["trials"][C.RELEASE_SECONDS].max() < 10
    assert run["run"]["leaks"]["train_actors_alive_at_end"] == []
    # The driver job has ended: nothing of it may be left anywhere on the cluster.
    assert _wait_until_nothing_left() == ([], [])
    report = subprocess.run([sys.executable, "-m", "distsearch", "report", run_dir], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert report.returncode == 0 and "test_accuracy" in report.stdout


def test_a_gpu_job_on_a_cluster_without_gpus_is_refused_before_a_run_folder_is_written(head_with_dashboard, tmp_path):
    """With an address, the cluster's resources decide, before the run folder: report has nothing to misread."""
    raw = tiny_job(tmp_path, name="gpujob", scaling={"num_workers": 1, "use_gpu": True, "gpus_per_worker": 1, "cpus_per_worker": 1})
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(job), "--address", head_with_dashboard, "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        env=_auth_env(),
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "scaling.gpus_per_worker: one worker needs" in proc.stderr and "fix:" in proc.stderr
    assert not (tmp_path / "runs" / "gpujob").exists()
