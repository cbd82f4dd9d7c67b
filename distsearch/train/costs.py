"""A model's cost metrics, measured by the trial on its own device: parameters, bytes, latency, peak memory.

A multi-objective job (``objectives``, ``constraints``) weighs accuracy against what the model
costs to run. The counts are exact. ``latency_ms`` is the median wall time of
``latency_passes`` forward passes of ``latency_batch_size`` validation rows after
``latency_warmup_passes`` untimed ones, in eval mode without autograd, on the trial's device
(synchronised on CUDA). On a machine that other trials share it carries their noise; the median
is the guard against it. ``peak_memory_bytes`` is CUDA's allocator peak over those passes, and
is absent on a CPU, which reports no such figure.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from .. import constants as C
from ..spec.objectives import measured_costs

if TYPE_CHECKING:
    from ..spec.model import JobSpec


def loop_costs(spec: "JobSpec") -> Optional[dict[str, int]]:
    """How the loop measures the model's costs (its ``costs``), when the job's objectives or constraints name one."""
    if not measured_costs(spec.objectives, spec.constraints):
        return None
    c = spec.costs
    return {"batch_size": c.latency_batch_size, "warmup_passes": c.latency_warmup_passes, "passes": c.latency_passes}


@torch.no_grad()
def measure(model: nn.Module, batch: torch.Tensor, device: torch.device, *, warmup_passes: int, passes: int) -> dict[str, float]:
    """The cost metrics of ``model`` (unwrapped) on ``device``, timing forward passes of the model
    input ``batch`` (one of ``tasks.base.batches``); the model is left in the mode it was in."""
    tensors = [*model.parameters(), *model.buffers()]
    out: dict[str, float] = {
        C.NUM_PARAMS: float(sum(p.numel() for p in model.parameters())),
        C.MODEL_BYTES: float(sum(t.numel() * t.element_size() for t in tensors)),
    }
    x = batch.to(device)
    cuda = device.type == "cuda"
    was_training = model.training
    model.eval()
    try:
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup_passes):
            model(x)
        times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        out[C.LATENCY_MS] = 1000.0 * statistics.median(times)
        if cuda:
            out[C.PEAK_MEMORY_BYTES] = float(torch.cuda.max_memory_allocated(device))
    finally:
        model.train(was_training)
    return out
