"""A library call leaves the caller's process as it found it: run_job with its own embedded Ray,
then the report, change no environment variable, matplotlib setting, sys.path entry, log level
or torch's global random state."""

import logging
import os
import sys

import matplotlib
import pytest

from distsearch.job import run_job
from distsearch.results import report
from distsearch.spec.model import parse_job

from ..conftest import tiny_job

pytestmark = pytest.mark.integration


def _state() -> dict:
    import optuna
    import torch

    loggers = {name: lg.level for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    return {
        "environ": dict(os.environ),
        "rcParams": {k: v for k, v in matplotlib.rcParams.items() if k != "backend_fallback"},
        "backend": matplotlib.get_backend(),
        "sys.path": list(sys.path),
        "root level": logging.root.level,
        "root handlers": list(logging.root.handlers),
        "loggers": loggers,
        "optuna verbosity": optuna.logging.get_verbosity(),
        "torch RNG": bytes(torch.get_rng_state().numpy()),
    }


def test_run_job_and_the_report_leave_the_callers_process_as_they_found_it(tmp_path):
    import ray

    assert not ray.is_initialized()  # run_job starts (and ends) its own embedded Ray here
    import ray.train  # noqa: F401 - their loggers exist before, as in a user's script that imported them
    import ray.tune  # noqa: F401

    spec = parse_job(
        tiny_job(tmp_path, budget={"num_trials": 3, "max_epochs": 2}, search={"algorithm": "tpe", "startup_trials": 2}, max_concurrent_trials=1)
    )
    before = _state()
    result = run_job(spec)
    report.write_report(result.run_dir)
    after = _state()
    assert result.best is not None
    for key in before:
        if key == "loggers":  # loggers created during the run are new, not changed
            changed = {n: (lvl, after[key][n]) for n, lvl in before[key].items() if after[key].get(n) != lvl}
            assert changed == {}, changed
        elif key == "environ":
            diff = {k: (before[key].get(k), after[key].get(k)) for k in set(before[key]) | set(after[key]) if before[key].get(k) != after[key].get(k)}
            assert diff == {}, diff
        else:
            assert after[key] == before[key], key
