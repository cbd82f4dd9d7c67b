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
