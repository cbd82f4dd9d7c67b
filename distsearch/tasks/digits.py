"""``digits``: scikit-learn's bundled 1,797 8x8 handwritten digit images, 10 classes.

Ships inside scikit-learn, so nothing downloads. Splits are stratified and fixed by the seed:
``task_options.val_fraction`` and ``test_fraction`` (default 0.15 each). Pixels are scaled to
[0, 1] by the known maximum (16), which needs no statistics from any split.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .. import models
from . import Splits

_OPTIONS = {"val_fraction": 0.15, "test_fraction": 0.15}


def stratified_splits(x, y, seed: int, val_fraction: float, test_fraction: float):
    """Index arrays (train, val, test), stratified on ``y`` and fixed by ``seed``."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y[rest])
    return train, val, test


class DigitsTask:
    name = "digits"
    metric_modes = {"accuracy": "max", "loss": "min"}
    hyperparameters = models.all_family_param_names()
    num_classes = 10
    image_side = 8

    def check_options(self, options: Mapping[str, Any]) -> list[str]:
        problems = [f"task_options.{k}: digits has no option {k!r}; use {', '.join(_OPTIONS)}" for k in options if k not in _OPTIONS]
        opts = {**_OPTIONS, **{k: v for k, v in options.items() if k in _OPTIONS}}
        for k in _OPTIONS:
            v = opts[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 0.4:
                problems.append(f"task_options.{k}: got {v!r}; use a fraction between 0.05 and 0.4")
        return problems

    def splits(self, options: Mapping[str, Any], seed: int) -> Splits:
        from sklearn.datasets import load_digits

        opts = {**_OPTIONS, **options}
        data = load_digits()
        x = torch.tensor(data.data / 16.0, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.long)
        tr, va, te = stratified_splits(data.data, data.target, seed, opts["val_fraction"], opts["test_fraction"])
        pick = lambda i: (x[torch.as_tensor(i)], y[torch.as_tensor(i)])  # noqa: E731
        return Splits(train=pick(tr), val=pick(va), test=pick(te))

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module:
        return models.build(params, in_features=splits.train[0].shape[1], out_features=self.num_classes, image_side=self.image_side)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {
            "loss": float(F.cross_entropy(outputs, targets, reduction="sum")),
            "correct": float((outputs.argmax(1) == targets).sum()),
            "count": float(len(targets)),
        }

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        return {"accuracy": sums["correct"] / n, "loss": sums["loss"] / n}
