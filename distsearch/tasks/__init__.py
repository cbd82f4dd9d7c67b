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

from .base import PROTOCOL_MEMBERS, ClassificationHead, RegressionHead, SequenceHead, Splits, Task, TaskInputError
from .splitting import split_indices

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
    "from_recipe",
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


#: Where each task's ``from_recipe`` lives, imported only for the task a saved model names.
_FROM_RECIPE = {
    "digits": ("digits", "DigitsTask.from_recipe"),
    "tabular": ("tabular", "from_recipe"),
    "charlm": ("charlm", "CharLMTask.from_recipe"),
    "text": ("text", "_Text.from_recipe"),
    "images": ("images", "ImagesTask.from_recipe"),
}


def from_recipe(name: str, recipe: Mapping[str, Any]) -> Any:
    """What builds task ``name``'s models and encodes its inputs, from its ``model_recipe()``
    (plain JSON) alone: no data is read, and no code is imported by name. A ``custom`` task has no
    recipe: its models are its own code's."""
    if name == "custom":
        raise ValueError(
            "a custom task's models are built by its own code, which distsearch does not import from a run folder; fix: pass task=<the object your factory returns> to load_model"
        )
    if name not in _FROM_RECIPE:
        raise ValueError(f"task: got {name!r}; a saved model's task is one of {', '.join(_FROM_RECIPE)}")
    import importlib

    module, attr = _FROM_RECIPE[name]
    fn: Any = importlib.import_module(f"{__name__}.{module}")
    for part in attr.split("."):
        fn = getattr(fn, part)
    return fn(recipe)


def make_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task ``name`` with ``options`` bound; raises ``TaskInputError`` naming each problem."""
    if name not in TASKS:
        raise TaskInputError([f"task: got {name!r}; use one of {', '.join(TASKS)}"])
    return TASKS[name](dict(options or {}))
