"""Image decoding and image models: what a DataLoader worker does to a file, and what the network sees.

``decode`` turns a file's bytes (or a path, a PIL image, an array) into a ``uint8`` tensor
``(C, S, S)`` at the task's ``image_size``; ``Decoded`` is the ``Dataset`` that does it in
DataLoader workers, with the trial's augmentation (torchvision's random crop and horizontal
flip) for training. ``ImageModel`` takes those tensors: it scales them to [0, 1], resizes them to
the trial's ``input_size``, normalises them and runs its body, the project's CNN or torchvision's
ResNet-18 (from scratch, or from a weights file). Resizing inside the model lets trials of
different input sizes share one decoded input, and an ensemble of them take one tensor.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .vision_import import ensure_importable

ensure_importable()  # before anything imports Transformers or torchvision, here or in a caller

#: Channel means and standard deviations that ImageNet weights expect.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: What a family parameter ``weights`` takes for a model trained from scratch.
SCRATCH = "scratch"


def decode(item: Any, color: str, size: int) -> torch.Tensor:
    """One image (encoded bytes, a path, a PIL image or an ``(H, W[, C])`` array) as ``uint8``
    ``(C, size, size)``; ``color``: ``rgb`` (3 channels) or ``grayscale`` (1)."""
    from PIL import Image

    if isinstance(item, (bytes, bytearray)):
        image = Image.open(io.BytesIO(item))
    elif isinstance(item, Image.Image):
        image = item
    elif isinstance(item, np.ndarray):
        image = Image.fromarray(item)
    else:
        image = Image.open(str(item))
    image = image.convert("RGB" if color == "rgb" else "L").resize((size, size), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels.permute(2, 0, 1).contiguous() if pixels.dim() == 3 else pixels.unsqueeze(0)


class Decoded(torch.utils.data.Dataset):
    """Encoded images decoded on access, and for training augmented: a random crop of the image
    padded by ``crop_padding`` pixels (reflected; 0: none), and a horizontal flip half the time."""

    def __init__(self, blobs: Sequence[bytes], color: str, size: int, crop_padding: int = 0, flip: bool = False):
        self.blobs, self.color, self.size = blobs, color, size
        self.augment = None
        if crop_padding or flip:
            ensure_importable()
            from torchvision.transforms import v2

            steps = ([v2.RandomCrop(size, padding=crop_padding, padding_mode="reflect")] if crop_padding else []) + (
                [v2.RandomHorizontalFlip()] if flip else []
            )
            self.augment = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = decode(self.blobs[i], self.color, self.size)
        return self.augment(image) if self.augment is not None else image


class ImageModel(nn.Module):
    """``body`` on images scaled to [0, 1], resized to ``input_size`` and normalised with
    ``mean`` and ``std`` (one per channel); a body that wants 3 channels gets grey images repeated."""

    def __init__(self, body: nn.Module, input_size: int, mean: Sequence[float], std: Sequence[float], body_channels: int):
        super().__init__()
        self.body, self.input_size, self.body_channels = body, input_size, body_channels
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False)
        if x.shape[1] != self.body_channels:
            x = x.expand(-1, self.body_channels, -1, -1)
        return self.body((x - self.mean) / self.std)


def resnet18_state(path: str) -> dict[str, torch.Tensor]:
    """A ResNet-18 state dict from a file (``torch.save``d, or ``.safetensors``); raises ``ValueError`` saying why not."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"it holds a {type(state).__name__}, not a state dict")
    ensure_importable()
    from torchvision.models import resnet18

    expected = {k: v.shape for k, v in resnet18().state_dict().items() if not k.startswith("fc.")}
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if missing or wrong:
        raise ValueError(
            f"it is not a torchvision ResNet-18 state dict ({len(missing)} weights missing, e.g. {missing[:2]}; {len(wrong)} of another shape, e.g. {wrong[:2]})"
        )
    return {k: v for k, v in state.items() if not k.startswith("fc.")}  # the head is the task's own


def build(
    family: str,
    params: dict,
    *,
    num_classes: int,
    channels: int,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    weights: Optional[str] = None,
) -> ImageModel:
    """The ``cnn`` or ``resnet18`` model that ``params`` describes, inside an ``ImageModel``."""
    from .. import models

    input_size = int(params.get("input_size", image_size))
    if family == "cnn":
        body = models.build({**params, "model": "cnn"}, in_features=0, out_features=num_classes, image_side=input_size, in_channels=channels)
        return ImageModel(body, input_size, mean, std, channels)
    if family != "resnet18":
        raise ValueError(f"model: got {family!r}; use cnn or resnet18")
    ensure_importable()
    from torchvision.models import resnet18

    body = resnet18(num_classes=num_classes)
    if weights and weights != SCRATCH:
        body.load_state_dict(resnet18_state(weights), strict=False)
        return ImageModel(body, input_size, IMAGENET_MEAN, IMAGENET_STD, 3)  # the statistics the weights were trained with
    return ImageModel(body, input_size, tuple(mean) * (3 // len(mean)), tuple(std) * (3 // len(std)), 3)
