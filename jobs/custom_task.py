"""A worked example of the ``custom`` task: your own data and your own model.

jobs/custom.yaml names ``jobs.custom_task:make_task``; distsearch imports it (with the current
directory on the path), calls it with the job's other ``task_options`` as keyword arguments, and
trains what it returns. Anything with the members of ``distsearch.tasks.Task`` works; the heads in
``distsearch.tasks`` provide loss and metrics for classification, regression and sequences.

Here: scikit-learn's bundled breast-cancer set (569 rows, 30 features, 2 classes) and a
residual MLP of the user's design, with its own hyperparameters ``blocks`` and ``width``.
"""

from __future__ import annotations

import torch
from torch import nn

from distsearch.tasks import ClassificationHead, Splits, TaskInputError, split_indices


class ResidualMLP(nn.Module):
    """``blocks`` residual blocks of ``width`` units: x + W2 act(W1 norm(x))."""

    def __init__(self, in_features: int, out_features: int, blocks: int, width: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.out = nn.Linear(width, out_features)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class BreastCancerTask(ClassificationHead):
    name = "breast_cancer"
    families = ("resmlp",)
    hyperparameters = frozenset({"model", "blocks", "width", "dropout"})  # what build_model reads
    num_classes = 2

    def __init__(self, val_fraction: float, test_fraction: float):
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def splits(self, seed: int) -> Splits:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        parts = split_indices(len(data.target), seed, self.val_fraction, self.test_fraction, stratify=data.target)
        x = torch.tensor(data.data, dtype=torch.float32)
        mean, std = x[parts[0]].mean(0), x[parts[0]].std(0)  # training rows only
        x = (x - mean) / std.clamp_min(1e-8)
        y = torch.tensor(data.target, dtype=torch.long)
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)

    def build_model(self, params, splits: Splits) -> nn.Module:
        return ResidualMLP(
            splits.train[0].shape[1], self.num_classes, int(params.get("blocks", 2)), int(params.get("width", 64)), float(params.get("dropout", 0.0))
        )


def make_task(val_fraction: float = 0.15, test_fraction: float = 0.15) -> BreastCancerTask:
    """Called with the job's task_options (less ``factory``); raise TaskInputError on bad input."""
    bad = [
        f"task_options.{k}: got {v!r}; use a fraction between 0.05 and 0.4"
        for k, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction))
        if not 0.05 <= v <= 0.4
    ]
    if bad:
        raise TaskInputError(bad)
    return BreastCancerTask(val_fraction, test_fraction)
