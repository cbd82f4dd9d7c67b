"""Progress: the live line a person watches, the heartbeat that says the driver is alive, TensorBoard."""

from __future__ import annotations

import logging
import math
import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable, Optional

from ray import tune

from .. import constants as C
from ..search.objective import TIEBREAK_LOSS, Objective
from ..space import names as space
from ..spec.model import JobSpec

if TYPE_CHECKING:
    from .recording import PriorRun

log = logging.getLogger("distsearch")


class Heartbeat(tune.Callback):
    """Calls ``beat`` from Tune's loop at most every ``interval_s`` (it says the driver is alive)."""

    def __init__(self, beat: Callable[[], None], interval_s: float):
        self.beat, self.interval_s = beat, interval_s
        self._last = time.monotonic()

    def __getstate__(self):  # Tune pickles callbacks into its experiment state
        return {**self.__dict__, "beat": None}

    def on_step_end(self, iteration, trials, **info):
        if self.beat is not None and time.monotonic() - self._last >= self.interval_s:
            self._last = time.monotonic()
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed heartbeat must never fail the sweep
                log.exception("heartbeat failed")


class ProgressView(tune.Callback):
    """One live line for the whole sweep: trials by state, epochs done out of the budget, and the
    best metric so far. Rewritten in place on a terminal; a new line every ``interval_s``
    otherwise (e.g. under ``ray job logs``)."""

    def __init__(self, spec: JobSpec, interval_s: Optional[float] = None, stream=None, prior: Optional["PriorRun"] = None, scheduler: Any = None):
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (1.0 if self.tty else 10.0)
        self.objective, self.max_epochs = Objective.of(spec), spec.budget.max_epochs
        self.budget = spec.budget.num_trials * spec.budget.max_epochs
        self.epochs = len(prior.epoch_rows) if prior else 0
        self.last_epoch: dict[str, int] = {t: v[-1][0] for t, v in prior.metric_by_trial(spec.metric).items()} if prior else {}
        self.best: Optional[tuple[float, str]] = None
        self._best_key: Optional[tuple] = None
        self.t0 = time.monotonic()
        self._last_print = 0.0
        # "Stopped early" is what the scheduler stopped (ASHA's rungs, its ``stopped`` ids; an
        # earlier driver's ASHA for a resumed run's ended trials); a trial a budget, a storage error
        # or anything else ended short is "cancelled", as in trials.parquet.
        self.scheduler = scheduler
        self.stopped_before = (
            {t for t, r in prior.ledger.items() if r.get(C.ENDED_AT) and self.last_epoch.get(t, 0) < self.max_epochs}
            if prior and getattr(scheduler, "stopped", None) is not None
            else set()
        )
        # A resumed sweep's Tune never lists the trials that ended under an earlier driver.
        self.ended_before = {t: "ERROR" if r.get(C.ERROR) else "TERMINATED" for t, r in prior.ledger.items() if r.get(C.ENDED_AT)} if prior else {}
        for row in prior.epoch_rows if prior else ():
            self._consider(row.get(self.objective.metric), row.get(TIEBREAK_LOSS), int(row[C.EPOCH]), row[C.TRIAL_ID])

    def __getstate__(self):  # Tune pickles callbacks into its experiment state
        return {**self.__dict__, "stream": None, "scheduler": None}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get(C.EPOCH, 0))
        if epoch <= self.last_epoch.get(trial.trial_id, 0):
            return  # a resumed trial repeating its checkpoint's report
        self.epochs += 1
        self.last_epoch[trial.trial_id] = epoch
        self._consider(result.get(self.objective.metric), result.get(TIEBREAK_LOSS), epoch, trial.trial_id)

    def _consider(self, value: Optional[float], loss: Optional[float], epoch: int, trial_id: str) -> None:
        if value is None or not math.isfinite(value):
            return
        # The selection rule's order (Objective.rank_trials), so the live best is the trial the run will pick.
        key = self.objective.selection_key(float(value), loss, epoch, trial_id)
        if self._best_key is None or key < self._best_key:
            self._best_key, self.best = key, (float(value), trial_id)

    def line(self, trials) -> str:
        listed = {t.trial_id for t in trials}
        trials = [*trials, *(SimpleNamespace(trial_id=t, status=s) for t, s in self.ended_before.items() if t not in listed)]
        states = [t.status for t in trials]
        ended = [t for t in trials if t.status == "TERMINATED"]
        short = [t.trial_id for t in ended if self.last_epoch.get(t.trial_id, 0) < self.max_epochs]
        stopped_now = getattr(self.scheduler, "stopped", set())
        stopped = sum(t in stopped_now or t in self.stopped_before for t in short)
        metric = self.objective.metric
        best = f"best {metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else f"best {metric} -"
        return (
            f"[{time.monotonic() - self.t0:6.0f} s] trials: {states.count('RUNNING')} running, {states.count('PENDING')} pending, "
            f"{len(ended) - len(short)} done, {stopped} stopped early, {len(short) - stopped} cancelled, {states.count('ERROR')} failed"
            f" | epochs {self.epochs}/{self.budget} | {best}"
        )

    def _print(self, trials, final: bool = False) -> None:
        if self.stream is None:
            return
        text = self.line(trials)
        if self.tty:
            self.stream.write("\r" + text.ljust(150)[:150] + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self._last_print >= self.interval_s:
            self._last_print = now
            self._print(trials)

    def on_experiment_end(self, trials, **info):
        self._print(trials, final=True)


class TensorBoardLogger(tune.Callback):
    """One TensorBoard event file per trial, in the trial's Tune folder: every numeric metric as
    ``ray/tune/<name>`` per epoch, and, when the trial ends, the hparams view with the trial's
    flat parameters (conditional sub-parameters included) against its last metrics.

    A plain callback over tensorboardX rather than Tune's ``TBXLoggerCallback``, which flattens
    the raw config, where a conditional option's sub-space still holds unresolved domain objects,
    so the sub-parameters went missing from the hparams view."""

    def __init__(self):
        self._writers: dict[str, Any] = {}
        self._last: dict[str, dict[str, float]] = {}

    def __getstate__(self):  # Tune pickles callbacks into its experiment state; writers stay here
        return {"_writers": {}, "_last": {}}

    def _writer(self, trial):
        if trial.trial_id not in self._writers:
            from tensorboardX import SummaryWriter

            trial.init_local_path()
            self._writers[trial.trial_id] = SummaryWriter(trial.local_path, flush_secs=30)
        return self._writers[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = result.get(C.EPOCH)
        if epoch is None:
            return
        from tensorboardX.summary import scalar

        writer = self._writer(trial)
        numbers = {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        # One event per epoch holding every scalar, which the writer's thread flushes: an event and
        # a flush per scalar cost the driver several times as much, on every trial's every epoch.
        if numbers:
            summary, *rest = (scalar(f"ray/tune/{name}", value) for name, value in numbers.items())
            for other in rest:
                summary.value.extend(other.value)
            writer.file_writer.add_summary(summary, global_step=int(epoch))
        self._last[trial.trial_id] = numbers

    def _end(self, trial) -> None:
        writer = self._writers.pop(trial.trial_id, None)
        if writer is None:
            return
        metrics = self._last.pop(trial.trial_id, {})
        params = {k: v for k, v in space.flatten(trial.config).items() if isinstance(v, (bool, int, float, str))}
        try:
            from tensorboardX.summary import hparams

            for summary in hparams(hparam_dict=params, metric_dict=metrics):
                writer.file_writer.add_summary(summary)
        except Exception:  # noqa: BLE001 - TensorBoard extras must never fail a sweep
            log.exception("could not write TensorBoard hparams for trial %s", trial.trial_id)
        writer.close()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial)
