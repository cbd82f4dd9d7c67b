"""A trial's own checkpoints on storage: written, kept as Ray Train keeps them, and found again to resume.

A trial that trains in its Tune actor (``harness.trial_processes: trial_actor``, see
``train.lone``) has no Ray Train run to keep its checkpoints, so it keeps them itself, in Ray
Train's layout: ``<train dir>/<trial id>/checkpoint_<epoch>/`` with ``model.pt``, ``meta.json``
and ``history.json``, which the rest of distsearch (selection, pruning, resume) reads as it reads
Ray Train's. Beside them, ``checkpoints.json`` names the kept checkpoints and the latest. It is
replaced whole, and only after the checkpoint's own files are written, so it never names a
checkpoint cut short by a crash: it is what Ray Train's checkpoint manager snapshot is to a
resume. Retention is Ray Train's: the ``num_to_keep`` highest-ranked (``checkpoint.keep_rank``;
among equal ranks the later ones), plus the latest.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Optional

from .. import constants as C
from .. import storage

log = logging.getLogger("distsearch")

#: How large a trial's checkpoint record may be: a few entries of a path, an epoch and a rank.
MAX_RECORD_BYTES = 1 << 20


#: A checkpoint directory's name: its epoch, zero-padded so that names sort as epochs do.
_NAME = re.compile(r"checkpoint_\d{6,}")


@dataclass(frozen=True)
class Entry:
    """One kept checkpoint: its directory's name inside the trial's folder, epoch and retention rank."""

    name: str
    epoch: int
    rank: float


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_{epoch:06d}"


def retained(entries: list[Entry], num_to_keep: int) -> list[Entry]:
    """Which of ``entries`` (in report order, the last the latest) stay: the ``num_to_keep``
    highest-ranked, the later of equal ranks first, and the latest; in report order."""
    best = sorted(range(len(entries)), key=lambda i: (entries[i].rank, i), reverse=True)[:num_to_keep]
    keep = set(best) | ({len(entries) - 1} if entries else set())
    return [e for i, e in enumerate(entries) if i in keep]


def read_record(trial_dir: str) -> Optional[list[Entry]]:
    """The kept checkpoints that ``trial_dir``'s record names, the latest last; None without a
    record (the trial never stored a checkpoint of its own). A damaged record raises
    ``ValueError`` naming the file."""
    where = storage.join(trial_dir, C.CHECKPOINT_RECORD_FILE)
    if not storage.exists(where):
        return None
    try:
        raw = storage.read_json(where, MAX_RECORD_BYTES)
        entries = [Entry(str(e["name"]), int(e[C.EPOCH]), float(e["rank"])) for e in raw["kept"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{where} is damaged ({type(e).__name__}: {str(e)[:200]}); fix: delete it, and the trial starts over") from e
    # a name is a folder beside the record, never a path that leads out of the trial's folder
    if any(not _NAME.fullmatch(e.name) for e in entries):
        raise ValueError(f"{where} names something other than a checkpoint folder of its trial; fix: delete it, and the trial starts over")
    return entries


class TrialCheckpoints:
    """The checkpoints of one trial under ``trial_dir``: ``latest`` to resume from, ``write`` for each epoch's."""

    def __init__(self, trial_dir: str, num_to_keep: int):
        self.trial_dir = trial_dir
        self.num_to_keep = num_to_keep
        self.kept: list[Entry] = read_record(trial_dir) or []

    @property
    def latest(self) -> Optional[Entry]:
        return self.kept[-1] if self.kept else None

    def path(self, entry: Entry) -> str:
        """``entry``'s checkpoint directory: a local path or a URI."""
        return storage.join(self.trial_dir, entry.name)

    def write(self, epoch: int, rank: float, files: dict[str, bytes]) -> str:
        """Store ``files`` as epoch ``epoch``'s checkpoint, record it, and delete the checkpoints
        retention drops; returns the checkpoint's directory. A resumed trial that trains an
        epoch again (the one in flight when its driver ended) overwrites that epoch's files."""
        new = Entry(checkpoint_name(epoch), epoch, rank)
        path = self.path(new)
        for name, data in files.items():
            storage.write_bytes(storage.join(path, name), data)
        kept = retained([e for e in self.kept if e.epoch < epoch] + [new], self.num_to_keep)
        record = {"kept": [{"name": e.name, C.EPOCH: e.epoch, "rank": e.rank} for e in kept]}
        storage.write_json(storage.join(self.trial_dir, C.CHECKPOINT_RECORD_FILE), record)
        dropped = [e for e in self.kept if e not in kept and e.name != new.name]
        self.kept = kept
        for e in dropped:
            _delete_dir(self.path(e))
        return path


def _delete_dir(path: str) -> None:
    fs, inside = storage.filesystem(path)
    try:
        fs.delete_dir(inside)
    except (FileNotFoundError, OSError) as e:  # storage that refuses only costs bytes: selection prunes later
        log.warning("could not delete the dropped checkpoint %s: %s", path, e)
