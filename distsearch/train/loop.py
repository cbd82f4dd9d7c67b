"""The per-worker training loop: a config and a ``report`` callable in, nothing about Ray or Tune.

Runs the same in a plain Python process (world size 1) and as one rank of a DDP group: when
``torch.distributed`` is initialised (Ray Train does that before calling us), the model is
wrapped in DDP, each rank trains on a disjoint shard of the training split, and validation
sums are all-reduced so that every rank reports the same, whole-split metrics.

Batches come from ``tasks.base.batches``: slices of the split's tensors, or the task's own
loader (images decode in DataLoader workers). A model may define ``set_epoch(epoch)``, called
before each epoch, returning whether its trainable parameters changed (an encoder frozen for the
first epochs); DDP is then wrapped anew, as it fixes at construction which gradients it
all-reduces. On CUDA, a task with ``mixed_precision = True`` trains under bf16 autocast where the
device supports it (``amp_dtype``).

Contract with ``report``: it is called once per epoch on every rank, in step, with
``report(metrics, checkpoint)`` where ``checkpoint`` is a dict (model, optimizer, scheduler,
epoch, params) on rank 0 and None elsewhere. The checkpoint shares tensors with the live model
and optimizer (no copy per epoch): persist it before returning, as ``torch.save`` does. Metrics carry ``epoch`` (1-based), ``train_<m>``
and ``val_<m>`` for each task metric, ``lr``, ``epoch_seconds`` and ``busy_seconds``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import torch
import torch.distributed as dist
from torch import nn

from .. import constants as C
from ..tasks import Splits, Task
from ..tasks.base import batches

if TYPE_CHECKING:
    from ..spec.model import JobSpec

Report = Callable[[dict[str, Any], Optional[dict[str, Any]]], None]

# Recipe defaults, used when the space leaves a parameter out.
DEFAULTS = {"lr": 1e-3, "batch_size": 64, "optimizer": "adam", "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "none", "warmup_fraction": 0.0}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the trial cannot recover."""


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def make_optimizer(params: Mapping[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    name = params.get("optimizer", DEFAULTS["optimizer"])
    lr = float(params.get("lr", DEFAULTS["lr"]))
    wd = float(params.get("weight_decay", DEFAULTS["weight_decay"]))
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=float(params.get("momentum", DEFAULTS["momentum"])), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    raise ValueError(f"optimizer: got {name!r}; use sgd, adam or adamw")


def make_scheduler(params: Mapping[str, Any], opt: torch.optim.Optimizer, max_epochs: int, steps_per_epoch: int):
    """A per-step schedule: a linear warmup over ``warmup_fraction`` of all steps, then the decay
    ``lr_schedule`` names: ``cosine`` by whole epochs, as ``CosineAnnealingLR`` over ``max_epochs``
    (times the warmup's ramp); ``linear`` from the peak to zero after the last step, as
    Transformers' ``get_linear_schedule_with_warmup``. None when neither applies."""
    name = params.get("lr_schedule", DEFAULTS["lr_schedule"])
    if name not in ("none", "cosine", "linear"):
        raise ValueError(f"lr_schedule: got {name!r}; use none, cosine or linear")
    total = max(1, max_epochs * steps_per_epoch)
    warmup = round(float(params.get("warmup_fraction", DEFAULTS["warmup_fraction"])) * total)
    if name == "none" and warmup == 0:
        return None

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if name == "cosine":
            return ramp * 0.5 * (1 + math.cos(math.pi * (step // max(1, steps_per_epoch)) / max_epochs))
        if name == "linear":
            return ramp if step < warmup else max(0.0, (total - step) / max(1, total - warmup))
        return ramp

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def amp_dtype(task: Task, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``task`` on ``device``: bf16 on a CUDA device that supports it when
    the task asks for mixed precision, else None (full precision; fp16 would need loss scaling)."""
    if not getattr(task, "mixed_precision", False) or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else None


def epoch_shard(n: int, rank: int, world: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's sample indices for ``epoch``: one shuffle shared by all ranks, cut to a
    multiple of ``world`` (every rank must run the same number of DDP steps, or the all-reduce
    in backward deadlocks), then dealt round-robin, so shards are disjoint and equal in size."""
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    per_rank = n // world
    return torch.randperm(n, generator=gen)[: per_rank * world][rank::world]


def _all_reduce_sums(sums: dict[str, float], world_size: int, device: torch.device) -> dict[str, float]:
    if world_size == 1:
        return sums
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def _add(acc: dict[str, float], new: Mapping[str, float]) -> None:
    for k, v in new.items():
        acc[k] = acc.get(k, 0.0) + v


@torch.no_grad()
def evaluate(
    task: Task,
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    batch_size: int = 512,
    amp: Optional[torch.dtype] = None,
) -> dict[str, float]:
    """Additive metric sums of ``model`` (unwrapped, never DDP) over ``data``; no collectives."""
    model.eval()
    sums: dict[str, float] = {}
    for xb, yb in batches(task, data, batch_size=batch_size):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = model(xb.to(device))
        _add(sums, task.metric_sums(out.float(), yb.to(device)))
    return sums


def train(
    task: Task,
    params: Mapping[str, Any],
    report: Report,
    *,
    max_epochs: int,
    seed: int,
    splits: Splits,
    device: Optional[torch.device] = None,
    start_state: Optional[Mapping[str, Any]] = None,
    costs: Optional[Mapping[str, int]] = None,
    interrupted: Optional[Callable[[], bool]] = None,
) -> None:
    """Train ``task``'s model for ``params`` up to ``max_epochs``, reporting every epoch.

    ``start_state`` (a checkpoint dict this function reported earlier) resumes after its epoch.
    ``costs`` (``batch_size``, ``warmup_passes``, ``passes``): rank 0 measures the model's cost
    metrics once, before training (``distsearch.train.costs``), and reports them every epoch.
    ``batch_size`` is the global batch: each of the world's ranks takes ``batch_size // world``.
    ``device`` defaults to the CPU. ``interrupted``, when given, is asked before each training
    batch; once it answers True, training ends there, without that epoch's report. Only a lone
    rank may be given one: ranks that left at different batches would leave a peer waiting in a
    collective.
    """
    device = device if device is not None else torch.device("cpu")
    rank, world = _world()
    if interrupted is not None and world > 1:
        raise ValueError(f"interrupted is for a lone rank, but this rank is one of {world}; fix: agree on stopping at a report instead")
    torch.manual_seed(seed)  # same initial weights on every rank; DDP also broadcasts them
    model = task.build_model(params, splits).to(device)
    opt = make_optimizer(params, model)
    x_train, y_train = splits.train
    batch = max(1, int(params.get("batch_size", DEFAULTS["batch_size"])) // world)
    sched = make_scheduler(params, opt, max_epochs, steps_per_epoch=math.ceil((len(y_train) // world) / batch))
    amp = amp_dtype(task, device)
    start_epoch = 0
    if start_state is not None:
        model.load_state_dict(start_state["model"])
        opt.load_state_dict(start_state["optimizer"])
        if sched is not None and start_state.get("scheduler") is not None:
            sched.load_state_dict(start_state["scheduler"])
        start_epoch = int(start_state["epoch"])
    net: nn.Module = model
    set_epoch = getattr(model, "set_epoch", None)
    measured: dict[str, float] = {}
    if costs is not None and rank == 0:
        from .costs import measure

        xb, _ = next(iter(batches(task, splits.val, batch_size=int(costs["batch_size"]))))
        measured = measure(model, xb, device, warmup_passes=int(costs["warmup_passes"]), passes=int(costs["passes"]))

    x_val, y_val = splits.val[0][rank::world], splits.val[1][rank::world]
    busy = 0.0
    for epoch in range(start_epoch, max_epochs):
        t0 = time.perf_counter()
        changed = set_epoch(epoch) if set_epoch is not None else False
        if world > 1 and (changed or net is model):
            net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        order = epoch_shard(len(y_train), rank, world, seed, epoch)
        net.train()
        train_sums: dict[str, float] = {}
        for xb, yb in batches(task, (x_train, y_train), order=order, batch_size=batch, params=params, train=True):
            if interrupted is not None and interrupted():
                return
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                out = net(xb)
                loss = task.loss(out.float(), yb)
            if not math.isfinite(loss.item()):
                raise NonFiniteLossError(f"training loss is {loss.item()} at epoch {epoch + 1}; lower lr or add weight decay")
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            with torch.no_grad():
                _add(train_sums, task.metric_sums(out.detach().float(), yb))
        if world > 1:
            # DDP hands rank 0's buffers (BatchNorm's running statistics) to every rank at the start
            # of each training forward, so the last batch's updates are each rank's own. Rank 0's
            # model is the checkpoint: every rank evaluates with its buffers, so the reported
            # validation score is the saved model's.
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        val_sums = evaluate(task, model, (x_val, y_val), device, amp=amp)
        train_m = task.metrics_from_sums(_all_reduce_sums(train_sums, world, device))
        val_m = task.metrics_from_sums(_all_reduce_sums(val_sums, world, device))
        elapsed = time.perf_counter() - t0
        busy += elapsed
        metrics: dict[str, Any] = {C.EPOCH: epoch + 1, "lr": opt.param_groups[0]["lr"], C.EPOCH_SECONDS: elapsed, C.BUSY_SECONDS: busy}
        metrics.update({f"train_{k}": v for k, v in train_m.items()})
        metrics.update({f"val_{k}": v for k, v in val_m.items()})
        metrics.update(measured)
        state = None
        if rank == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "epoch": epoch + 1,
                "params": dict(params),
            }
        report(metrics, state)


def train_for_job(
    spec: "JobSpec",
    task: Task,
    params: Mapping[str, Any],
    report: Report,
    *,
    splits: Splits,
    device: torch.device,
    start_state: Optional[Mapping[str, Any]],
    interrupted: Optional[Callable[[], bool]],
) -> None:
    """``train`` as a trial of ``spec`` runs it: the job's epochs, seed and cost metrics."""
    from .costs import loop_costs

    train(
        task,
        params,
        report,
        max_epochs=spec.budget.max_epochs,
        seed=spec.seed,
        splits=splits,
        device=device,
        start_state=start_state,
        costs=loop_costs(spec),
        interrupted=interrupted,
    )
