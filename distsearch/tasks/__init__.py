"""Tasks: what to train on and how to score it, behind one small protocol (``base.Task``).

``make_task(name, options)`` returns a task with its options bound, reading its data as needed,
and raises ``TaskInputError`` on unusable input. ``check_job(spec)`` is the task-specific half
of job validation (the task and its inputs, the metric, the space's parameters and model
families); the CLI and the runner call it before Ray starts.

Registered tasks: ``digits``, ``tabular``, ``charlm``, ``text`` (Hugging Face Transformers,
the ``text`` extra), ``images`` (an image folder, torchvision, the ``images`` extra) and
``custom`` (the user's own).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .. import warmstart
from ..spec import Choice, Conditional, Fixed, JobSpec, SpecError
from .base import PROTOCOL_MEMBERS, ClassificationHead, RegressionHead, SequenceHead, Splits, Task, TaskInputError, split_indices

__all__ = [
    "PROTOCOL_MEMBERS",
    "RECIPE_PARAMS",
    "TASKS",
    "ClassificationHead",
    "RegressionHead",
    "SequenceHead",
    "Splits",
    "Task",
    "TaskInputError",
    "check_job",
    "make_task",
    "split_indices",
]

# Training-recipe parameters the loop itself reads; every task accepts them.
RECIPE_PARAMS = frozenset({"lr", "batch_size", "optimizer", "momentum", "weight_decay", "lr_schedule", "warmup_fraction"})


def _digits(options):
    from .digits import DigitsTask

    return DigitsTask(options)


def _tabular(options):
    from . import tabular

    return tabular.make(options)


def _charlm(options):
    from .charlm import CharLMTask

    return CharLMTask(options)


def _text(options):
    from . import text

    return text.make(options)


def _images(options):
    from . import images

    return images.make(options)


def _custom(options):
    from . import custom

    return custom.make(options)


TASKS: dict[str, Callable[[Mapping[str, Any]], Task]] = {
    "digits": _digits,
    "tabular": _tabular,
    "charlm": _charlm,
    "text": _text,
    "images": _images,
    "custom": _custom,
}


def make_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task ``name`` with ``options`` bound; raises ``TaskInputError`` naming each problem."""
    if name not in TASKS:
        raise TaskInputError([f"task: got {name!r}; use one of {', '.join(TASKS)}"])
    return TASKS[name](dict(options or {}))


def _families_in_space(spec: JobSpec, task: Task) -> list[str]:
    p = spec.space.get("model")
    family_of = getattr(task, "family_of", str)  # the text task reads a checkpoint path as the hf family
    if isinstance(p, Conditional):
        return list(p.options)
    if isinstance(p, Choice):
        return [family_of(v) for v in p.values]
    if isinstance(p, Fixed):
        return [family_of(p.value)]
    return []


def check_job(spec: JobSpec, dry_run: bool = True) -> Task:
    """Build the job's task and check the spec against it; raises ``SpecError`` naming each bad
    field. ``dry_run``: also build each model family and take one small batch through it
    (distsearch.dryrun), so that a shape bug fails here, not in every trial."""
    from ..domains import check_space
    from ..space import param_types

    source = f"job {spec.name!r}"
    try:
        task = make_task(spec.task, spec.task_options)
    except TaskInputError as e:
        raise SpecError(e.problems, source) from None
    problems = []
    metrics = {f"{split}_{m}" for m in task.metric_modes for split in ("val", "train")}
    if spec.metric not in metrics:
        problems.append(
            f"metric: got {spec.metric!r}; task {task.name} reports {', '.join(sorted(metrics))}; fix: set metric to one of the val_ metrics"
        )
    else:
        natural = task.metric_modes[spec.metric.split("_", 1)[1]]
        if spec.mode != natural:
            problems.append(
                f"mode: got {spec.mode!r} for {spec.metric}, which is better when {'higher' if natural == 'max' else 'lower'}; fix: set mode: {natural}"
            )
    for family in _families_in_space(spec, task):
        if family not in task.families:
            problems.append(f"space.model: got {family!r}; task {task.name} builds {', '.join(task.families)}; fix: choose among those")
    problems += check_space(spec.space, getattr(task, "param_domains", None))
    problems += warmstart.problems(spec)
    known = RECIPE_PARAMS | task.hyperparameters
    for name in param_types(spec.space):
        if name not in known:
            problems.append(f"space.{name}: task {task.name} does not read this parameter; fix: remove it or use one of {', '.join(sorted(known))}")
    if not problems and hasattr(task, "use_space"):
        try:
            task.use_space(spec.space)
        except TaskInputError as e:
            problems += e.problems
    if not problems and dry_run:
        from ..dryrun import dry_run as run_dry

        problems += run_dry(task, spec.space, spec.seed)
    if problems:
        raise SpecError(problems, source)
    return task
