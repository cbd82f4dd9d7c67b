"""A trial's checkpoint state read back as tensors and plain values only: never a pickle's code.

A checkpoint (``model.pt``) is ``torch.save`` of a dict of state dicts, numbers, strings and the
trial's hyperparameters. It is read with ``weights_only=True``, torch's restricted unpickler,
which builds tensors and containers and refuses any other object, so a file planted in a run
folder cannot run code on the driver or the workers that resume from it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

from ..errors import UserError


class UnsafeCheckpoint(UserError):
    """A checkpoint file holds something other than tensors and plain values."""


def read_state(data: bytes, where: str) -> dict[str, Any]:
    """The state dict in ``data`` (a checkpoint file's bytes, read from ``where``)."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpoint(
            f"{where}: not a distsearch checkpoint (tensors and plain values only), so it was not loaded: {first}; "
            "fix: delete that checkpoint directory, and the trial starts over"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise UnsafeCheckpoint(f"{where}: holds {type(state).__name__}, not a checkpoint's state dict; fix: delete that checkpoint directory")
    return state
