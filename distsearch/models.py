"""Model families built from a flat parameter dict.

Family parameters are read as ``model.<name>`` (from a conditional ``model`` choice) or, if
absent, as a top-level ``<name>``, so a space can share e.g. ``dropout`` across families.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
FAMILY_PARAM = "model"
# Parameters each family reads, as flat names (both spellings are accepted, see module doc).
FAMILY_PARAMS = {
    "mlp": ("depth", "width", "activation", "dropout"),
    "cnn": ("depth", "channels", "width", "activation", "dropout"),
}


def family_param(params: Mapping[str, Any], name: str, default: Any) -> Any:
    """The family parameter ``name``: ``model.<name>`` first, then ``<name>``, then ``default``."""
    return params.get(f"{FAMILY_PARAM}.{name}", params.get(name, default))


def all_family_param_names() -> frozenset[str]:
    names = {FAMILY_PARAM}
    for fam in FAMILY_PARAMS.values():
        names.update(fam)
        names.update(f"{FAMILY_PARAM}.{p}" for p in fam)
    return frozenset(names)


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: got {name!r}; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """``depth`` hidden layers of ``width`` units, each activation then dropout."""

    def __init__(self, in_features: int, out_features: int, depth: int, width: int, activation: str, dropout: float):
        layers: list[nn.Module] = []
        prev = in_features
        for _ in range(depth):
            layers += [nn.Linear(prev, width), _act(activation), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, out_features))
        super().__init__(nn.Flatten(), *layers)


class CNN(nn.Module):
    """``depth`` 3x3 conv blocks of ``channels`` maps on a square 1-channel image, then a
    ``width``-unit hidden layer. One 2x2 max-pool after the first block halves the image."""

    def __init__(self, side: int, out_features: int, depth: int, channels: int, width: int, activation: str, dropout: float):
        super().__init__()
        self.side = side
        blocks: list[nn.Module] = []
        prev = 1
        for i in range(depth):
            blocks += [nn.Conv2d(prev, channels, 3, padding=1), _act(activation)]
            if i == 0:
                blocks.append(nn.MaxPool2d(2))
            prev = channels
        self.features = nn.Sequential(*blocks)
        pooled = side // 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * pooled * pooled, width), _act(activation),
            nn.Dropout(dropout), nn.Linear(width, out_features),
        )

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, self.side, self.side)))


def build(params: Mapping[str, Any], in_features: int, out_features: int, image_side: int | None = None) -> nn.Module:
    """The model that ``params`` describes; ``image_side`` enables the CNN family."""
    family = params.get(FAMILY_PARAM, "mlp")
    act = family_param(params, "activation", "relu")
    dropout = float(family_param(params, "dropout", 0.0))
    width = int(family_param(params, "width", 128))
    if family == "mlp":
        return MLP(in_features, out_features, int(family_param(params, "depth", 2)), width, act, dropout)
    if family == "cnn":
        if image_side is None:
            raise ValueError("model: got 'cnn' for a task without images; use mlp")
        return CNN(image_side, out_features, int(family_param(params, "depth", 2)), int(family_param(params, "channels", 32)), width, act, dropout)
    raise ValueError(f"model: got {family!r}; use one of {', '.join(FAMILY_PARAMS)}")
