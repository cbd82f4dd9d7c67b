import copy
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
