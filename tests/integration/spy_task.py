"""A custom task for the integration suite that records which rows every model sees.

Each row's first feature is its id; the model logs the ids of every batch it is given to
``<log_dir>/<pid>.ids`` before predicting from the other features. A test then knows exactly
which process saw which split, test rows included. ``seconds_per_batch`` makes every forward
pass sleep that long, for tests that need long epochs.
"""

import os
import time

import torch
from torch import nn

from distsearch.tasks import ClassificationHead, Splits, split_indices

N_ROWS = 240


class SpyModel(nn.Module):
    def __init__(self, log_dir: str, seconds_per_batch: float = 0.0):
        super().__init__()
        self.log_dir, self.seconds_per_batch = log_dir, seconds_per_batch
        self.linear = nn.Linear(2, 2)

    def forward(self, x):
        time.sleep(self.seconds_per_batch)
        with open(os.path.join(self.log_dir, f"{os.getpid()}.ids"), "a") as f:
            f.write(" ".join(str(int(i)) for i in x[:, 0].tolist()) + "\n")
        return self.linear(x[:, 1:])


class SpyTask(ClassificationHead):
    name = "spy"
    families = ("spy",)
    hyperparameters = frozenset({"model"})
    num_classes = 2

    def __init__(self, log_dir: str, seconds_per_batch: float = 0.0):
        self.log_dir, self.seconds_per_batch = log_dir, seconds_per_batch

    def splits(self, seed: int) -> Splits:
        g = torch.Generator().manual_seed(0)
        signal = torch.randn(N_ROWS, 2, generator=g)
        y = (signal.sum(1) > 0).long()
        x = torch.cat([torch.arange(N_ROWS, dtype=torch.float32)[:, None], signal], 1)
        parts = split_indices(N_ROWS, seed, 0.2, 0.2, stratify=y.numpy())
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)

    def build_model(self, params, splits):
        return SpyModel(self.log_dir, self.seconds_per_batch)


def make(log_dir: str, seconds_per_batch: float = 0.0) -> SpyTask:
    return SpyTask(log_dir, seconds_per_batch)
