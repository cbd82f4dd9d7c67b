"""A custom task whose first model to train hangs for good in its forward pass (a stand-in for a
deadlock in user code); every later model trains normally."""

import os
import time

import torch
from torch import nn

from distsearch.tasks import ClassificationHead, Splits, split_indices


class HangingModel(nn.Module):
    def __init__(self, marker: str):
        super().__init__()
        self.marker, self.linear, self.calls = marker, nn.Linear(4, 2), 0

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls > 3:
            try:  # the first model anywhere to get here claims the hang
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                time.sleep(3600)
            except FileExistsError:
                pass
        return self.linear(x)


class HangTask(ClassificationHead):
    name = "hang"
    families = ("hanging",)
    hyperparameters = frozenset({"model"})
    num_classes = 2

    def __init__(self, marker: str):
        self.marker = marker

    def splits(self, seed: int) -> Splits:
        x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
        y = (x.sum(1) > 0).long()
        parts = split_indices(len(y), seed, 0.2, 0.2, stratify=y.numpy())
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)

    def build_model(self, params, splits):
        return HangingModel(self.marker)


def make(marker: str) -> HangTask:
    return HangTask(marker)
