"""A trial's checkpoint: its files, its state read back as tensors and plain values only, and the score its retention uses.

A checkpoint (``model.pt``) is ``torch.save`` of a dict of state dicts, numbers, strings and the
trial's hyperparameters. It is read with ``weights_only=True``, torch's restricted unpickler,
which builds tensors and containers and refuses any other object, so a file planted in a run
folder cannot run code on the driver or the workers that resume from it.
"""

from __future__ import annotations

import io
import json
import pickle
import time
from typing import TYPE_CHECKING, Any, Optional

import torch

from .. import constants as C
from ..errors import UserError
from ..search.objective import TIEBREAK_LOSS, trailing_means

if TYPE_CHECKING:
    from ..search.objective import Objective


class UnsafeCheckpoint(UserError):
    """A checkpoint file holds something other than tensors and plain values."""


def keep_rank(objective: "Objective", history: list[dict[str, Any]], smoothing_epochs: int = 1) -> float:
    """Ray Train's score for the checkpoint of ``history``'s last report (every report so far),
    with the metric as selection ranks it: its trailing mean over ``smoothing_epochs``.

    Ray Train keeps a trial's highest-scored checkpoints and, among equal scores, the later
    ones, while distsearch selects a trial's best epoch by the metric, then the lower validation
    loss, then the earlier epoch (``Objective.selection_key``). Scored by the metric alone, a tie
    kept epoch 39's checkpoint where trials.parquet named epoch 6. So the score is the count of
    times the best under distsearch's rule changed, up to and including this report: a new best
    scores above every earlier checkpoint, and any other report half a point below the current
    best, so the best under the rule is always among the kept ones (with the latest, after it)."""
    best_key, changes, last_is_best = None, 0, False
    ranked = trailing_means([h.get(objective.metric) for h in history], smoothing_epochs)
    for h, value in zip(history, ranked, strict=True):
        last_is_best = False
        if value is None:
            continue
        key = objective.selection_key(float(value), h.get(TIEBREAK_LOSS), int(h["epoch"]), "")
        if best_key is None or key < best_key:
            best_key, changes, last_is_best = key, changes + 1, True
    return float(changes) if last_is_best else changes - 0.5


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


def recorded(history: list[dict[str, Any]], metrics: dict[str, Any], objective: "Objective", smoothing_epochs: int) -> dict[str, Any]:
    """Add ``metrics`` (an epoch's report) to ``history``, the trial's reports so far, stamped
    with the time; return them with the rank their checkpoint is kept by (``keep_rank``)."""
    history.append({**metrics, C.TIMESTAMP: time.time()})
    return {**metrics, C.CHECKPOINT_KEEP_RANK: keep_rank(objective, history, smoothing_epochs)}


def files(state: dict[str, Any], metrics: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, bytes]:
    """A checkpoint's files by name: the state (saved now: it shares tensors with the live
    model, which trains on), the epoch's metrics, and every report up to it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return {
        C.CHECKPOINT_FILE: buffer.getvalue(),
        C.CHECKPOINT_META_FILE: json.dumps(metrics, default=str).encode(),
        C.CHECKPOINT_HISTORY_FILE: json.dumps(history, default=str).encode(),
    }


def resumed_reports(
    state: dict[str, Any], history: list[dict[str, Any]], params: dict[str, Any], where: str, seen_epoch: Optional[int] = None
) -> list[dict[str, Any]]:
    """The reports a trial repeats when it resumes from the checkpoint at ``where`` (its
    ``state`` and ``history``): that epoch's own, which a trial whose last epoch was done
    needs, as Tune wants a metric in a trial's final result, and a scheduler gets to look
    again; after those of the epochs past ``seen_epoch``, the last its driver took, if given. A
    trial paused at a rung trains on until the pause reaches it, and those epochs' reports never
    reached the driver: repeated, they are recorded, counted, and judged at their rung. Refuses
    a checkpoint of other hyperparameters than the trial's ``params``."""
    if state.get("params") != params:
        raise RuntimeError(
            f"the checkpoint at {where} was trained with other hyperparameters ({state.get('params')}) than "
            f"this trial's ({params}); refusing to resume from it"
        )
    unseen = [h for h in history[:-1] if seen_epoch is not None and h[C.EPOCH] > seen_epoch]
    return [{k: v for k, v in h.items() if k != C.TIMESTAMP} for h in unseen + history[-1:]]
