"""Every check of a job before Ray starts: the spec against its task, and the dry run.

``check_job`` builds the job's task and checks the spec against it. The dry run builds each model
family in the space once and takes one small batch through its forward pass, the loss and
backward, on CPU.

A shape bug in a model (a custom family's wrong input width, a head with too few outputs) would
otherwise fail every trial of the sweep, one after another, on the cluster.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import torch

from . import constants as C
from . import storage
from .search import warmstart
from .search.plan import build_plan
from .space.domains import check_space
from .space.names import flatten, param_types
from .space.params import OPTION_KEY, Param
from .spec.model import JobSpec, SpecError
from .spec.objectives import pairs
from .tasks import RECIPE_PARAMS, Task, TaskInputError, make_task
from .tasks.base import batches, splits_once

log = logging.getLogger("distsearch")

#: Rows in the dry run's batch.
BATCH_ROWS = 4


def configs(space: Mapping[str, Param]) -> list[dict[str, Any]]:
    """One flat config per option of the top-level ``model`` choice (or one, without it): every
    other parameter at its first value, each option's sub-space at its first values."""
    base = {name: p.first() for name, p in space.items() if not p.sub_spaces()}
    conditional = {name: p for name, p in space.items() if p.sub_spaces()}
    chosen = {name: next(iter(p.sub_spaces())) for name, p in conditional.items()}
    out = []
    for option in conditional["model"].sub_spaces() if "model" in conditional else [None]:
        config = dict(base)
        for name, p in conditional.items():
            picked = option if name == "model" else chosen[name]
            config[name] = {OPTION_KEY: picked, **{k: v.first() for k, v in p.sub_spaces()[picked].items()}}
        out.append(flatten(config))
    if "model" in space and "model" not in conditional:  # a choice of families without sub-spaces
        out = [{**out[0], "model": v} for v in space["model"].listed() or [space["model"].first()]]
    return out


def run_dry(task: Any, space: Mapping[str, Param], seed: int) -> list[str]:
    """One problem line per model family that fails to build, to run forward on a small batch of
    the training split, to give a finite loss, or to run backward."""
    # the dry run seeds torch for repeatable models; fork_rng puts the caller's generator back after
    with torch.random.fork_rng(devices=[]):
        return _dry_problems(task, space, seed)


def _dry_problems(task: Any, space: Mapping[str, Param], seed: int) -> list[str]:
    splits = splits_once(task, seed)
    problems = []
    for params in configs(space):
        x, y = next(batches(task, splits.train, torch.arange(min(BATCH_ROWS, len(splits.train[1]))), BATCH_ROWS, params, train=True))
        family = params.get("model", "the model")
        torch.manual_seed(seed)
        try:
            model = task.build_model(params, splits)
            model.train()
            loss = task.loss(model(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss of an untrained model is {float(loss)}")
            loss.backward()
        except Exception as e:  # noqa: BLE001 - the user's model code: its error is the message
            problems.append(
                f"space.model: family {family!r} fails a dry run (build, forward on {BATCH_ROWS} training rows, loss, backward) "
                f"with {params}: {type(e).__name__}: {e}; fix: mend the model or the parameters, or skip the dry run (--no-dry-run)"
            )
    return problems


def _families_in_space(spec: JobSpec, task: Task) -> list[str]:
    p = spec.space.get("model")
    family_of = getattr(task, "family_of", str)  # the text task reads a checkpoint path as the hf family
    if p is None:
        return []
    return list(p.sub_spaces()) or [family_of(v) for v in p.listed()]


def ray_release_problems(spec: JobSpec) -> list[str]:
    """On a Ray other than the pinned one, what of the job needs the pinned Ray's private API."""
    from . import _ray as door

    if door.VOUCHED:
        return []
    import ray

    why = f"Ray {ray.__version__} is installed, and only Ray {door.PINNED_RAY_VERSION} is vouched for beyond Ray's public path"
    fix = f"or pip install 'ray[default,tune,train]=={door.PINNED_RAY_VERSION}'"
    problems = []
    if spec.harness.trial_processes not in ("ray", "trial_actor"):  # trial_actor: Tune's public API alone
        problems.append(f"harness.trial_processes: got {spec.harness.trial_processes!r}; {why}; fix: set harness.trial_processes: ray, {fix}")
    if spec.harness.spare_worker_keep_alive_s:
        problems.append(
            f"harness.spare_worker_keep_alive_s: got {spec.harness.spare_worker_keep_alive_s:g}; {why}; fix: leave it unset (no spares), {fix}"
        )
    return problems


def storage_problems(where: str) -> list[str]:
    """Why a local ``storage`` cannot hold runs, found before Ray starts: a link to nowhere (which
    ended a run in a raw traceback mid-start)."""
    if storage.is_uri(where) and not where.startswith("file://"):
        return []  # a bucket's reachability shows at the first write, which exits 3 with the fix
    path = where.removeprefix("file://")
    if os.path.islink(path) and not os.path.exists(path):
        return [f"storage: got {where!r}, a link to {os.readlink(path)!r}, which does not exist; fix: create that folder, or give another storage"]
    return []  # a file in its place: the spec's own check


def _objective_problems(spec: JobSpec, task: Task, metrics: set[str]) -> list[str]:
    """Each objective and constraint names a metric a trial reports: the task's, or a cost."""
    reported = sorted(metrics) + list(C.COST_METRICS)
    out = []
    for i, (name, mode) in enumerate(pairs(spec.objectives)):
        if name not in reported:
            out.append(f"objectives[{i}]: got {name!r}; task {task.name} reports {', '.join(reported)}; fix: use one of those")
        elif name in metrics and mode != task.metric_modes[name.split("_", 1)[1]]:
            out.append(
                f"objectives[{i}]: {name}: got {mode}; it is better when {'higher' if mode == 'min' else 'lower'}; fix: {name}: {'max' if mode == 'min' else 'min'}"
            )
    for name in spec.constraints:
        if name not in reported:
            out.append(f"constraints.{name}: task {task.name} reports no such metric; fix: bound one of {', '.join(reported)}")
    return out


def check_job(spec: JobSpec, dry_run: bool = True) -> Task:
    """Build the job's task and check the spec against it; raises ``SpecError`` naming each bad
    field. ``dry_run``: also build each model family and take one small batch through it
    (``run_dry``), so that a shape bug fails here, not in every trial."""
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
    problems += _objective_problems(spec, task, metrics)
    for family in _families_in_space(spec, task):
        if family not in task.families:
            problems.append(f"space.model: got {family!r}; task {task.name} builds {', '.join(task.families)}; fix: choose among those")
    problems += check_space(spec.space, getattr(task, "param_domains", None))
    problems += ray_release_problems(spec)
    problems += build_plan(spec).problems()
    problems += warmstart.problems(spec)
    problems += storage_problems(spec.storage)
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
        problems += run_dry(task, spec.space, spec.seed)
    if problems:
        raise SpecError(problems, source)
    for note in build_plan(spec).notes():
        log.warning("%s: %s", source, note)
    return task
