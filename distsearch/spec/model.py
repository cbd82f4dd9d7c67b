"""The job spec: a declarative YAML file, validated completely before Ray starts.

``load_job(path)`` returns a frozen ``JobSpec`` or raises ``SpecError`` whose message has one
line per problem, each naming the field, the value it got, and how to fix it. Task-specific
checks (does the task exist, does the metric exist, are the space's parameters ones the task
reads) live in ``distsearch.validate.check_job``, which ``distsearch.job`` calls once per command
right after this module, still before Ray starts.

The search space's grammar lives in ``distsearch.space.grammar``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..space.grammar import parse_space
from ..space.params import Choice, Conditional, Fixed, Param, RandInt, Uniform, is_parsed
from ..space.points import point_problems
from . import objectives as multi
from . import yaml_load as spec_yaml
from .errors import SpecError, format_validation_error
from .objectives import Bound, Costs
from .sections import TRIAL_PROCESSES, Asha, Budget, Checkpointing, Ensemble, Harness, Scaling, Search, Selection, _Section

__all__ = [
    "Asha",
    "Bound",
    "Budget",
    "Checkpointing",
    "Choice",
    "Conditional",
    "Costs",
    "Fixed",
    "Harness",
    "JobSpec",
    "Param",
    "RandInt",
    "Scaling",
    "Search",
    "SpecError",
    "TRIAL_PROCESSES",
    "Uniform",
    "load_job",
    "parse_job",
]

#: URI schemes of the filesystems pyarrow opens, which storage can name.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
#: A job name or run id: one path component, no "..", no trailing newline (``fullmatch``, not ``$``).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class JobSpec(_Section):
    """A complete, validated job. Every field has a unit or a closed set of values."""

    name: str = Field(description="job name, the folder under storage (letters, digits, _ . -; up to 64 characters)")
    task: str = Field(description="task name: digits, tabular, charlm, text, images or custom (see docs/tasks.md)")
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="seed for the data splits, the search and the weights (integer, 0..4294967295, what NumPy accepts)"
    )
    metric: str = Field(description="the reported metric ASHA and model selection optimise, e.g. val_accuracy")
    mode: Literal["min", "max"] = Field(description="min or max: whether a lower or higher metric is better")
    objectives: list[dict[str, Literal["min", "max"]]] = Field(
        default_factory=list,
        description="several metrics optimised at once, one metric: mode pair each (e.g. - val_accuracy: max, - latency_ms: min), "
        "the job's metric among them: ASHA's rungs rank trials by Pareto order and the searcher models every objective; "
        "the job's metric still picks the single model and the ensemble; a task's val_ and train_ metrics or a cost metric "
        "(num_params, model_bytes, latency_ms, peak_memory_bytes), which each trial then measures on its own device; "
        "empty: the job's metric alone",
    )
    constraints: dict[str, Bound] = Field(
        default_factory=dict,
        description="bounds on reported metrics, metric -> {min, max} (e.g. latency_ms: {max: 5}), with objectives: a trial "
        "outside them ranks after every trial inside at ASHA's rungs and for the searcher, has no Pareto rank, and is not "
        "selected while any trial meets them; an ensemble keeps its members' summed cost within a bound on a cost; empty: none",
    )
    costs: Costs = Field(
        default_factory=Costs, description="how each trial measures its model's latency_ms, when an objective or a constraint names it"
    )
    space: dict[str, Param] = Field(description="the search space: parameter name -> distribution (the grammar is in docs/job-spec.md)")
    budget: Budget = Field(default_factory=Budget, description="how many trials, how many epochs each")
    asha: Asha = Field(default_factory=Asha, description="ASHA early-stopping settings")
    scaling: Scaling = Field(default_factory=Scaling, description="per-trial worker group resources")
    max_concurrent_trials: Optional[int] = Field(
        None, ge=1, description="trials running at once (count >= 1); unset derives it from the cluster's CPUs and GPUs"
    )
    checkpointing: Checkpointing = Field(default_factory=Checkpointing, description="per-trial checkpoint retention")
    search: Search = Field(default_factory=Search, description="the searcher that proposes trials")
    selection: Selection = Field(default_factory=Selection, description="how the sweep's models are picked on the validation split")
    ensemble: Ensemble = Field(default_factory=Ensemble, description="the ensemble of the sweep's best checkpoints")
    harness: Harness = Field(default_factory=Harness, description="Ray harness knobs; the defaults suit small trials")
    task_options: dict[str, Any] = Field(default_factory=dict, description="task-specific options (see docs/tasks.md)")
    storage: str = Field("./runs", description="where runs are written: a local path or a URI (file://, s3://, gs://)")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError(f"name: got {v!r}; use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _parse_space(cls, v: Any) -> Any:
        if is_parsed(v):
            return v  # already parsed, or dumped by to_dict(): pydantic validates it as is
        problems: list[str] = []
        parsed = parse_space("space", v, problems)
        if problems:
            raise ValueError("\n".join(problems))
        if not parsed:
            raise ValueError("space: got {}; give at least one parameter, e.g. lr: {loguniform: [1.0e-4, 1.0e-1]}")
        return parsed

    @field_validator("storage")
    @classmethod
    def _storage_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("storage: got ''; fix: give a local path such as ./runs or a URI such as s3://bucket/prefix")
        if "://" in v:
            scheme = v.split("://", 1)[0].lower()
            if scheme not in STORAGE_SCHEMES:
                raise ValueError(f"storage: got {v!r}; fix: use a local path or a URI of {', '.join(f'{s}://' for s in STORAGE_SCHEMES)}")
        elif Path(v).expanduser().is_file():
            raise ValueError(f"storage: got {v!r}, which is a file; fix: give a directory (it is created if missing)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _trial_processes_resolved(cls, data: Any) -> Any:
        """``harness.trial_processes: auto`` (or unset) becomes the value it stands for, so that
        the job every trial and a resumed driver read, and run.json, name what ran."""
        if not isinstance(data, dict):
            return data
        harness, scaling = data.get("harness") or {}, data.get("scaling") or {}
        if not isinstance(harness, dict) or not isinstance(scaling, dict) or harness.get("trial_processes", "auto") != "auto":
            return data
        lone = scaling.get("num_workers", Scaling.model_fields["num_workers"].default) == 1 and not harness.get("max_worker_failures")
        return {**data, "harness": {**harness, "trial_processes": "trial_actor" if lone else "kept_worker_group"}}

    @model_validator(mode="after")
    def _cross_field(self) -> "JobSpec":
        if self.harness.trains_in_trial_actor and self.scaling.num_workers > 1:
            raise ValueError(
                f"scaling.num_workers: got {self.scaling.num_workers} with harness.trial_processes: trial_actor, which trains one "
                "worker in the trial's own actor; fix: set harness.trial_processes: auto (kept_worker_group for DDP), or num_workers: 1"
            )
        if self.harness.trains_in_trial_actor and self.harness.max_worker_failures:
            raise ValueError(
                f"harness.max_worker_failures: got {self.harness.max_worker_failures} with harness.trial_processes: trial_actor, "
                "whose trial fails with its actor (no Ray Train run restarts it); fix: set harness.trial_processes: kept_worker_group, "
                "or max_worker_failures: 0"
            )
        if self.asha.grace_period_epochs > self.budget.max_epochs:
            raise ValueError(
                f"asha.grace_period_epochs: got {self.asha.grace_period_epochs} > budget.max_epochs {self.budget.max_epochs}; "
                f"set grace_period_epochs to at most {self.budget.max_epochs}"
            )
        if self.budget.worker_epochs is not None and self.budget.worker_epochs < self.scaling.num_workers:
            raise ValueError(
                f"budget.worker_epochs: got {self.budget.worker_epochs}, less than one epoch of one trial "
                f"(scaling.num_workers: {self.scaling.num_workers} workers); fix: set it to at least {self.scaling.num_workers}, or leave it unset"
            )
        if self.selection.checkpoints_per_trial > self.checkpointing.num_to_keep + 1:
            raise ValueError(
                f"selection.checkpoints_per_trial: got {self.selection.checkpoints_per_trial} > checkpointing.num_to_keep + 1 = "
                f"{self.checkpointing.num_to_keep + 1}, the checkpoints a trial keeps; fix: set checkpointing.num_to_keep to at least "
                f"{self.selection.checkpoints_per_trial - 1}, or checkpoints_per_trial to at most {self.checkpointing.num_to_keep + 1}"
            )
        problems = [
            f"search.points_to_evaluate[{i}].{p}" for i, pt in enumerate(self.search.points_to_evaluate) for p in point_problems(self.space, pt)
        ]
        problems += multi.problems(self.metric, self.mode, self.objectives, self.constraints, self.asha.variant)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``JobSpec.model_validate`` turns back into an equal spec."""
        return self.model_dump(mode="json")


def parse_job(raw: Any, source: str = "job spec") -> JobSpec:
    """Validate an already-loaded mapping into a ``JobSpec``; raises ``SpecError``."""
    if not isinstance(raw, dict):
        raise SpecError([f"(top level): got {type(raw).__name__}; a job spec is a YAML mapping with name, task, metric, mode, space"], source)
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, JobSpec), source) from None


def load_job(path: Union[str, Path]) -> JobSpec:
    """Read and validate a YAML job spec; raises ``SpecError`` naming each bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(
            [f"(file): cannot read {str(path)!r}: {e.strerror}; give the path of a YAML job spec, e.g. jobs/quickstart.yaml"], str(path)
        ) from None
    try:
        raw = spec_yaml.load(text)
    except spec_yaml.YamlProblem as e:
        raise SpecError([f"(file): {e}"], str(path)) from None
    except yaml.YAMLError as e:
        raise SpecError([f"(file): not valid YAML: {e}"], str(path)) from None
    return parse_job(raw, str(path))
