"""Resume: what earlier drivers of a run left on storage, and ASHA's rungs refilled from it.

A driver that died leaves the ledger (one record per trial: start, end, error, last report) and
each trial's Ray Train checkpoints, each holding every report up to it. ``load_prior`` reads
both; the scheduler (``distsearch.search.asha``) replays the reports into its rungs, since Tune
saves no scheduler state.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, Optional

from .. import constants as C
from .. import storage
from .._ray import train as ray_train
from .recording import PriorRun, epoch_row

log = logging.getLogger("distsearch")


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def load_prior(run_dir: str) -> PriorRun:
    """Read ``run_dir`` as earlier drivers left it: the ledger, and per trial the reports up to
    the latest checkpoint Ray Train registered (``history.json`` in it, see ``worker``), which
    is the one Train resumes from. Checkpoints Train never registered (a worker that outlived
    its driver for a moment) are ignored. Each kept checkpoint gives its epoch's path."""
    import pyarrow.fs as pafs
    from ray.train import Result

    fs, base = storage.filesystem(run_dir)
    ledger = {}
    for info in fs.get_file_info(pafs.FileSelector(f"{base}/{C.LEDGER_DIR}", allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
            record = storage.read_json(storage.uri(fs, info.path))
            ledger[record[C.TRIAL_ID]] = record
    rows: list[dict[str, Any]] = []
    for trial in fs.get_file_info(pafs.FileSelector(f"{base}/{C.TRAIN_DIR}", allow_not_found=True)):
        if trial.type != pafs.FileType.Directory:
            continue
        try:
            with _quiet("ray.train"):  # Train logs a paragraph per run it finds
                train_run = Result.from_path(storage.uri(fs, trial.path))
        except ray_train.ray_train_error() as e:  # a snapshot cut short by the crash: Train cannot resume it either
            log.warning("trial %s: Ray Train cannot read its checkpoint record (%s); it starts over", trial.base_name, e)
            continue
        except RuntimeError:  # no checkpoint was registered: the trial starts from scratch
            continue
        if train_run.checkpoint is None:
            continue
        latest = storage.uri(train_run.checkpoint.filesystem, train_run.checkpoint.path)
        history = storage.read_json(storage.join(latest, C.CHECKPOINT_HISTORY_FILE))
        paths = {int(m[C.EPOCH]): storage.uri(c.filesystem, c.path) for c, m in train_run.best_checkpoints or []}
        paths[int(history[-1][C.EPOCH])] = latest
        record = ledger.get(trial.base_name, {})
        if record.get(C.ENDED_AT):
            # An ended trial's workers may train on for a moment after Tune stops it; those
            # epochs never reached the driver and are not results.
            last = (record.get(C.LAST_REPORT) or {}).get(C.EPOCH, 0)
            history = [h for h in history if h[C.EPOCH] <= last]
        for h in history:
            row = epoch_row(trial.base_name, {k: v for k, v in h.items() if k != C.TIMESTAMP}, datetime.fromtimestamp(h[C.TIMESTAMP], timezone.utc))
            if h[C.EPOCH] in paths:
                row[C.CHECKPOINT_PATH] = paths[h[C.EPOCH]]
            rows.append(row)
    return PriorRun(epoch_rows=rows, ledger=ledger)


#: Tune's experiment state lists every trial: more than this is not a file Tune wrote.
MAX_SWEEP_STATE_BYTES = 512 * 2**20


def damaged_sweep_state(run_dir: str) -> Optional[str]:
    """Why Tune's newest experiment state in ``run_dir`` cannot be restored, or None. Tune writes
    it in place, so a full disk or a crash can cut it short; Tune then restored no trial, logged
    one line and went on, and trials that had trained vanished from trials.parquet while their
    epochs stayed. A state that lists fewer trials than the ledger is no damage: it is saved every
    few seconds, random search draws the same ids again, and a TPE trial trains only once the
    saved state lists it (``search.tpe.wait_until_saved``)."""
    import json

    import pyarrow.fs as pafs

    fs, base = storage.filesystem(run_dir)
    found = fs.get_file_info(pafs.FileSelector(f"{base}/{C.TUNE_DIR}", allow_not_found=True))
    states = sorted(i.path for i in found if i.base_name.startswith("experiment_state") and i.base_name.endswith(".json"))
    ledger = sorted(
        i.base_name.removesuffix(".json")
        for i in fs.get_file_info(pafs.FileSelector(f"{base}/{C.LEDGER_DIR}", allow_not_found=True))
        if i.base_name.endswith(".json")
    )
    if not states:
        return None
    path = storage.uri(fs, states[-1])
    try:
        state = json.loads(storage.read_bytes(path, MAX_SWEEP_STATE_BYTES))
        for t in state["trial_data"]:
            json.loads(t[0])["trial_id"]  # noqa: B018 - each entry must parse, as Tune will parse it
    except (ValueError, KeyError, TypeError, IndexError) as e:
        return f"{path} is damaged ({type(e).__name__}: {str(e)[:200]}), and Tune would resume without the {len(ledger)} trial(s) in its ledger"
    return None


def has_sweep_state(run_dir: str) -> bool:
    """Whether Tune saved the experiment state of ``run_dir``'s sweep (needed to resume it)."""
    import pyarrow.fs as pafs

    fs, base = storage.filesystem(run_dir)
    found = fs.get_file_info(pafs.FileSelector(f"{base}/{C.TUNE_DIR}", allow_not_found=True))
    return any(i.base_name.startswith("experiment_state") and i.base_name.endswith(".json") for i in found)
