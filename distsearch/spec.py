"""The job spec: a declarative YAML file, validated completely before Ray starts.

``load_job(path)`` returns a frozen ``JobSpec`` or raises ``SpecError`` whose message has one
line per problem, each naming the field, the value it got, and how to fix it. Task-specific
checks (does the task exist, does the metric exist, are the space's parameters ones the task
reads) live in ``distsearch.tasks.check_job``, which ``distsearch.job`` calls once per command
right after this module, still before Ray starts.

The search space's grammar lives in ``distsearch.params``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import spec_yaml
from .params import Choice, Conditional, Fixed, Param, RandInt, Uniform, _Param, parse_space
from .search_space import Search, point_problems
from .spec_errors import format_validation_error

__all__ = [
    "Asha",
    "Budget",
    "Checkpointing",
    "Choice",
    "Conditional",
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
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SpecError(ValueError):
    """A job spec is invalid. ``problems`` holds one message per invalid field."""

    def __init__(self, problems: list[str], source: str = "job spec"):
        self.problems = problems
        super().__init__(f"{source} is invalid ({len(problems)} problem(s)):\n" + "\n".join(f"  - {p}" for p in problems))


# ---------------------------------------------------------------------------------------------
# The job spec
# ---------------------------------------------------------------------------------------------
class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Section):
    num_trials: int = Field(16, ge=1, le=100_000, description="trials sampled from the space (count, >= 1)")
    max_epochs: int = Field(10, ge=1, le=100_000, description="epochs a trial trains at most (count, >= 1); ASHA's max_t")
    max_failed_trials: Optional[int] = Field(
        None, ge=0, description="failed trials the sweep tolerates (count, >= 0); one more ends it, results so far written; unset: no limit"
    )
    time_s: Optional[float] = Field(
        None, gt=0, allow_inf_nan=False,
        description="wall seconds the sweep may take, counted from its driver's start (seconds, > 0); after it no trial starts, "
        "running ones are cancelled and recorded as such, and the results so far are written; unset: no limit",
    )  # fmt: skip
    trial_timeout_s: Optional[float] = Field(
        None, gt=0, allow_inf_nan=False,
        description="wall seconds one trial may run from its start (seconds, > 0); a trial past it is ended, recorded as an error "
        "that says it timed out, its worker group released, and the sweep goes on; unset: no limit",
    )  # fmt: skip


class Asha(_Section):
    enabled: bool = Field(True, description="true: ASHA stops weak trials early; false: every trial runs max_epochs (FIFO random search)")
    grace_period_epochs: int = Field(1, ge=1, description="epochs every trial runs before ASHA may stop it (count, 1..max_epochs)")
    reduction_factor: float = Field(3.0, ge=2, description="ASHA keeps 1/reduction_factor of trials at each rung (ratio, >= 2)")
    brackets: int = Field(1, ge=1, le=10, description="ASHA brackets (count, 1..10)")


class Scaling(_Section):
    num_workers: int = Field(2, ge=1, le=4096, description="DDP workers per trial (count, >= 1)")
    cpus_per_worker: float = Field(1.0, ge=0.01, description="CPUs reserved per worker (CPUs, >= 0.01; fractions pack trials)")
    use_gpu: bool = Field(False, description="train on CUDA with NCCL (true) or on CPU with gloo (false)")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs reserved per worker (GPUs, > 0 when use_gpu; fractions only with 1 worker)")

    @model_validator(mode="after")
    def _gpu_consistent(self) -> "Scaling":
        if self.use_gpu and self.gpus_per_worker == 0:
            raise ValueError("scaling.gpus_per_worker: got 0 with use_gpu: true; set gpus_per_worker: 1 (or a fraction with num_workers: 1)")
        if not self.use_gpu and self.gpus_per_worker > 0:
            raise ValueError(f"scaling.gpus_per_worker: got {self.gpus_per_worker} with use_gpu: false; set use_gpu: true or gpus_per_worker: 0")
        if self.use_gpu and self.num_workers > 1 and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ValueError(
                f"scaling.gpus_per_worker: got {self.gpus_per_worker} with num_workers: {self.num_workers}; NCCL cannot put two ranks "
                "on one device, so multi-worker trials need whole GPUs: set gpus_per_worker: 1, or num_workers: 1 to pack fractions"
            )
        return self


class Checkpointing(_Section):
    num_to_keep: int = Field(
        2,
        ge=1,
        description="checkpoints kept per trial: the best by the job's metric (count, >= 1), plus the latest, which Ray Train always keeps for resuming",
    )


class Ensemble(_Section):
    enabled: bool = Field(
        True,
        description="after the sweep, select an ensemble of the best trials' best checkpoints on the validation split "
        "(greedy forward selection with replacement) and score it once on the test split beside the single best (true), "
        "or keep the single best only (false)",
    )
    top_trials: int = Field(
        8, ge=1, le=100, description="candidates: the best trials by the job's metric, each at its best checkpoint (count, 1..100)"
    )
    rounds: int = Field(
        20, ge=1, le=1000, description="selection rounds: members added, with replacement, before the best-scoring prefix is kept (count, 1..1000)"
    )


#: How a trial gets its processes, from Ray's own path to the most reuse; see ``Harness.trial_processes``.
TRIAL_PROCESSES = ("ray", "controller_in_trial", "reused_actor", "kept_worker_group")
# The three booleans that ``trial_processes`` replaced, refused with the value they meant.
_OLD_HARNESS_KEYS = ("train_controller", "reuse_trial_actors", "reuse_worker_groups")


class Harness(_Section):
    """Knobs of the Ray harness itself, not of the model. The defaults suit small trials."""

    report_poll_interval_s: float = Field(
        0.1,
        gt=0,
        le=60,
        description="how often Ray Train's controller drains worker reports (seconds, 0..60; Ray's default is 2.0, which "
        "can add that much to every epoch); sets RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
    )
    worker_start_timeout_s: float = Field(
        60.0, gt=0, description="how long a trial's worker group may wait for resources before the attempt fails (seconds, > 0)"
    )
    worker_start_attempts: int = Field(
        2, ge=1, le=100, description="attempts to start a trial's worker group before the trial fails (count, >= 1; Ray's default is unlimited)"
    )
    max_worker_failures: int = Field(0, ge=0, description="times a trial restarts from its last checkpoint after a worker dies (count, >= 0)")
    release_timeout_s: float = Field(10.0, gt=0, description="how long the driver waits for a finished trial's worker group to go (seconds, > 0)")
    checkpoint_upload: Literal["async", "sync"] = Field(
        "async",
        description="how rank 0's checkpoint is copied to storage: async (in Ray Train's upload thread while the next epoch "
        "trains) or sync (the report waits for the copy; Ray's default)",
    )
    trial_processes: Literal["ray", "controller_in_trial", "reused_actor", "kept_worker_group"] = Field(
        "kept_worker_group",
        description="how a trial gets its processes, each value adding one step of reuse to the one before: "
        "ray (Ray's own path: a new Tune actor per trial, whose Ray Train controller is an actor of its own); "
        "controller_in_trial (the controller runs inside the trial's Tune actor: one process and one report-queue actor "
        "fewer per trial); reused_actor (as controller_in_trial, and Tune runs the next trial in the actor of one that "
        "ended, which first ends the old trial's worker group itself); kept_worker_group (as reused_actor, and the actor "
        "keeps its Train worker group, its processes, sync actor and placement group, for its next trial, so that a trial "
        "starts no new process: a trial that ends asks its workers to stop at their next report and waits up to "
        "release_timeout_s / 2 for them, else ends the group as Ray Train does)",
    )
    spare_worker_keep_alive_s: Optional[float] = Field(
        None,
        ge=0,
        le=86_400,
        description="spare worker processes that import torch and distsearch ahead of time, so that a trial's Train "
        "worker starts in one instead of in a new process: the driver has its node's Ray start the first trials' spares "
        "before Tune starts, and each Train worker, as it starts, has its node's Ray start one for the trial after its "
        "own. Ray keeps an unused spare at least this long and ends it with the job (seconds, 0..86400; 0: no spares, "
        "Ray's default; unset: 600, but for the later trials' spares only when the trials at full concurrency leave a "
        "CPU of the cluster free for them to start on and trial_processes is not kept_worker_group, else 0)",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_keys_name_the_new_field(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(k in data for k in _OLD_HARNESS_KEYS):
            return data
        if data.get("train_controller") == "actor":
            value = "ray"
        elif data.get("reuse_trial_actors") is False:
            value = "controller_in_trial"
        elif data.get("reuse_worker_groups") is False:
            value = "reused_actor"
        else:
            value = "kept_worker_group"
        old = ", ".join(f"harness.{k}: {json.dumps(data[k])}" for k in _OLD_HARNESS_KEYS if k in data)
        raise ValueError(f"{old}: these keys were replaced by one field; fix: remove them and write harness.trial_processes: {value}")

    @property
    def controller_in_trial(self) -> bool:
        """Whether each trial's Ray Train controller runs inside its Tune actor."""
        return self.trial_processes != "ray"

    @property
    def reuses_trial_actors(self) -> bool:
        """Whether Tune runs the next trial in the actor of one that ended."""
        return self.trial_processes in ("reused_actor", "kept_worker_group")

    @property
    def reuses_worker_groups(self) -> bool:
        """Whether a trial actor keeps its worker group for its next trial (distsearch._ray.warm)."""
        return self.trial_processes == "kept_worker_group"

    @property
    def settle_wait_s(self) -> float:
        """How long a kept group's end waits for its workers to stop at their next report (seconds)."""
        return self.release_timeout_s / 2


class JobSpec(_Section):
    """A complete, validated job. Every field has a unit or a closed set of values."""

    name: str = Field(description="job name, the folder under storage (letters, digits, _ . -; up to 64 characters)")
    task: str = Field(description="task name: digits, tabular, charlm, text, images or custom (see docs/tasks.md)")
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="seed for the data splits, the search and the weights (integer, 0..4294967295, what NumPy accepts)"
    )
    metric: str = Field(description="the reported metric ASHA and model selection optimise, e.g. val_accuracy")
    mode: Literal["min", "max"] = Field(description="min or max: whether a lower or higher metric is better")
    space: dict[str, Param] = Field(description="the search space: parameter name -> distribution (the grammar is in docs/job-spec.md)")
    budget: Budget = Field(default_factory=Budget, description="how many trials, how many epochs each")
    asha: Asha = Field(default_factory=Asha, description="ASHA early-stopping settings")
    scaling: Scaling = Field(default_factory=Scaling, description="per-trial worker group resources")
    max_concurrent_trials: Optional[int] = Field(
        None, ge=1, description="trials running at once (count >= 1); unset derives it from the cluster's CPUs and GPUs"
    )
    checkpointing: Checkpointing = Field(default_factory=Checkpointing, description="per-trial checkpoint retention")
    search: Search = Field(default_factory=Search, description="the searcher that proposes trials")
    ensemble: Ensemble = Field(default_factory=Ensemble, description="the ensemble of the sweep's best checkpoints")
    harness: Harness = Field(default_factory=Harness, description="Ray harness knobs; the defaults suit small trials")
    task_options: dict[str, Any] = Field(default_factory=dict, description="task-specific options (see docs/tasks.md)")
    storage: str = Field("./runs", description="where runs are written: a local path or a URI (file://, s3://, gs://)")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"name: got {v!r}; use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return v

    @field_validator("space", mode="before")
    @classmethod
    def _parse_space(cls, v: Any) -> Any:
        if isinstance(v, dict) and v and all(isinstance(p, _Param) or (isinstance(p, dict) and "kind" in p) for p in v.values()):
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

    @model_validator(mode="after")
    def _cross_field(self) -> "JobSpec":
        if self.asha.grace_period_epochs > self.budget.max_epochs:
            raise ValueError(
                f"asha.grace_period_epochs: got {self.asha.grace_period_epochs} > budget.max_epochs {self.budget.max_epochs}; "
                f"set grace_period_epochs to at most {self.budget.max_epochs}"
            )
        problems = [
            f"search.points_to_evaluate[{i}].{p}" for i, pt in enumerate(self.search.points_to_evaluate) for p in point_problems(self.space, pt)
        ]
        for key in ("warm_start", "points_to_evaluate"):
            if getattr(self.search, key) and self.search.algorithm == "random":
                problems.append(f"search.{key}: given with algorithm: random, which takes neither; fix: set search.algorithm: tpe, or drop {key}")
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
