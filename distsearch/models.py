"""Model families built from a flat parameter dict.

Family parameters are read as ``model.<name>`` (from a conditional ``model`` choice) or, if
absent, as a top-level ``<name>``, so a space can share e.g. ``dropout`` across families.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
FAMILY_PARAM = "model"
# Parameters each family reads, as flat names (both spellings are accepted, see module doc).
FAMILY_PARAMS = {
    "mlp": ("depth", "width", "activation", "dropout"),
    "cnn": ("depth", "channels", "width", "activation", "dropout"),
    "gru": ("depth", "width", "dropout"),
    "lstm": ("depth", "width", "dropout"),
    "transformer": ("depth", "width", "heads", "activation", "dropout"),
    # the text task's (distsearch.tasks.text_models) and the images task's (distsearch.tasks.image_models)
    "hf": ("checkpoint",),
    "encoder": ("depth", "width", "heads", "dropout"),
    "resnet18": ("weights",),
}
# Activations as functions, for the Transformer's feed-forward blocks.
_ACT_FNS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu}


def family_param(params: Mapping[str, Any], name: str, default: Any) -> Any:
    """The family parameter ``name``: ``model.<name>`` first, then ``<name>``, then ``default``."""
    return params.get(f"{FAMILY_PARAM}.{name}", params.get(name, default))


def param_names(families: tuple[str, ...]) -> frozenset[str]:
    """Every flat parameter name the given families read, in both spellings, plus ``model``."""
    names = {FAMILY_PARAM}
    for fam in (FAMILY_PARAMS[f] for f in families):
        names.update(fam)
        names.update(f"{FAMILY_PARAM}.{p}" for p in fam)
    return frozenset(names)


def _act(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: got {name!r}; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """``depth`` hidden layers of ``width`` units, each activation then dropout; depth 0 is a
    linear model, which keeps a ridge-like baseline inside the search space of tabular tasks."""

    def __init__(self, in_features: int, out_features: int, depth: int, width: int, activation: str, dropout: float):
        layers: list[nn.Module] = []
        prev = in_features
        for _ in range(depth):
            layers += [nn.Linear(prev, width), _act(activation), nn.Dropout(dropout)]
            prev = width
        layers.append(nn.Linear(prev, out_features))
        super().__init__(nn.Flatten(), *layers)


class CNN(nn.Module):
    """``depth`` 3x3 conv blocks of ``channels`` maps on a square image of ``in_channels``
    channels, then a ``width``-unit hidden layer. One 2x2 max-pool after the first block halves the image."""

    def __init__(self, side: int, out_features: int, depth: int, channels: int, width: int, activation: str, dropout: float, in_channels: int = 1):
        super().__init__()
        self.side, self.in_channels = side, in_channels
        blocks: list[nn.Module] = []
        prev = in_channels
        for i in range(depth):
            blocks += [nn.Conv2d(prev, channels, 3, padding=1), _act(activation)]
            if i == 0:
                blocks.append(nn.MaxPool2d(2))
            prev = channels
        self.features = nn.Sequential(*blocks)
        pooled = side // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels * pooled * pooled, width),
            _act(activation),
            nn.Dropout(dropout),
            nn.Linear(width, out_features),
        )

    def forward(self, x):
        return self.head(self.features(x.view(-1, self.in_channels, self.side, self.side)))


class CharRNN(nn.Module):
    """Embedding, a ``depth``-layer GRU or LSTM of ``width`` units, then per-step logits."""

    def __init__(self, cell: str, vocab_size: int, depth: int, width: int, dropout: float):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.embed = nn.Embedding(vocab_size, width)
        self.rnn = rnn(width, width, num_layers=depth, batch_first=True, dropout=dropout if depth > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, vocab_size)

    def forward(self, x):
        h, _ = self.rnn(self.embed(x))
        return self.head(self.drop(h))


class CharTransformer(nn.Module):
    """A small causal (decoder-only) Transformer: token and learned position embeddings,
    ``depth`` pre-norm blocks of ``heads`` attention heads and a 4x ``width`` feed-forward."""

    def __init__(self, vocab_size: int, seq_len: int, depth: int, width: int, heads: int, activation: str, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"model.heads: got {heads} for width {width}; width must be a multiple of heads")
        if activation not in _ACT_FNS:
            raise ValueError(f"activation: got {activation!r}; use one of {', '.join(_ACT_FNS)}")
        self.embed = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(seq_len, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=4 * width, dropout=dropout, activation=_ACT_FNS[activation], batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)

    def forward(self, x):
        t = x.shape[1]
        h = self.embed(x) + self.pos(torch.arange(t, device=x.device))
        h = self.blocks(h, mask=self.causal_mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def build_sequence(params: Mapping[str, Any], vocab_size: int, seq_len: int) -> nn.Module:
    """The next-token model that ``params`` describes: gru, lstm or transformer."""
    family = params.get(FAMILY_PARAM, "gru")
    depth = int(family_param(params, "depth", 1))
    width = int(family_param(params, "width", 128))
    dropout = float(family_param(params, "dropout", 0.0))
    if family in ("gru", "lstm"):
        return CharRNN(family, vocab_size, depth, width, dropout)
    if family == "transformer":
        return CharTransformer(
            vocab_size, seq_len, depth, width, int(family_param(params, "heads", 4)), family_param(params, "activation", "gelu"), dropout
        )
    raise ValueError(f"model: got {family!r}; use one of gru, lstm, transformer")


def build(params: Mapping[str, Any], in_features: int, out_features: int, image_side: int | None = None, in_channels: int = 1) -> nn.Module:
    """The model that ``params`` describes; ``image_side`` (of ``in_channels``-channel images) enables the CNN family."""
    family = params.get(FAMILY_PARAM, "mlp")
    act = family_param(params, "activation", "relu")
    dropout = float(family_param(params, "dropout", 0.0))
    width = int(family_param(params, "width", 128))
    if family == "mlp":
        return MLP(in_features, out_features, int(family_param(params, "depth", 2)), width, act, dropout)
    if family == "cnn":
        if image_side is None:
            raise ValueError("model: got 'cnn' for a task without images; use mlp")
        depth, channels = int(family_param(params, "depth", 2)), int(family_param(params, "channels", 32))
        return CNN(image_side, out_features, depth, channels, width, act, dropout, in_channels)
    raise ValueError(f"model: got {family!r}; use mlp{' or cnn' if image_side else ''}")
