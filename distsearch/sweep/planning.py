"""Planning a sweep: worker-group shapes, how many trials fit at once, which spares to start.

Arithmetic on the job spec and the cluster's node resources only; no Ray import, so every rule
here is tested in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from ..errors import UserError
from ..spec.model import JobSpec

#: harness.spare_worker_keep_alive_s when unset (seconds).
DEFAULT_SPARE_KEEP_ALIVE_S = 600.0
_EPS = 1e-9


class InfeasibleJobError(UserError, ValueError):
    """The cluster cannot run even one trial of the job; names the field and the fix."""


@dataclass(frozen=True)
class WorkerGroupPlan:
    """How one trial's Train worker group is built: the collective backend and its resources."""

    backend: str  # "nccl" on CUDA, "gloo" on CPU
    num_workers: int
    use_gpu: bool
    resources_per_worker: dict[str, float]


def worker_group_plan(spec: JobSpec) -> WorkerGroupPlan:
    """NCCL with whole or fractional GPUs when ``scaling.use_gpu``, else gloo on CPUs.

    Fractional GPUs for multi-worker groups are refused by the spec itself (NCCL cannot put two
    ranks of one group on one device), so a plan with GPU fractions always has one worker.
    """
    s = spec.scaling
    resources = {"CPU": s.cpus_per_worker, **({"GPU": s.gpus_per_worker} if s.use_gpu else {})}
    return WorkerGroupPlan(backend="nccl" if s.use_gpu else "gloo", num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources)


def per_trial_resources(spec: JobSpec) -> dict[str, float]:
    """What one trial's worker group reserves in total: CPU and, if used, GPU."""
    plan = worker_group_plan(spec)
    return {k: plan.num_workers * v for k, v in plan.resources_per_worker.items()}


def plan_concurrency(spec: JobSpec, nodes: list[Mapping[str, float]]) -> int:
    """How many trials can run at once on nodes with these total resources.

    Raises ``InfeasibleJobError`` if no node fits one worker or the cluster cannot fit one trial.
    ``spec.max_concurrent_trials``, when set, caps the derived number but may not exceed it.
    """
    s = spec.scaling
    worker = worker_group_plan(spec).resources_per_worker
    if not any(all(n.get(k, 0.0) + _EPS >= v for k, v in worker.items()) for n in nodes):
        biggest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in worker}
        field_name = "scaling.gpus_per_worker" if s.use_gpu and biggest.get("GPU", 0) < s.gpus_per_worker else "scaling.cpus_per_worker"
        raise InfeasibleJobError(
            f"{field_name}: one worker needs {worker}, but the largest node has {biggest}; fix: lower {field_name} "
            f"{'or set use_gpu: false ' if s.use_gpu else ''}or run on a cluster with bigger nodes"
        )
    total = {k: sum(n.get(k, 0.0) for n in nodes) for k in worker}
    per_trial = per_trial_resources(spec)
    fits = min(math.floor(total[k] / v + _EPS) for k, v in per_trial.items() if v > 0)
    if fits < 1:
        raise InfeasibleJobError(
            f"scaling.num_workers: one trial needs {per_trial} in all, but the cluster has {total}; "
            f"fix: lower num_workers or cpus_per_worker/gpus_per_worker"
        )
    if spec.max_concurrent_trials is not None:
        if spec.max_concurrent_trials > fits:
            raise InfeasibleJobError(
                f"max_concurrent_trials: got {spec.max_concurrent_trials}, but {total} fits only {fits} trial(s) of {per_trial}; "
                f"fix: set max_concurrent_trials to at most {fits} or leave it unset"
            )
        return spec.max_concurrent_trials
    return fits


@dataclass(frozen=True)
class SparePlan:
    """Which spare worker processes a sweep asks for (see distsearch.train.spares), as keep-alives in
    seconds, 0 meaning none: ``first_s`` for the first trials' workers, which the driver asks for
    before Tune starts; ``later_s`` for the spare each Train worker asks for, as it starts, for
    the trial after its own."""

    first_s: float
    later_s: float

    @property
    def hook(self) -> bool:
        """Whether the Train workers carry the import hook: a spare serves only workers whose
        runtime env is the spare's, so every trial's workers must carry it when any spare does."""
        return self.first_s > 0 or self.later_s > 0


#: A sweep that asks for no spare processes.
NO_SPARES = SparePlan(0.0, 0.0)


def resolve_spares(spec: JobSpec, nodes: list[Mapping[str, float]], concurrency: int) -> SparePlan:
    """``harness.spare_worker_keep_alive_s`` resolved for the sweep: a value set applies to both.

    Unset: spares where they cost nothing. A spare does the same work a new process would, ahead
    of time. The first trials' spares start before any trial trains, so they are always free.
    A later trial's spare starts while the trials before it train, so it is free only on a CPU
    that would otherwise idle: when the trials at full concurrency reserve every CPU, it
    competes with training and the sweep gets longer. Where trials keep their worker groups,
    later trials start in the kept processes, so they get no spares: an unused spare is an
    import of torch for nothing. A trial that trains in its Tune actor has no Train worker to
    start in a spare: none."""
    if spec.harness.trains_in_trial_actor:
        return NO_SPARES
    if spec.harness.spare_worker_keep_alive_s is not None:
        return SparePlan(spec.harness.spare_worker_keep_alive_s, spec.harness.spare_worker_keep_alive_s)
    free = sum(n.get("CPU", 0.0) for n in nodes) - concurrency * per_trial_resources(spec).get("CPU", 0.0)
    later = free >= 1 - _EPS and not spec.harness.reuses_worker_groups
    return SparePlan(DEFAULT_SPARE_KEEP_ALIVE_S, DEFAULT_SPARE_KEEP_ALIVE_S if later else 0.0)


def first_spare_count(spec: JobSpec, concurrency: int, node: Mapping[str, float]) -> int:
    """How many spare processes the first trials' workers can use on ``node`` (the driver's):
    one per worker of the trials that start at once, as many as the node fits."""
    group = worker_group_plan(spec)
    fits = min(math.floor(node.get(k, 0.0) / v + _EPS) for k, v in group.resources_per_worker.items() if v > 0)
    return max(0, min(min(concurrency, spec.budget.num_trials) * group.num_workers, fits))


def later_spare_keep_alive_s(plan: SparePlan, trial_number: int, concurrency: int, num_trials: int) -> float:
    """The keep-alive of the spare that trial ``trial_number`` (Tune numbers trials from 0 in
    the order it starts them) asks for: the trial that takes its place, if one is to come."""
    return plan.later_s if trial_number + concurrency < num_trials else 0.0
