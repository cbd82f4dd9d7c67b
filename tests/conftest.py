import copy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"


@pytest.fixture
def quickstart_raw():
    """The quickstart job as a plain dict, to mutate into bad specs."""
    return copy.deepcopy(yaml.safe_load((JOBS / "quickstart.yaml").read_text()))


def tiny_job(tmp_path, **overrides):
    """A small, valid digits job dict: fast trials for the integration suite."""
    raw = {
        "name": "tiny",
        "task": "digits",
        "seed": 1,
        "metric": "val_accuracy",
        "mode": "max",
        "space": {
            "model": {"choice": {"mlp": {"depth": {"randint": [1, 3]}, "width": {"choice": [16, 32]}}}},
            "lr": {"loguniform": [1.0e-4, 3.0e-1]},
            "optimizer": {"choice": ["sgd", "adam"]},
            "batch_size": 128,
        },
        "budget": {"num_trials": 4, "max_epochs": 3},
        "asha": {"grace_period_epochs": 1, "reduction_factor": 3},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
        "storage": str(tmp_path / "runs"),
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


_TAKE = """
import sys, time
from distsearch import job
from distsearch.spec.model import load_job
spec = load_job(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start at once, imports done
try:  # a driver that starts after the winner's claim already loses when it chooses the run
    run_id, resuming = job.choose_run(spec, resume="require")
    print("WON", job.take_run(spec, run_id, resuming)["generation"])
except ValueError as e:
    print("LOST", e)
"""


def race_to_take(job_file, n=3, env=None) -> list[str]:
    """``n`` driver processes started together, each choosing and taking over the newest run of
    the job in ``job_file`` (as ``distsearch run`` does before Ray starts): their last lines."""
    at = str(time.time() + 5)
    procs = [subprocess.Popen([sys.executable, "-c", _TAKE, str(job_file), at], stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
    return [p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs]


def assert_losers_name_the_owner(answers: list[str], job: str, dead_pid=None) -> None:
    """Each ``LOST`` answer of ``race_to_take`` refuses run r1 of ``job`` and names the driver that
    owns it: the winner's claim was there when the loser chose the run (a slow start) or before it
    wrote its own, or the loser lost on the claims' order. Never the dead driver ``dead_pid``, when given."""
    lost = [a for a in answers if a.startswith("LOST")]
    assert all(f"run r1 of job '{job}' is not resumed by this driver: " in a or f"run of job '{job}', r1, cannot be resumed: " in a for a in lost), (
        answers
    )
    assert all(("another driver (pid " in a and "took it over at" in a) or ("its driver (pid " in a and "is still running" in a) for a in lost), (
        answers
    )
    if dead_pid is not None:
        assert not any(f"(pid {dead_pid} on" in a for a in lost), answers


@pytest.fixture(scope="session")
def shipped_data(tmp_path_factory):
    """What the text and images jobs' data scripts build (jobs/data), built once into a temporary folder."""
    out = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, str(JOBS / "data" / "build_text.py"), "--out", str(out)], check=True, capture_output=True)
    subprocess.run([sys.executable, str(JOBS / "data" / "export_images.py"), "--out", str(out / "digits_images")], check=True, capture_output=True)
    return out


def load_shipped(path, request):
    """The shipped job at ``path``; a text or images job reads the data its script in jobs/data/
    builds (not in the repository) from the session's ``shipped_data`` folder instead."""
    from distsearch.spec import yaml_load as spec_yaml
    from distsearch.spec.model import load_job, parse_job

    path = Path(path)
    text = path.read_text()
    if spec_yaml.load(text).get("task") not in ("text", "images"):
        return load_job(path)
    data = request.getfixturevalue("shipped_data")
    return parse_job(spec_yaml.load(text.replace("jobs/data/", f"{data}/")), str(path))


def text_job(tmp_path, data, **overrides):
    """A small text job over the shipped docstrings: both checkpoints and a from-scratch encoder."""
    space = {
        "model": {
            "choice": {
                "hf": {"checkpoint": {"choice": [str(data / "text-models" / "bert-2l"), str(data / "text-models" / "distilbert-2l")]}},
                "encoder": {"depth": 1, "width": 64, "heads": 2},
            }
        },
        "optimizer": "adamw",
        "lr": {"loguniform": [2.0e-3, 5.0e-3]},
        "warmup_fraction": 0.1,
        "lr_schedule": "linear",
        "batch_size": 32,
        "max_length": 64,
        "freeze_epochs": {"choice": [0, 1]},
    }
    options = {"path": str(data / "stdlib_docs.parquet"), "max_tokens": 64, "cache_dir": str(tmp_path / "tokens")}
    return tiny_job(tmp_path, **{"task": "text", "task_options": options, "space": space, **overrides})


def images_job(tmp_path, data, **overrides):
    """A small images job over the exported digit scans: the CNN and ResNet-18, with augmentation."""
    space = {
        "model": {"choice": {"cnn": {"depth": 1, "channels": 16, "width": 64}, "resnet18": {}}},
        "input_size": 16,
        "crop_padding": {"choice": [0, 2]},
        "lr": {"loguniform": [2.0e-3, 5.0e-3]},
        "optimizer": "adam",
        "batch_size": 32,
    }
    options = {"path": str(data / "digits_images"), "image_size": 16, "loader_workers": 1}
    return tiny_job(tmp_path, **{"task": "images", "task_options": options, "space": space, **overrides})
