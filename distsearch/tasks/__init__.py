"""Tasks: what to train on and how to score it, behind one small protocol.

A task is an object with five members (see ``Task``); the loop never learns more than that.
``get_task(name)`` returns one; ``check_job(spec)`` runs the task-specific checks a job spec
needs before Ray starts (metric exists, space parameters are ones the task reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import torch
from torch import nn

from ..spec import JobSpec, SpecError


@dataclass(frozen=True)
class Splits:
    """Train, validation and test tensors, fixed by the job's seed. ``x`` float, ``y`` targets."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


class Task(Protocol):
    """The whole contract between a task and the training loop.

    ``metric_modes`` names the metrics ``metrics_from_sums`` returns, each with the mode that
    makes it better ("max" or "min"); the loop reports them as ``train_<m>`` and ``val_<m>``.
    ``metric_sums`` returns additive sums (including ``count``) so that ranks can all-reduce
    them before ``metrics_from_sums`` turns them into the epoch's metrics.
    """

    name: str
    metric_modes: Mapping[str, str]
    hyperparameters: frozenset[str]

    def check_options(self, options: Mapping[str, Any]) -> list[str]: ...

    def splits(self, options: Mapping[str, Any], seed: int) -> Splits: ...

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module: ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]: ...

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]: ...


# Training-recipe parameters the loop itself reads; every task accepts them.
RECIPE_PARAMS = frozenset({"lr", "batch_size", "optimizer", "momentum", "weight_decay", "lr_schedule"})


def _registry() -> dict[str, Task]:
    from .digits import DigitsTask

    return {"digits": DigitsTask()}


def get_task(name: str) -> Task:
    tasks = _registry()
    if name not in tasks:
        raise KeyError(f"task: got {name!r}; use one of {', '.join(sorted(tasks))}")
    return tasks[name]


def check_job(spec: JobSpec) -> Task:
    """The task-specific half of validation; raises ``SpecError`` naming each bad field."""
    from ..space import param_types

    tasks = _registry()
    if spec.task not in tasks:
        raise SpecError([f"task: got {spec.task!r}; use one of {', '.join(sorted(tasks))}"], f"job {spec.name!r}")
    task = tasks[spec.task]
    problems = list(task.check_options(spec.task_options))
    metrics = {f"{split}_{m}" for m in task.metric_modes for split in ("val", "train")}
    if spec.metric not in metrics:
        problems.append(f"metric: got {spec.metric!r}; task {task.name} reports {', '.join(sorted(metrics))} (use a val_ metric for selection)")
    else:
        natural = task.metric_modes[spec.metric.split("_", 1)[1]]
        if spec.mode != natural:
            problems.append(f"mode: got {spec.mode!r} for {spec.metric}, which is better when {'higher' if natural == 'max' else 'lower'}; set mode: {natural}")
    known = RECIPE_PARAMS | task.hyperparameters
    for name in param_types(spec.space):
        if name not in known:
            problems.append(f"space.{name}: task {task.name} does not read this parameter; use one of {', '.join(sorted(known))}")
    if problems:
        raise SpecError(problems, f"job {spec.name!r}")
    return task
