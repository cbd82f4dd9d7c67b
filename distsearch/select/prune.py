"""Lean checkpoints after the sweep: keep what the selected models and a resume need, weights only.

With ``checkpointing.keep_after_sweep: selected`` (the default), once the single best and the
ensemble are scored and saved, a run keeps:

- the single best's checkpoint and each ensemble member's (``load_model`` and ``resave_models``
  read them);
- each unfinished trial's checkpoints (cancelled by ``budget.time_s``, ``budget.worker_epochs`` or the error budget), with
  their optimizer state, since a resumed driver restarts such a trial from its latest one.

Every other checkpoint of ``train/`` loses its model file (the weights, nearly all its bytes),
and the kept checkpoints of ended trials lose their optimizer and LR-scheduler state, which only
a resume reads and an ended trial never resumes (its ledger record ends it at once). The small
JSON beside each model file stays: a driver that resumes the run (one killed after this step,
say) reads each trial's reports from its latest checkpoint's ``history.json``
(``distsearch.sweep.resume``), and a checkpoint without its model file is one
``results.best_checkpoint`` passes over. ``all`` keeps everything as it was.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Iterable, Mapping, Optional

import pandas as pd
import pyarrow.fs as pafs
import torch

from .. import constants as C
from .. import storage
from ..train.checkpoint import read_state

log = logging.getLogger(__name__)

#: Statuses of trials that may still run: a resumed driver restarts them from their latest checkpoint.
UNFINISHED = (C.STATUS_CANCELLED,)
#: Checkpoint state only a resume reads.
RESUME_ONLY_STATE = ("optimizer", "scheduler")


def _checkpoint_dirs(fs: pafs.FileSystem, train_dir: str) -> dict[str, list[pafs.FileInfo]]:
    """Each checkpoint directory under ``train_dir`` (``<trial id>/checkpoint_*``) with its files."""
    found: dict[str, list[pafs.FileInfo]] = {}
    for info in fs.get_file_info(pafs.FileSelector(train_dir, allow_not_found=True, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        parts = info.path[len(train_dir) :].strip("/").split("/")
        if len(parts) >= 3 and parts[1].startswith("checkpoint_"):
            found.setdefault(f"{train_dir}/{parts[0]}/{parts[1]}", []).append(info)
    return found


def _inside(path: str) -> str:
    """A checkpoint path as epochs.parquet holds it (a local path or a URI), inside its filesystem."""
    return storage.filesystem(path)[1].rstrip("/")


def prune_checkpoints(
    run_dir: str,
    keep: str,
    trials: pd.DataFrame,
    best: Optional[Mapping[str, Any]],
    ensemble: Optional[Mapping[str, Any]],
    front: Iterable[str] = (),
) -> dict[str, Any]:
    """Apply ``keep`` (``selected`` or ``all``) to ``run_dir``'s checkpoints; returns run.json's
    ``checkpoints`` record: directories and bytes before and after. The ``front`` trials (a
    multi-objective run's Pareto front, which ``load_model(run, pick=...)`` chooses from) keep
    their model files, as the selected checkpoints do."""
    fs, train_dir = storage.filesystem(storage.join(run_dir, C.TRAIN_DIR))
    dirs = _checkpoint_dirs(fs, train_dir.rstrip("/"))
    before = sum(f.size or 0 for files in dirs.values() for f in files)
    models = sum(any(f.base_name == C.CHECKPOINT_FILE for f in files) for files in dirs.values())
    record = {"keep_after_sweep": keep, "model_files_before": models, "bytes_before": before}
    if keep == "all":
        return {**record, "model_files_after": models, "bytes_after": before}
    selected, front = {_inside(p) for p in _selected_paths(best, ensemble)}, set(front)
    unfinished = set(trials.loc[trials[C.STATUS].isin(UNFINISHED), C.TRIAL_ID]) if C.STATUS in trials else set()
    after = kept = 0
    for path, files in dirs.items():
        has_model = any(f.base_name == C.CHECKPOINT_FILE for f in files)
        if path.rsplit("/", 2)[1] in unfinished:
            after += sum(f.size or 0 for f in files)
        elif path in selected or path.rsplit("/", 2)[1] in front:
            after += _drop_resume_state(fs, path, files)
        else:
            if has_model:
                fs.delete_file(f"{path}/{C.CHECKPOINT_FILE}")
            after += sum(f.size or 0 for f in files if f.base_name != C.CHECKPOINT_FILE)
            continue
        kept += has_model
    log.info("checkpoints: kept %d of %d model files, %.1f of %.1f MB", kept, models, after / 1e6, before / 1e6)
    return {**record, "model_files_after": kept, "bytes_after": after}


def _selected_paths(best: Optional[Mapping[str, Any]], ensemble: Optional[Mapping[str, Any]]) -> Iterable[str]:
    if best and best.get(C.CHECKPOINT_PATH):
        yield best[C.CHECKPOINT_PATH]
    for member in (ensemble or {}).get("members") or []:
        if member.get(C.CHECKPOINT_PATH):
            yield member[C.CHECKPOINT_PATH]


def _drop_resume_state(fs: pafs.FileSystem, path: str, files: list[pafs.FileInfo]) -> int:
    """Rewrite ``path``'s model file without what only a resume reads; returns the directory's bytes."""
    size = sum(f.size or 0 for f in files)
    model = next((f for f in files if f.base_name == C.CHECKPOINT_FILE), None)
    if model is None:
        return size
    where = storage.uri(fs, model.path)
    state = read_state(storage.read_bytes(where), where)  # tensors and plain values only
    if not any(state.get(k) is not None for k in RESUME_ONLY_STATE):
        return size
    buffer = io.BytesIO()
    torch.save({**state, **{k: None for k in RESUME_ONLY_STATE}}, buffer)
    storage.write_bytes(where, buffer.getvalue())
    return size - (model.size or 0) + buffer.getbuffer().nbytes
