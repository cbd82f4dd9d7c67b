"""``digits``: scikit-learn's bundled 1,797 8x8 handwritten digit images, 10 classes.

Ships inside scikit-learn, so nothing downloads. Model families: ``mlp`` and ``cnn``.
Options: ``val_fraction`` and ``test_fraction`` (fractions of all rows, default 0.15 each);
splits are stratified and fixed by the seed. Pixels are scaled to [0, 1] by the known maximum
(16), which needs no statistics from any split.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .. import models
from .base import ClassificationHead, Splits, TaskInputError, check_fractions, check_options
from .splitting import split_indices

DEFAULTS = {"val_fraction": 0.15, "test_fraction": 0.15}


class PixelEncoder:
    """Images as scikit-learn's ``load_digits`` gives them (rows of side x side pixel values from
    0 to 16) as the model's input."""

    def __init__(self, side: int):
        self.side = side

    def __call__(self, images) -> torch.Tensor:
        return torch.as_tensor(images, dtype=torch.float32).reshape(-1, self.side * self.side) / 16.0


def load_digits():
    """``(pixels, target)``: the rows and labels of scikit-learn's ``load_digits(return_X_y=True)``,
    read from the file scikit-learn ships without importing scikit-learn, which takes longer than
    a small job's whole data does to load."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    found = importlib.util.find_spec("sklearn")
    path = Path(next(iter(found.submodule_search_locations or ())), "datasets", "data", "digits.csv.gz") if found else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the digits data ships with scikit-learn, and it is not at {path}; fix: pip install scikit-learn")
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


class DigitsTask(ClassificationHead):
    name = "digits"
    families = ("mlp", "cnn")
    hyperparameters = models.param_names(families)
    num_classes = 10
    image_side = 8
    class_names = [str(d) for d in range(10)]

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options, problems = check_options(self.name, options or {}, DEFAULTS)
        problems += check_fractions(self.options)
        if problems:
            raise TaskInputError(problems)

    def splits(self, seed: int) -> Splits:
        pixels, target = load_digits()
        x = torch.tensor(pixels / 16.0, dtype=torch.float32)
        y = torch.tensor(target, dtype=torch.long)
        parts = split_indices(len(y), seed, self.options["val_fraction"], self.options["test_fraction"], stratify=target)
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)

    def input_encoder(self) -> "PixelEncoder":
        return PixelEncoder(self.image_side)

    def model_recipe(self) -> dict[str, Any]:
        return {"options": self.options}

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> "DigitsTask":
        return cls(recipe["options"])

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module:
        return models.build(params, in_features=splits.train[0].shape[1], out_features=self.num_classes, image_side=self.image_side)
