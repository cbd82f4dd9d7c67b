"""Evaluation: the selected trial's best checkpoint, scored once on the held-out test split.

The sweep never shows a worker the test rows (``Splits.without_test``); this module is the one
place that reads them, once per run, for the model that validation selected.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional

import pandas as pd
import torch

from . import constants as C
from . import loop, results
from .objective import Objective
from .spec import JobSpec
from .tasks import Splits, Task

log = logging.getLogger("distsearch")

SPLITS = ("train", "val", "test")


def evaluate_checkpoint(task: Task, splits: Splits, params: Mapping[str, Any], state: Mapping[str, Any], split_names=SPLITS) -> dict[str, float]:
    """Restore ``state`` into ``task``'s model for ``params`` and score it on each named split, on
    CPU, in eval mode: ``{"<split>_<metric>": value}``."""
    model = task.build_model(params, splits)
    model.load_state_dict(state["model"])
    scores = {}
    for split in split_names:
        sums = loop.evaluate(task, model, getattr(splits, split), torch.device("cpu"))
        scores.update({f"{split}_{k}": v for k, v in task.metrics_from_sums(sums).items()})
    return scores


def score_best(spec: JobSpec, task: Task, splits: Splits, trials: pd.DataFrame, epochs: pd.DataFrame) -> Optional[dict[str, Any]]:
    """Restore the best trial's best checkpoint and score it on the test split, once: best.json's content.

    The same model is scored on the train and validation splits too, in eval mode, so the
    overfitting gap (``train`` against ``val``) sits beside the test score.
    """
    objective = Objective.of(spec)
    row = objective.best_trial(trials)
    if row is None:
        log.warning("no trial reported %s; nothing to test", spec.metric)
        return None
    trial_id = row[C.TRIAL_ID]
    ckpt = results.best_checkpoint(epochs, trial_id, objective)
    if ckpt is None:
        log.warning("trial %s has no checkpoint left to test", trial_id)
        return None
    t0 = time.perf_counter()
    state = results.load_state(ckpt[C.CHECKPOINT_PATH])
    params = state["params"]
    scores = evaluate_checkpoint(task, splits, params, state)
    by_split = {s: {k: v for k, v in scores.items() if k.startswith(f"{s}_")} for s in SPLITS}
    return {
        C.TRIAL_ID: trial_id,
        "params": params,
        "metric": spec.metric,
        "mode": spec.mode,
        "val_metric": float(ckpt[spec.metric]),
        C.EPOCH: int(ckpt[C.EPOCH]),
        C.CHECKPOINT_PATH: ckpt[C.CHECKPOINT_PATH],
        "test": by_split["test"],
        "final_train": by_split["train"],
        "final_val": by_split["val"],
        "test_seconds": time.perf_counter() - t0,
    }
