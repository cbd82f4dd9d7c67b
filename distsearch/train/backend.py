"""The torch backend of a trial's worker group: Ray's for several workers, none for a lone one.

Ray Train's ``TorchConfig`` sets up a torch.distributed process group for every run, one worker
or many: four calls to the workers and a rendezvous as the run starts, and, when a kept group
(distsearch._ray.warm) settles for the next trial, a teardown (``settle_for_reuse``). A lone
worker has no peer to talk to, and the loop and the worker use torch.distributed only with more
than one rank, so its config sets nothing up and leaves torch.distributed uninitialised. It
keeps the rest of ``TorchConfig``: the device context (a GPU worker's default CUDA device) and
the workers' CUDA_VISIBLE_DEVICES, and it empties a GPU worker's CUDA cache at the run's end,
as Ray's torch backend does. Built on Ray Train's public ``Backend`` extension point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ray.train.backend import Backend
from ray.train.torch import TorchConfig


def _empty_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class LoneWorkerBackend(Backend):
    """Ray's torch backend minus the process group: nothing to set up as a run starts."""

    share_cuda_visible_devices = True  # as Ray's torch backend

    def on_shutdown(self, worker_group, backend_config) -> None:
        if worker_group.get_resources_per_worker().get("GPU", 0) > 0:
            worker_group.execute(_empty_cuda_cache)


@dataclass
class LoneWorkerTorchConfig(TorchConfig):
    """``TorchConfig`` for a worker group of one: no torch.distributed process group."""

    @property
    def backend_cls(self):
        return LoneWorkerBackend


def torch_config(backend: str, num_workers: int) -> TorchConfig:
    """The ``TorchConfig`` of a trial with ``num_workers`` workers that would talk over ``backend``."""
    return TorchConfig(backend=backend) if num_workers > 1 else LoneWorkerTorchConfig(backend=backend)
