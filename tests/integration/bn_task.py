"""A custom task whose model has BatchNorm: buffers that each DDP rank updates on its own batches."""

import torch
from torch import nn

from distsearch.tasks import ClassificationHead, Splits, split_indices


class BatchNormTask(ClassificationHead):
    name = "bn"
    families = ("bnmlp",)
    hyperparameters = frozenset({"model"})
    num_classes = 2

    def splits(self, seed: int) -> Splits:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(400, 6, generator=g) * torch.linspace(0.5, 4.0, 6) + 3.0  # far from BatchNorm's initial statistics
        y = (x[:, 0] - x[:, 1] + 0.5 * x[:, 2] > 3.0).long()
        parts = split_indices(len(y), seed, 0.2, 0.2, stratify=y.numpy())
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)

    def build_model(self, params, splits):
        return nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def make() -> BatchNormTask:
    return BatchNormTask()
