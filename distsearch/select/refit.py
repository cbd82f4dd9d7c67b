"""Refit: a selected recipe trained again on the train and validation splits together, for the epochs selection picked.

Selection needs the validation split; once it has picked a recipe and an epoch, those rows are
more training data (AutoGluon's ``refit_full``). The refit runs the same training loop as a Train
worker, from the same seed, with the learning-rate schedule over the job's ``max_epochs`` as the
trial had it, and stops after the selected epoch. Nothing validates the refit model: the test
split, scored once afterwards, is the only judge, as it is for the checkpoint it replaces.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import torch

from .. import constants as C
from ..tasks import Splits, Task
from ..train import loop


class _Reached(Exception):
    """Raised out of the loop's report at the selected epoch: the refit is done."""


def merged_splits(splits: Splits) -> Splits:
    """``splits`` with the validation rows appended to the training rows (the validation split
    stays too: the loop evaluates it each epoch, now as rows it trains on) and no test rows."""
    train = tuple(torch.cat([a, b]) for a, b in zip(splits.train, splits.val, strict=True))
    return Splits(train=train, val=splits.val, test=(splits.test[0][:0], splits.test[1][:0]))


def refit(task: Task, merged: Splits, params: Mapping[str, Any], epochs: int, max_epochs: int, seed: int) -> tuple[torch.nn.Module, float]:
    """Train ``params``'s model on ``merged`` (``merged_splits``) for ``epochs`` epochs of a
    ``max_epochs`` schedule, on this process's GPU where it has one; returns the model in eval
    mode, on the CPU, and the seconds it took."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    reached: dict[str, Any] = {}

    def report(metrics: dict[str, Any], state: Any) -> None:
        if int(metrics[C.EPOCH]) >= epochs:
            reached.update(state)
            raise _Reached()

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):  # the loop seeds torch; the caller's generators stay as they were
        try:
            loop.train(task, params, report, max_epochs=max_epochs, seed=seed, splits=merged, device=device)
        except _Reached:
            pass
        if not reached:
            raise RuntimeError(f"the refit of {dict(params)} ended before epoch {epochs} of {max_epochs}")
        model = task.build_model(params, merged)  # its initial weights draw from the generator too
    model.load_state_dict({k: v.detach().cpu() for k, v in reached["model"].items()})
    return model.eval(), time.perf_counter() - t0
