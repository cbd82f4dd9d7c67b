"""distsearch: ASHA-scheduled search over PyTorch training recipes and model families on Ray.

The public API: ``load_job`` and ``parse_job`` (a validated ``JobSpec``), ``run_job`` (one
job end to end), ``read_run`` (a run's files as DataFrames) and ``load_model`` (a run's selected
model, ready to predict); see README.md and docs/.
Importing it does not start Ray.
"""

from .constants import VERSION as __version__  # noqa: E402
from .spec.model import JobSpec, SpecError, load_job, parse_job  # noqa: E402

__all__ = ["JobSpec", "SpecError", "load_job", "load_model", "parse_job", "run_job", "read_run", "__version__"]


def __getattr__(name):  # heavy modules load on first use, not on import
    if name == "run_job":
        from .job import run_job

        return run_job
    if name == "load_model":
        from .select.load import load_model

        return load_model
    if name == "read_run":
        from .results.files import read_run

        return read_run
    raise AttributeError(name)
