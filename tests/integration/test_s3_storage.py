"""storage: s3:// against a real S3-compatible server (moto's server mode) on loopback.

The CLI runs a sweep whose every file (Tune state, Train checkpoints, Parquet, run.json,
best.json) goes to the bucket; nothing is written locally. The endpoint reaches pyarrow, Ray's
trial actors and Train workers through the standard AWS_ENDPOINT_URL variable.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from distsearch import constants as C
from distsearch.results.files import read_run

from ..conftest import ROOT, assert_losers_name_the_owner, race_to_take, tiny_job

pytestmark = pytest.mark.integration

BUCKET = "distsearch-test"
SECRET = "sekret-" + uuid.uuid4().hex
TOKEN = "tokn-" + uuid.uuid4().hex  # a session token: Tune propagates it like the secret key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    env = {
        # a secret no file may contain: checked after the sweep
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        import boto3

        boto3.client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key=SECRET
        ).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sweep_writes_everything_to_s3(s3_env, tmp_path, monkeypatch):
    """Also the secrets check: the credentials reach every worker (the checkpoints are in the
    bucket) but no file of the run or of the Ray session holds them."""
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    # short: the session's Unix socket paths must fit in 107 bytes
    ray_tmp = tempfile.mkdtemp(prefix="dss3-", dir="/tmp")
    raw = tiny_job(tmp_path, budget={"num_trials": 2, "max_epochs": 2})
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    uri = f"s3://{BUCKET}/runs"
    proc = subprocess.run(
        [sys.executable, "-m", "distsearch", "run", str(job), "--storage", uri, "--run-id", "r1", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, **s3_env, "RAY_TMPDIR": ray_tmp},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    session_files = [p for p in Path(ray_tmp).rglob("*") if p.is_file() and not p.is_socket()]
    assert any(p.name == "runtime_env_agent.log" for p in session_files)  # the file Ray logs runtime envs to
    leaked_local = [str(p) for p in session_files + [p for p in tmp_path.rglob("*") if p.is_file()] if _holds_secret(p)]
    assert leaked_local == []
    shutil.rmtree(ray_tmp, ignore_errors=True)
    run_dir = f"{uri}/{raw['name']}/r1"
    run = read_run(run_dir)  # Parquet and JSON read back through pyarrow's S3 filesystem
    assert len(run["trials"]) == 2 and (run["trials"][C.STATUS] != C.STATUS_ERROR).all()
    assert run["epochs"][C.CHECKPOINT_PATH].dropna().str.startswith(f"s3://{BUCKET}/runs/").all()
    assert run["best"][C.CHECKPOINT_PATH].startswith(f"s3://{BUCKET}/") and "test_accuracy" in run["best"]["test"]
    assert not (tmp_path / "runs").exists()  # nothing fell back to a local path

    import boto3

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.endswith(f"/{C.CHECKPOINT_FILE}") for k in keys)
    assert any(k.startswith(f"runs/{raw['name']}/r1/{C.TUNE_DIR}/") for k in keys)
    assert not any(".tmp" in k for k in keys)  # atomic writes left no temporaries behind
    # security: the cloud secret in the environment is in no file the run wrote, nor in its output
    s3 = boto3.client("s3")
    leaked = [k for k in keys if _secret_in(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())]
    assert leaked == [] and not _secret_in((proc.stdout + proc.stderr).encode())


def _secret_in(data: bytes) -> bool:
    return SECRET.encode() in data or TOKEN.encode() in data


def _holds_secret(path: Path) -> bool:
    try:
        return _secret_in(path.read_bytes())
    except OSError:  # vanished while listed (a log rotated, a socket)
        return False


def test_tabular_task_reads_its_file_from_s3(s3_env, monkeypatch):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    import boto3

    from distsearch.tasks import make_task

    boto3.client("s3").upload_file(str(ROOT / "jobs" / "data" / "wine.parquet"), BUCKET, "data/wine.parquet")
    remote = make_task("tabular", {"path": f"s3://{BUCKET}/data/wine.parquet", "target": "target"})
    local = make_task("tabular", {"path": str(ROOT / "jobs" / "data" / "wine.parquet"), "target": "target"})
    assert remote.num_classes == local.num_classes == 3 and remote.n_rows == local.n_rows == 178


def test_of_drivers_that_take_over_a_run_on_s3_at_once_exactly_one_does(s3_env, tmp_path, monkeypatch):
    """The takeover holds on object storage, which has no exclusive create: three drivers race
    for a run on S3 whose driver died; one takes it over, the others say which driver did."""
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    from distsearch import job, storage
    from distsearch.results import files as results
    from distsearch.spec.model import parse_job

    raw = tiny_job(tmp_path, name="race", storage=f"s3://{BUCKET}/races")
    spec = parse_job(raw)
    out = results.run_dir(spec.storage, spec.name, "r1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    now = "2026-01-01T00:00:00+00:00"
    meta = {"run_id": "r1", "job": spec.to_dict(), "started_at": now, "heartbeat_at": now, "driver": {"host": socket.gethostname(), "pid": int(dead)}}
    storage.write_json(storage.join(out, C.RUN_FILE), meta)
    storage.write_json(storage.join(out, C.LEDGER_DIR, "t0.json"), {C.TRIAL_ID: "t0", C.STARTED_AT: 1.0, C.PARAMS: {}})  # a trial had started
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(raw))
    answers = race_to_take(tmp_path / "job.yaml", env={**os.environ, **s3_env})
    assert sorted(a.split()[0] for a in answers) == ["LOST", "LOST", "WON"], answers
    assert_losers_name_the_owner(answers, "race", dead_pid=dead)
    assert job.choose_run(spec, resume="require") == ("r1", True)  # the winner has exited since


def test_an_image_folder_in_a_bucket_reads_as_the_local_one(s3_env, shipped_data, monkeypatch):
    """task: images with path s3://...: listed and read through pyarrow's S3 filesystem, as any user's bucket."""
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    import boto3

    from distsearch.tasks import make_task

    local = shipped_data / "digits_images"
    client = boto3.client("s3")
    for f in sorted(local.glob("[0-2]/*.png"))[::10]:  # three classes, every tenth file
        client.upload_file(str(f), BUCKET, f"images/{f.parent.name}/{f.name}")
    remote = make_task("images", {"path": f"s3://{BUCKET}/images", "image_size": 8})
    assert remote.class_names == ["0", "1", "2"] and len(remote.blobs) == len(sorted(local.glob("[0-2]/*.png"))[::10])
    assert remote.blobs[0] == sorted(local.glob("0/*.png"))[0].read_bytes()
    x, y = next(iter(remote.batches(remote.splits(0).train, torch.arange(4), 4, {}, train=False)))
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.uint8
