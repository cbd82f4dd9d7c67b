"""The job spec: a declarative YAML file, validated completely before Ray starts.

``load_job(path)`` returns a frozen ``JobSpec`` or raises ``SpecError`` whose message has one
line per problem, each naming the field, the value it got, and how to fix it. Task-specific
checks (does the task exist, does the metric exist, are the space's parameters ones the task
reads) live in ``distsearch.tasks.check_job``, which the CLI and the driver call right after
this module, still before Ray starts.

Search-space grammar (one entry per hyperparameter under ``space:``)::

    lr:         {loguniform: [1.0e-4, 1.0e-1]}    # float, log scale, [lo, hi)
    dropout:    {uniform: [0.0, 0.5]}             # float, [lo, hi)
    depth:      {randint: [1, 4]}                 # int, [lo, hi)  (hi exclusive, as in Tune)
    width:      {qrandint: [32, 256, 32]}         # int, multiples of q in [lo, hi]
    wd:         {qloguniform: [1e-6, 1e-2, 1e-6]} # float, log scale, rounded to q
    momentum:   {quniform: [0.8, 0.99, 0.01]}     # float, rounded to q
    optimizer:  {choice: [sgd, adam, adamw]}      # one of a list
    epochs_x:   3                                 # a constant
    model:                                        # conditional: a choice whose options
      choice:                                     # each open their own sub-space
        mlp: {depth: {randint: [1, 4]}}
        cnn: {channels: {choice: [16, 32]}}

A conditional parameter's sampled value is the option's name; its sub-parameters are named
``<param>.<sub>`` (``model.depth``), and are absent from trials of the other options.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Scalar = Union[bool, int, float, str]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class SpecError(ValueError):
    """A job spec is invalid. ``problems`` holds one message per invalid field."""

    def __init__(self, problems: list[str], source: str = "job spec"):
        self.problems = problems
        super().__init__(f"{source} is invalid ({len(problems)} problem(s)):\n" + "\n".join(f"  - {p}" for p in problems))


# ---------------------------------------------------------------------------------------------
# Search-space parameters
# ---------------------------------------------------------------------------------------------
class _Param(BaseModel):
    model_config = ConfigDict(frozen=True)


class Fixed(_Param):
    kind: Literal["fixed"] = "fixed"
    value: Scalar


class Choice(_Param):
    kind: Literal["choice"] = "choice"
    values: tuple[Scalar, ...]


class Conditional(_Param):
    kind: Literal["conditional"] = "conditional"
    options: dict[str, dict[str, "Param"]]


class Uniform(_Param):
    kind: Literal["uniform", "loguniform", "quniform", "qloguniform"]
    low: float
    high: float
    q: Optional[float] = None


class RandInt(_Param):
    kind: Literal["randint", "qrandint"]
    low: int
    high: int
    q: Optional[int] = None


Param = Union[Fixed, Choice, Conditional, Uniform, RandInt]
Conditional.model_rebuild()

_FLOAT_FORMS = ("uniform", "loguniform", "quniform", "qloguniform")
_INT_FORMS = ("randint", "qrandint")
_FORMS = _FLOAT_FORMS + _INT_FORMS + ("choice",)


def parse_param(path: str, raw: Any, problems: list[str]) -> Optional[Param]:
    """Parse one YAML search-space entry; append a message to ``problems`` and return None if bad."""

    def bad(value: Any, fix: str) -> None:
        problems.append(f"{path}: got {value!r}; {fix}")

    if not isinstance(raw, dict):
        if isinstance(raw, (bool, int, float, str)):
            return Fixed(value=raw)
        bad(raw, f"write a constant or a mapping with one of the keys {', '.join(_FORMS)}")
        return None
    if len(raw) != 1 or next(iter(raw)) not in _FORMS:
        bad(raw, f"write exactly one of the keys {', '.join(_FORMS)}, e.g. {{loguniform: [1.0e-4, 1.0e-1]}}")
        return None
    form, args = next(iter(raw.items()))
    if form == "choice":
        if isinstance(args, dict):
            return _parse_conditional(path, args, problems)
        if not isinstance(args, list) or not args:
            bad(args, "give choice a non-empty list of values, e.g. {choice: [sgd, adam]}")
            return None
        if any(not isinstance(v, (bool, int, float, str)) for v in args):
            bad(args, "choice values must be numbers, strings or booleans; for sub-spaces write {choice: {option: {...}}}")
            return None
        if len(set(map(repr, args))) != len(args):
            bad(args, "remove the repeated values from the choice")
            return None
        return Choice(values=tuple(args))
    arity = 3 if form.startswith("q") else 2
    shape = "[low, high, q]" if arity == 3 else "[low, high]"
    if not isinstance(args, list) or len(args) != arity or any(isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
        bad(args, f"{form} takes a list of {arity} numbers {shape}")
        return None
    if any(not math.isfinite(a) for a in args):
        bad(args, f"{form} bounds must be finite numbers")
        return None
    low, high = args[0], args[1]
    if form in _INT_FORMS and any(float(a) != int(a) for a in args):
        bad(args, f"{form} takes integers; use uniform for floats")
        return None
    if not low < high:
        bad(args, f"low must be below high: write {form}: [{min(low, high)}, {max(low, high)}{', q' if arity == 3 else ''}] with distinct bounds")
        return None
    if "log" in form and low <= 0:
        bad(args, f"{form} needs 0 < low; use uniform for ranges that include 0 or negatives")
        return None
    if arity == 3 and not args[2] > 0:
        bad(args, "the step q must be > 0")
        return None
    if form == "randint" and high - low < 1:
        bad(args, "randint's high is exclusive; make high >= low + 1")
        return None
    if form in _INT_FORMS:
        return RandInt(kind=form, low=int(low), high=int(high), q=int(args[2]) if arity == 3 else None)
    return Uniform(kind=form, low=float(low), high=float(high), q=float(args[2]) if arity == 3 else None)


def _parse_conditional(path: str, options: dict, problems: list[str]) -> Optional[Conditional]:
    if not options:
        problems.append(f"{path}.choice: got {{}}; list at least one option, e.g. {{choice: {{mlp: {{}}, cnn: {{}}}}}}")
        return None
    parsed: dict[str, dict[str, Param]] = {}
    ok = True
    for option, sub in options.items():
        if not isinstance(option, str) or not PARAM_RE.match(option):
            problems.append(f"{path}.choice: option name {option!r} is not an identifier; use letters, digits and _")
            ok = False
            continue
        if sub is None:
            sub = {}
        if not isinstance(sub, dict):
            problems.append(f"{path}.choice.{option}: got {sub!r}; an option maps parameter names to their spaces, or is {{}}")
            ok = False
            continue
        space = parse_space(f"{path}.choice.{option}", sub, problems)
        if space is None:
            ok = False
        else:
            parsed[option] = space
    return Conditional(options=parsed) if ok else None


def parse_space(path: str, raw: Any, problems: list[str]) -> Optional[dict[str, Param]]:
    """Parse a mapping of parameter name to parameter; None (with problems appended) if bad."""
    if not isinstance(raw, dict):
        problems.append(f"{path}: got {raw!r}; write a mapping of parameter name to its space")
        return None
    out: dict[str, Param] = {}
    before = len(problems)
    for name, entry in raw.items():
        if not isinstance(name, str) or not PARAM_RE.match(name):
            problems.append(f"{path}: parameter name {name!r} is not an identifier; use letters, digits and _")
            continue
        param = parse_param(f"{path}.{name}", entry, problems)
        if param is not None:
            out[name] = param
    return out if len(problems) == before else None


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
    num_to_keep: int = Field(2, ge=1, description="checkpoints kept per trial: the best by the job's metric (count, >= 1), plus the latest, which Ray Train always keeps for resuming")


class Harness(_Section):
    """Knobs of the Ray harness itself, not of the model. The defaults suit small trials."""

    report_poll_interval_s: float = Field(
        0.1, gt=0, le=60,
        description="how often Ray Train's controller drains worker reports (seconds, 0..60; Ray's default is 2.0, which "
        "adds up to 2 s per epoch to every trial); sets RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
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
    train_controller: Literal["trial", "actor"] = Field(
        "trial",
        description="where each trial's Ray Train controller runs: trial (inside the trial's Tune actor, which saves two "
        "process spawns per trial: the controller actor and its report-queue actor) or actor (its own actor, Ray's default)",
    )
    reuse_trial_actors: Optional[bool] = Field(
        None,
        description="run the next trial in the Tune actor of one that has ended (Tune's reuse_actors), so that a trial "
        "does not wait for a new actor to start and import torch and Ray Train; the actor first ends the old trial's "
        "worker group itself. true, false, or unset: true with train_controller: trial, false with actor (Ray's default is false)",
    )
    reuse_worker_groups: Optional[bool] = Field(
        None,
        description="keep a trial's Train worker group (its worker processes, sync actor and placement group) in its "
        "reused Tune actor for the actor's next trial, so that a trial starts no new process: a trial that ends asks its "
        "workers to stop at their next report and waits up to release_timeout_s / 2 for them, else ends the group as Ray "
        "Train does. true, false, or unset: true when reuse_trial_actors is in effect (Ray Train always ends the group)",
    )

    spare_worker_keep_alive_s: Optional[float] = Field(
        None, ge=0, le=86_400,
        description="spare worker processes that import torch and distsearch ahead of time, so that a trial's Train "
        "worker starts in one instead of in a new process (3.1 s to 0.4 s from trial start to first epoch on 2 cores): the "
        "driver has its node's Ray start the first trials' spares before Tune starts, and each Train worker, as it starts, "
        "has its node's Ray start one for the trial after its own. Ray keeps an unused spare at least this long and ends it "
        "with the job (seconds, 0..86400; 0: no spares, Ray's default; unset: 600, but for the later trials' spares only "
        "when the trials at full concurrency leave a CPU of the cluster free for them to start on, else 0)",
    )

    @model_validator(mode="after")
    def _reuse_needs_the_controller_in_the_trial(self):
        if self.reuse_trial_actors and self.train_controller == "actor":
            raise ValueError(
                "harness.reuse_trial_actors: got true with train_controller: actor; a trial actor can end only a worker group "
                "whose controller it runs, so set train_controller: trial, or reuse_trial_actors: false"
            )
        if self.reuse_worker_groups and not self.reuses_trial_actors:
            raise ValueError(
                "harness.reuse_worker_groups: got true, but trial actors are not reused (reuse_trial_actors: false or "
                "train_controller: actor); a worker group is kept in the trial actor for its next trial, so set "
                "train_controller: trial and leave reuse_trial_actors unset, or set reuse_worker_groups: false"
            )
        return self

    @property
    def reuses_trial_actors(self) -> bool:
        """Whether trials run in reused Tune actors: not turned off, and the controller runs in the trial."""
        return self.reuse_trial_actors is not False and self.train_controller == "trial"

    @property
    def reuses_worker_groups(self) -> bool:
        """Whether a trial actor keeps its worker group for its next trial (distsearch.warm)."""
        return self.reuse_worker_groups is not False and self.reuses_trial_actors

    @property
    def settle_wait_s(self) -> float:
        """How long a kept group's end waits for its workers to stop at their next report (seconds)."""
        return self.release_timeout_s / 2


class JobSpec(_Section):
    """A complete, validated job. Every field has a unit or a closed set of values."""

    name: str = Field(description="job name, the folder under storage (letters, digits, _ . -; up to 64 characters)")
    task: str = Field(description="task name: digits, tabular, charlm or custom (see distsearch.tasks)")
    seed: int = Field(0, ge=0, description="seed for the data splits, the search and the weights (integer >= 0)")
    metric: str = Field(description="the reported metric ASHA and model selection optimise, e.g. val_accuracy")
    mode: Literal["min", "max"] = Field(description="min or max: whether a lower or higher metric is better")
    space: dict[str, Param] = Field(description="the search space: parameter name -> distribution (see distsearch.spec)")
    budget: Budget = Field(default_factory=Budget, description="how many trials, how many epochs each")
    asha: Asha = Field(default_factory=Asha, description="ASHA early-stopping settings")
    scaling: Scaling = Field(default_factory=Scaling, description="per-trial worker group resources")
    max_concurrent_trials: Optional[int] = Field(
        None, ge=1, description="trials running at once (count >= 1); unset derives it from the cluster's CPUs and GPUs"
    )
    checkpointing: Checkpointing = Field(default_factory=Checkpointing, description="per-trial checkpoint retention")
    harness: Harness = Field(default_factory=Harness, description="Ray harness knobs; the defaults suit small trials")
    task_options: dict[str, Any] = Field(default_factory=dict, description="task-specific options (see the task's docstring)")
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
            raise ValueError("storage: got ''; give a local path such as ./runs or a URI such as s3://bucket/prefix")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> "JobSpec":
        if self.asha.grace_period_epochs > self.budget.max_epochs:
            raise ValueError(
                f"asha.grace_period_epochs: got {self.asha.grace_period_epochs} > budget.max_epochs {self.budget.max_epochs}; "
                f"set grace_period_epochs to at most {self.budget.max_epochs}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``JobSpec.model_validate`` turns back into an equal spec."""
        return self.model_dump(mode="json")


def _field_description(loc: tuple, model: type[BaseModel] = JobSpec) -> Optional[str]:
    """The description of the field at ``loc``, walking nested sections; None if unknown."""
    desc = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return desc
        info = fields[part]
        desc = info.description
        model = info.annotation if isinstance(info.annotation, type) else None
    return desc


def format_validation_error(err: ValidationError) -> list[str]:
    """One line per pydantic error: the field, the value it got, and the fix."""
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        field = ".".join(str(p) for p in loc) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "value_error":
            problems.extend(msg.splitlines())  # our validators already name field, value and fix
            continue
        value = e.get("input")
        desc = _field_description(loc)
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            fix = f"remove it or fix its spelling; allowed keys here: {', '.join(allowed)}"
        elif e["type"] == "missing":
            fix = f"add it: {desc}" if desc else "add it"
            value = "nothing"
        else:
            fix = f"{field} is {desc}" if desc else msg
        shown = value if value == "nothing" else repr(value)
        problems.append(f"{field}: {msg.lower()}, got {shown}; fix: {fix}")
    return problems


def _allowed_keys(loc: tuple) -> list[str]:
    model: Any = JobSpec
    for part in loc:
        info = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if info is None:
            return []
        model = info.annotation
    return list(getattr(model, "model_fields", {}))


def parse_job(raw: Any, source: str = "job spec") -> JobSpec:
    """Validate an already-loaded mapping into a ``JobSpec``; raises ``SpecError``."""
    if not isinstance(raw, dict):
        raise SpecError([f"(top level): got {type(raw).__name__}; a job spec is a YAML mapping with name, task, metric, mode, space"], source)
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_validation_error(err), source) from None


def load_job(path: Union[str, Path]) -> JobSpec:
    """Read and validate a YAML job spec; raises ``SpecError`` naming each bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError([f"(file): cannot read {str(path)!r}: {e.strerror}; give the path of a YAML job spec, e.g. jobs/quickstart.yaml"], str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError([f"(file): not valid YAML: {e}"], str(path)) from None
    return parse_job(raw, str(path))
