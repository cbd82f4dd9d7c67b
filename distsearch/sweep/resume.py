"""Resume: what earlier drivers of a run left on storage, the one truth a resumed sweep starts from.

A driver that died leaves the ledger (one record per trial: parameters, start, end, error, last
report) and each trial's Ray Train checkpoints, each holding every report up to it (weights and
JSON: ``distsearch.train.checkpoint``). ``load_prior`` reads both. The resumed sweep is a new Tune
experiment: its searcher is built afresh and told the ledger (``SearcherKind.resume``), the
unfinished trials run again under their ids from their checkpoints, and the scheduler
(``distsearch.search.asha``) replays the reports into its rungs. Tune's own saved state
(``tuner.pkl``, the experiment state's trials, searcher generators) is never read: Tune
unpickles it, and a run folder may come from anyone; and it may be cut short or behind the ledger.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, Optional

from .. import constants as C
from .. import storage
from .._ray import train as ray_train
from ..train import store
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
    the latest checkpoint Ray Train registered, or the trial's own record names (``train.store``)
    (``history.json`` in it, see ``worker``), which is the one the trial resumes from. Checkpoints Train never registered (a worker that outlived
    its driver for a moment) are ignored. Each kept checkpoint gives its epoch's path."""
    import pyarrow.fs as pafs

    fs, base = storage.filesystem(run_dir)
    ledger = read_ledger(run_dir)
    rows: list[dict[str, Any]] = []
    for trial in fs.get_file_info(pafs.FileSelector(f"{base}/{C.TRAIN_DIR}", allow_not_found=True)):
        if trial.type != pafs.FileType.Directory:
            continue
        trial_dir = storage.uri(fs, trial.path)
        try:
            kept = _kept_checkpoints(trial_dir)
        except ValueError as e:  # a record cut short or altered: the trial cannot resume from it either
            log.warning("trial %s: its checkpoint record cannot be read (%s)", trial.base_name, e)
            continue
        if kept is None:  # no checkpoint was registered: the trial starts from scratch
            continue
        latest, paths = kept
        history = storage.read_json(storage.join(latest, C.CHECKPOINT_HISTORY_FILE))
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


def _kept_checkpoints(trial_dir: str) -> Optional[tuple[str, dict[int, str]]]:
    """The latest checkpoint a trial's resume may use, and the other kept ones by epoch: those its
    own record names (``train.store``, a trial trained in its actor), or those its Ray Train run
    registered; None without one."""
    from ray.train import Result

    own = store.read_record(trial_dir)
    if own is not None:
        return (storage.join(trial_dir, own[-1].name), {e.epoch: storage.join(trial_dir, e.name) for e in own[:-1]}) if own else None
    try:
        with _quiet("ray.train"):  # Train logs a paragraph per run it finds
            train_run = Result.from_path(trial_dir)
    except ray_train.ray_train_error() as e:  # a snapshot cut short by the crash: Train cannot resume it either
        raise ValueError(f"Ray Train cannot read it: {e}; the trial starts over") from e
    except RuntimeError:  # no checkpoint was registered
        return None
    if train_run.checkpoint is None:
        return None
    latest = storage.uri(train_run.checkpoint.filesystem, train_run.checkpoint.path)
    return latest, {int(m[C.EPOCH]): storage.uri(c.filesystem, c.path) for c, m in train_run.best_checkpoints or []}


def _ledger_files(run_dir: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, base = storage.filesystem(run_dir)
    found = fs.get_file_info(pafs.FileSelector(f"{base}/{C.LEDGER_DIR}", allow_not_found=True))
    return sorted(storage.uri(fs, i.path) for i in found if i.type == pafs.FileType.File and i.base_name.endswith(".json"))


def read_ledger(run_dir: str) -> dict[str, dict[str, Any]]:
    """The run's ledger, ``{trial id: record}``, in the order its trials started. Raises
    ``DamagedLedger`` naming a record that is not one the recorder writes."""
    ledger = {}
    for path in _ledger_files(run_dir):
        trial_id = path.rsplit("/", 1)[-1].removesuffix(".json")
        try:
            record = storage.read_json(path)
            if not isinstance(record, dict) or record.get(C.TRIAL_ID) != trial_id or not isinstance(record.get(C.PARAMS, {}), dict):
                raise ValueError(f"not a ledger record of trial {trial_id}")
        except (OSError, ValueError) as e:
            raise DamagedLedger(f"{path} is damaged ({type(e).__name__}: {str(e)[:200]})") from e
        ledger[trial_id] = record
    return dict(sorted(ledger.items(), key=lambda kv: kv[1].get(C.STARTED_AT) or 0))


class DamagedLedger(ValueError):
    """A ledger record that cannot be read: the run it belongs to cannot be resumed as it is."""


def has_ledger(run_dir: str) -> bool:
    """Whether any trial of ``run_dir``'s sweep started (a resume needs the ledger, nothing of Tune's)."""
    return bool(_ledger_files(run_dir))
