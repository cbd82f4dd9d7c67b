"""Recording: what the driver keeps of each trial (its reports, its ledger record) and the error budget.

The ledger is one JSON record per trial (start, end, error, last report), written as each
changes: what a resumed driver must not run again. The per-epoch reports stay in driver memory
until the sweep ends, then become epochs.parquet; ``trial_rows`` makes trials.parquet's rows.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import pandas as pd
from ray import tune

from .. import constants as C
from .. import storage
from ..search.objective import TIEBREAK_LOSS, Objective
from ..space import names as space
from ..spec.model import JobSpec

# Tune's own bookkeeping keys: not the loop's metrics, so not in epochs.parquet.
_TUNE_KEYS = frozenset(
    {
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "date",
        "pid",
        "hostname",
        "node_ip",
        "done",
        "trial_id",
        "experiment_tag",
        "config",
        "iterations_since_restore",
        "time_since_restore",
        "checkpoint_dir_name",
        "should_checkpoint",
        "experiment_id",
        C.CHECKPOINT_KEEP_RANK,  # Ray Train's retention score, not a result
    }
)


@dataclass
class PriorRun:
    """What earlier drivers of a run left on storage: every trial's reports up to its latest
    checkpoint, and the ledger (start, end, error per trial)."""

    epoch_rows: list[dict[str, Any]]
    ledger: dict[str, dict[str, Any]]

    def results_by_trial(self, metrics: list[str]) -> dict[str, list[tuple[int, Any]]]:
        """Per trial, (epoch, value) of its epochs that report ``metrics``: the value alone for one
        metric, else {metric: value} (``SearchPlan.result_metrics``)."""
        if len(metrics) == 1:
            return self.metric_by_trial(metrics[0])
        out: dict[str, list[tuple[int, Any]]] = {}
        for r in sorted(self.epoch_rows, key=lambda r: r[C.EPOCH]):
            if all(r.get(m) is not None for m in metrics):
                out.setdefault(r[C.TRIAL_ID], []).append((int(r[C.EPOCH]), {m: float(r[m]) for m in metrics}))
        return out

    def metric_by_trial(self, metric: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for r in sorted(self.epoch_rows, key=lambda r: r[C.EPOCH]):
            if r.get(metric) is not None:
                out.setdefault(r[C.TRIAL_ID], []).append((int(r[C.EPOCH]), float(r[metric])))
        return out


def epoch_row(trial_id: str, result: Mapping[str, Any], received: datetime) -> dict[str, Any]:
    """One epochs.parquet row: the loop's metrics of ``result``, the trial id and when it arrived."""
    row = {k: v for k, v in result.items() if k not in _TUNE_KEYS}
    row[C.TRIAL_ID] = trial_id
    row[C.TIMESTAMP] = received
    return row


def error_text(trial) -> str:
    """The trial's error as Tune stored it: its driver-side error file is written before the
    error callbacks run; the copy on storage (``get_error``) only after the next sync."""
    local = getattr(trial, "error_file", None)
    text = Path(local).read_text() if local and os.path.exists(local) else str(trial.get_error() or "")
    return (text.strip() or "trial failed (no error text was stored)")[-4000:]


class ResultRecorder(tune.Callback):
    """Collects every per-epoch report in driver memory, and keeps a ledger record per trial
    (start, end, error, last report) in memory and in ``ledger_dir``. ``prior`` seeds both with
    what earlier drivers of the run recorded.

    Each (trial, epoch) is kept once, the first time it arrives.
    """

    def __init__(self, metric: str, ledger_dir: Optional[str] = None, prior: Optional[PriorRun] = None):
        self.metric, self.ledger_dir = metric, ledger_dir
        self.epoch_rows: list[dict[str, Any]] = list(prior.epoch_rows) if prior else []
        self._seen = {(r[C.TRIAL_ID], r[C.EPOCH]) for r in self.epoch_rows}
        self.ledger: dict[str, dict[str, Any]] = {t: dict(r) for t, r in prior.ledger.items()} if prior else {}
        self.trials: list[Any] = []

    def record(self, trial_id: str) -> dict[str, Any]:
        """The ledger record of ``trial_id``; every key present, None where not known yet."""
        return self.ledger.setdefault(trial_id, {C.TRIAL_ID: trial_id, C.STARTED_AT: None, C.ENDED_AT: None, C.ERROR: None, C.LAST_REPORT: None})

    @property
    def errors(self) -> dict[str, str]:
        return {t: r[C.ERROR] for t, r in self.ledger.items() if r.get(C.ERROR)}

    def on_trial_start(self, iteration, trials, trial, **info):
        record = self.record(trial.trial_id)
        if record[C.STARTED_AT] is None:
            record[C.STARTED_AT] = time.time()
            record[C.PARAMS] = space.flatten(trial.config)  # the trial's row can be written from the ledger alone
            self._write(record)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = (trial.trial_id, result.get(C.EPOCH))
        if key[1] is None or key in self._seen:
            return
        self._seen.add(key)
        self.epoch_rows.append(epoch_row(trial.trial_id, result, datetime.now(timezone.utc)))
        if self.metric in result:
            self.record(trial.trial_id)[C.LAST_REPORT] = {C.EPOCH: key[1], self.metric: result[self.metric]}

    def on_trial_save(self, iteration, trials, trial, **info):
        # A scheduler pauses a trial with a save: its last report, stored, tells the trial the
        # epochs it trained past it that never reached this driver (train.checkpoint.resumed_reports).
        self._write(self.record(trial.trial_id))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, error_text(trial))

    def _end(self, trial, error: Optional[str]) -> None:
        record = self.record(trial.trial_id)
        if record[C.ENDED_AT] is not None:
            return  # ended under an earlier driver: keep that record
        record.update({C.ENDED_AT: time.time(), C.ERROR: error})
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self.ledger_dir:
            storage.write_json(storage.join(self.ledger_dir, f"{record[C.TRIAL_ID]}.json"), record)

    def on_experiment_end(self, trials, **info):
        self.trials = list(trials)


class SweepBudget(tune.Callback, tune.stopper.Stopper):
    """Ends the sweep once more than ``max_failed`` trials have failed, ``time_s`` seconds after
    this driver started it, or once its trials have trained ``worker_epochs``: Tune then stops
    every running trial and starts no new one. Both a callback (it counts failures) and the
    stopper (it counts each trial's epochs once, times the workers that trained it, from its
    results and from ``prior_epochs``, the epoch rows earlier drivers of the run recorded)."""

    def __init__(
        self,
        max_failed: Optional[int],
        failed: Iterable[str] = (),
        time_s: Optional[float] = None,
        worker_epochs: Optional[int] = None,
        prior_epochs: Iterable[Mapping[str, Any]] = (),
    ):
        self.max_failed = max_failed
        # a set: a trial that failed under an earlier driver may fail once more when restarted
        self.failed: set[str] = set(failed)
        self.time_s = time_s
        self._t0 = time.monotonic()
        self.ran_out_of_time = False  # set when the time limit, not the trials, ended the sweep
        self.worker_epochs = worker_epochs
        # a resumed trial repeats its last report: each (trial, epoch) counts once
        self._counted: set[tuple[str, int]] = set()
        self.spent_worker_epochs = 0
        for row in prior_epochs:
            self._count(row[C.TRIAL_ID], row)
        self.ran_out_of_epochs = False  # set when worker_epochs, not the trials, ended the sweep
        # UTC seconds the sweep was ended: a trial that ends after it without reaching max_epochs
        # was cancelled by the end, not stopped by ASHA.
        self.ended_at: Optional[float] = None

    def __getstate__(self):  # Tune pickles the stopper; a resumed driver starts its own clock
        return {**self.__dict__, "_t0": None}

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed.add(trial.trial_id)

    @property
    def exceeded(self) -> bool:
        """Whether the failures ended the sweep."""
        return self.max_failed is not None and len(self.failed) > self.max_failed

    def _count(self, trial_id: str, result: Mapping[str, Any]) -> None:
        epoch = result.get(C.EPOCH)
        if epoch is None or pd.isna(epoch) or (trial_id, int(epoch)) in self._counted:
            return
        self._counted.add((trial_id, int(epoch)))
        workers = result.get(C.WORLD_SIZE)
        self.spent_worker_epochs += 1 if workers is None or pd.isna(workers) else int(workers)

    def __call__(self, trial_id, result) -> bool:
        self._count(trial_id, result)
        return False

    def stop_all(self) -> bool:
        if self._t0 is None:  # a copy Tune restored: the clock starts at its first question
            self._t0 = time.monotonic()
        if self.time_s is not None and not self.exceeded and time.monotonic() - self._t0 > self.time_s:
            self.ran_out_of_time = True
        if self.worker_epochs is not None and not (self.exceeded or self.ran_out_of_time) and self.spent_worker_epochs >= self.worker_epochs:
            self.ran_out_of_epochs = True
        stop = self.exceeded or self.ran_out_of_time or self.ran_out_of_epochs
        if stop and self.ended_at is None:
            self.ended_at = time.time()
        return stop


def _best_epoch(objective: Objective, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """(metric, epoch) of the trial's best epoch: by the metric, then the lower validation loss,
    then the earlier epoch (``Objective``'s one rule for ties); (None, None) without any."""
    if not rows:
        return None, None
    frame = objective.rank(pd.DataFrame(rows), objective.metric, loss=TIEBREAK_LOSS, epoch=C.EPOCH)
    top = frame.iloc[0]
    return top[objective.metric], int(top[C.EPOCH])


def _status(spec: JobSpec, tune_status: str, record: Mapping[str, Any], epochs_done: int, sweep_ended_at: Optional[float]) -> str:
    """What happened to a trial, in ``C.STATUSES`` terms. Tune marks a trial that the sweep's end
    stopped, and one it never started, TERMINATED like an ASHA stop; the ledger tells them apart."""
    if tune_status == "ERROR":
        return C.STATUS_ERROR
    if epochs_done >= spec.budget.max_epochs:
        return C.STATUS_COMPLETED
    if record[C.STARTED_AT] is None and epochs_done == 0:
        return C.STATUS_NOT_STARTED
    ended = record[C.ENDED_AT]
    if sweep_ended_at is not None and (ended is None or ended >= sweep_ended_at):
        return C.STATUS_CANCELLED
    return C.STATUS_STOPPED


@dataclass
class _Unlisted:
    """A trial Tune did not list at the end, as ``trial_rows`` reads one: its ledger record."""

    trial_id: str
    record: dict[str, Any]

    @property
    def status(self) -> str:
        return "ERROR" if self.record.get(C.ERROR) else "TERMINATED"

    @property
    def config(self) -> dict[str, Any]:
        return self.record.get(C.PARAMS) or {}

    def get_error(self) -> str:
        return self.record.get(C.ERROR) or ""


def trial_rows(
    spec: JobSpec, rec: ResultRecorder, release_seconds: Mapping[str, float], sweep_ended_at: Optional[float] = None
) -> list[dict[str, Any]]:
    """One row per trial Tune knew at the end: status, epochs, best and last metric, times.
    ``sweep_ended_at`` (UTC seconds) is when a budget ended the sweep, if one did."""
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for row in rec.epoch_rows:
        by_trial.setdefault(row[C.TRIAL_ID], []).append(row)
    objective = Objective.of(spec)
    rows = []
    # A trial the ledger or the epochs know but Tune's list lacks (Tune restored less than the
    # run holds) still gets its row, from the ledger: no epoch row is ever without its trial.
    listed = {t.trial_id for t in rec.trials}
    unlisted = sorted((set(rec.ledger) | set(by_trial)) - listed)
    for trial in list(rec.trials) + [_Unlisted(t, rec.record(t)) for t in unlisted]:
        tid = trial.trial_id
        epochs = by_trial.get(tid, [])
        values = [(r[spec.metric], r[C.EPOCH]) for r in epochs if r.get(spec.metric) is not None]
        done = max((r[C.EPOCH] for r in epochs), default=0)
        status = _status(spec, trial.status, rec.record(tid), done, sweep_ended_at)
        error = (rec.record(tid)[C.ERROR] or error_text(trial)) if status == C.STATUS_ERROR else None
        best = _best_epoch(objective, [r for r in epochs if r.get(spec.metric) is not None and math.isfinite(r[spec.metric])])
        start, end = rec.record(tid)[C.STARTED_AT], rec.record(tid)[C.ENDED_AT]
        rows.append(
            {
                C.TRIAL_ID: tid,
                "params": trial.config if isinstance(trial, _Unlisted) else space.flatten(trial.config),
                C.STATUS: status,
                C.EPOCHS_COMPLETED: done,
                C.BEST_METRIC: best[0],
                C.BEST_EPOCH: best[1],
                C.LAST_METRIC: values[-1][0] if values else None,
                C.STARTED_AT: datetime.fromtimestamp(start, timezone.utc) if start else None,
                C.ENDED_AT: datetime.fromtimestamp(end, timezone.utc) if end else None,
                C.WALL_SECONDS: (end - start) if start and end else None,
                C.RELEASE_SECONDS: release_seconds.get(tid),
                C.ERROR: error,
            }
        )
    return rows
