"""The simulation: a job's real scheduler and searcher, told each tabulated result at its simulated time.

A discrete-event loop in simulated seconds. ``workers`` slots each run one trial at a time; a free
slot asks the searcher for the next trial (as Tune's controller does), each epoch takes the
seconds the table recorded, and each result goes to the searcher and to the scheduler, which
answers continue, stop or pause. A stopped, paused or finished trial frees its slot after the
table's ``end_s``; the next trial starts after its own recorded wait (``gap_s`` for one the table
lacks). A free slot first resumes the trial a pausing scheduler promotes (``asha.variant:
promote``), after ``gap_s``, at its next epoch; the paused trials it can no longer promote are
stopped once nothing runs and nothing is left to draw, as in a real sweep. The
searcher and scheduler are the very objects a real sweep builds from the
search plan (``SearchPlan.make_scheduler``, ``make_search``), so a replay at the recorded
concurrency and seed draws the recorded trials and stops the same ones.
"""

from __future__ import annotations

import copy
import heapq
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from .. import constants as C
from .._ray.tune import sequential_trial_ids
from ..search.plan import build_plan
from ..space import names as space
from ..spec.model import JobSpec
from .surrogate import Nearest
from .table import Curve, Table

#: "Near the best": within this fraction of the table's best value.
NEAR_BEST = 0.005


@dataclass
class Simulated:
    """One simulated sweep: rows shaped as a real run's, and what it cost."""

    workers: int
    seed: int
    search: str  # the plan's summary, e.g. random+asha
    trial_rows: list[dict[str, Any]]
    epoch_rows: list[dict[str, Any]]
    wall_s: float  # first start to last trial end, simulated seconds
    worker_epochs: int
    busy_s: float  # slot-seconds spent in trials
    surrogate_results: int  # results that came from a configuration the table lacks
    best: Optional[float]  # the best metric any trial reported
    time_to_near_best_s: Optional[float]  # when the best so far came within NEAR_BEST of the table's best
    stopped: dict[str, int] = field(default_factory=dict)  # trial id -> the epoch its scheduler stopped it at
    job: dict[str, Any] = field(default_factory=dict)  # the job simulated (its seed, searcher and scheduler)

    @property
    def utilisation(self) -> float:
        return self.busy_s / (self.workers * self.wall_s) if self.wall_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "seed": self.seed,
            "search": self.search,
            "wall_s": self.wall_s,
            "worker_epochs": self.worker_epochs,
            "utilisation": self.utilisation,
            "surrogate_share": self.surrogate_results / self.worker_epochs if self.worker_epochs else 0.0,
            "best": self.best,
            "time_to_near_best_s": self.time_to_near_best_s,
        }


def job_for(
    table: Table, *, seed: Optional[int] = None, search: Optional[str] = None, scheduler: Optional[str] = None, trials: Optional[int] = None
) -> JobSpec:
    """The table's job with another seed, searcher (``random``, ``tpe``, ``bohb``, ``gp``), scheduler (``asha``, ``pasha``, ``promote``, ``fifo``)
    or number of trials (configurations beyond the table's take the surrogate's curves)."""
    job = copy.deepcopy(table.job)
    if trials is not None:
        job["budget"] = {**job["budget"], "num_trials": trials}
    if seed is not None:
        job["seed"] = seed
    if search is not None and search != job.get("search", {}).get("algorithm"):
        job["search"] = {"algorithm": search}
    if scheduler is not None:
        variant = {"variant": scheduler} if scheduler != "fifo" else {}
        job["asha"] = {**job.get("asha", {}), "enabled": scheduler != "fifo", **variant}
    return JobSpec.model_validate(job)


def _never_run(config):  # the simulated trials' trainable: Tune's generators need one to name trials
    raise RuntimeError("a simulated trial never runs")


def table_best(table: Table, metric: str, mode: str) -> Optional[float]:
    values = [m[metric] for c in table.curves for m in c.metrics if metric in m]
    return (max if mode == "max" else min)(values) if values else None


def simulate(table: Table, spec: JobSpec, workers: int, surrogate: Optional[Nearest] = None) -> Simulated:
    """Run ``spec``'s sweep (``job_for``) over ``table`` with ``workers`` slots, in simulated time."""
    import numpy as np
    from ray.tune.experiment import Experiment
    from ray.tune.search import Searcher, SearchGenerator

    plan = build_plan(spec)
    surrogate = surrogate or Nearest(table)
    goal = table_best(table, spec.metric, spec.mode)
    rng_state = np.random.get_state()  # ASHA picks brackets with NumPy's global generator
    np.random.seed(spec.seed)
    try:
        # counted trial ids: Tune's are 32 random bits, which collide within a sweep about once
        # in tens of thousands of simulated sweeps and then break ASHA's bookkeeping
        with tempfile.TemporaryDirectory() as tmp, plan.running(), sequential_trial_ids():
            scheduler = plan.make_scheduler()
            searcher = plan.make_search(workers, scheduler)
            search = SearchGenerator(searcher) if isinstance(searcher, Searcher) else searcher
            if plan.param_space():
                search.set_search_properties(spec.metric, spec.mode, plan.param_space())
            search.add_configurations(
                [Experiment("simulated", _never_run, config=plan.param_space(), num_samples=spec.budget.num_trials, storage_path=tmp)]
            )
            return _Loop(table, spec, workers, surrogate, search, scheduler, goal, plan.summary).run()
    finally:
        np.random.set_state(rng_state)


class _Loop:
    def __init__(self, table, spec, workers, surrogate, search, scheduler, goal, summary):
        self.table, self.spec, self.workers, self.surrogate = table, spec, workers, surrogate
        self.search, self.scheduler, self.goal, self.summary = search, scheduler, goal, summary
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.idle, self.now = workers, 0.0
        self.curves: dict[str, Curve] = {}
        self.trials: dict[str, dict[str, Any]] = {}
        self.epoch_rows: list[dict[str, Any]] = []
        self.surrogate_results = 0
        self.best: Optional[float] = None
        self.near_best_at: Optional[float] = None
        self.stopped: dict[str, int] = {}
        # budget.worker_epochs: once spent, no trial starts and the running ones are cancelled, as in a real sweep
        self.worker_epochs_left = spec.budget.worker_epochs
        self.cancelled: set[str] = set()

    def push(self, at: float, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload))

    def fill(self) -> None:
        promote = getattr(self.scheduler, "promote", None)
        while self.idle > 0 and self.worker_epochs_left != 0 and promote is not None and (trial := promote()) is not None:
            self.idle -= 1
            state = self.trials[trial.trial_id]
            del state["end"]
            state["seg"] = self.now + self.table.gap_s
            curve = self._long_enough(state, state["epochs"] + 1)
            self.push(state["seg"] + curve.seconds[state["epochs"]], "epoch", trial.trial_id)
        while self.idle > 0 and not self.search.is_finished() and self.worker_epochs_left != 0:
            trial = self.search.next_trial()
            if trial is None:
                return
            self.idle -= 1
            self.scheduler.on_trial_add(None, trial)
            params = space.flatten(trial.config)
            curve, own = self.surrogate.curve(params)
            self.curves[trial.trial_id] = curve
            first_wave = len(self.trials) < self.workers
            wait = curve.wait_s if own and curve.wait_s is not None else 0.0 if first_wave else self.table.gap_s
            start = self.now + wait
            self.trials[trial.trial_id] = {
                "trial": trial,
                "params": params,
                "start": start,
                "seg": start,
                "busy": 0.0,
                "own": own,
                "epochs": 0,
                "values": [],
            }
            self.push(start + curve.seconds[0], "epoch", trial.trial_id)

    def run(self) -> Simulated:
        from ray.tune.schedulers import TrialScheduler

        max_epochs = self.spec.budget.max_epochs
        while True:
            self.fill()
            if not self.events and not self._stop_the_paused():
                break
            if not self.events:
                continue
            self.now, _, kind, trial_id = heapq.heappop(self.events)
            if kind == "free":
                self.idle += 1
                continue
            if trial_id in self.cancelled:  # the epoch in flight when the budget ran out: lost
                continue
            state = self.trials[trial_id]
            epoch = state["epochs"] + 1
            curve = self.curves[trial_id]
            result = self._result(trial_id, state, epoch, curve)
            spent = False
            if self.worker_epochs_left is not None:
                self.worker_epochs_left = max(0, self.worker_epochs_left - self.spec.scaling.num_workers)
                spent = self.worker_epochs_left == 0
                if spent:
                    self._cancel_the_others(trial_id)
                    if epoch < max_epochs:  # this trial ends here too, cancelled rather than stopped
                        self.cancelled.add(trial_id)
            trial = state["trial"]
            self.search.on_trial_result(trial_id, result)
            action = self.scheduler.on_trial_result(None, trial, result)
            stop = (action == TrialScheduler.STOP or spent) and epoch < max_epochs
            if action == TrialScheduler.PAUSE and not stop and epoch < max_epochs:
                self._leave(state)  # it waits, holding no slot, until the scheduler promotes it
                continue
            # A table short of max_epochs for this configuration and every other ends the trial too.
            if not stop and epoch < max_epochs:
                curve = self._long_enough(state, epoch + 1)
            if not stop and epoch < max_epochs and epoch < len(curve.metrics):
                self.push(self.now + curve.seconds[epoch], "epoch", trial_id)
                continue
            if stop and trial_id not in self.cancelled:
                self.stopped[trial_id] = epoch
            self.search.on_trial_complete(trial_id, result=result)
            self.scheduler.on_trial_complete(None, trial, result)
            self._leave(state)
        return self._outcome()

    def _leave(self, state: dict[str, Any]) -> None:
        """The trial gives its slot back after the table's ``end_s``: it ended, or it waits paused."""
        state["end"] = self.now + self.table.end_s
        state["busy"] += state["end"] - state["seg"]
        self.push(state["end"], "free", None)

    def _long_enough(self, state: dict[str, Any], epochs: int) -> Curve:
        """The trial's curve, taken from the surrogate if its own is shorter than ``epochs`` and a longer one exists."""
        trial_id, curve = state["trial"].trial_id, self.curves[state["trial"].trial_id]
        if epochs > len(curve.metrics):
            longer = self.surrogate.curve(state["params"], min_epochs=epochs)[0]
            if len(longer.metrics) >= epochs:
                self.curves[trial_id], state["own"], curve = longer, False, longer
        return curve

    def _stop_the_paused(self) -> bool:
        """Nothing runs: stop the paused trials no promotion can reach, as Tune's controller does
        (the scheduler loses them, the searcher gets their last result). Whether it stopped any."""
        left = getattr(self.scheduler, "left_paused", None)
        trials = left(self.search.is_finished() or self.worker_epochs_left == 0) if left else []
        for trial in trials:
            self.stopped[trial.trial_id] = self.trials[trial.trial_id]["epochs"]
            self.scheduler.on_trial_remove(None, trial)
            self.search.on_trial_complete(trial.trial_id)
        return bool(trials)

    def _cancel_the_others(self, trial_id: str) -> None:
        """The budget is spent: every other running trial ends now, its epoch in flight lost; a paused one stays where it is."""
        paused = getattr(getattr(self.scheduler, "rungs", None), "paused", {})
        for other, s in self.trials.items():
            if other != trial_id and "end" not in s:
                self.cancelled.add(other)
                self._leave(s)
            elif other in paused:
                self.cancelled.add(other)

    def _result(self, trial_id: str, state: dict[str, Any], epoch: int, curve: Curve) -> dict[str, Any]:
        metrics = dict(curve.metrics[epoch - 1])
        state["epochs"] = epoch
        self.surrogate_results += not state["own"]
        value = metrics.get(self.spec.metric)
        if value is not None:
            state["values"].append(value)
            better = self.best is None or (value > self.best if self.spec.mode == "max" else value < self.best)
            self.best = value if better else self.best
            if self.near_best_at is None and self.goal is not None and _near(self.best, self.goal, self.spec.mode):
                self.near_best_at = self.now
        seconds = curve.seconds[epoch - 1]
        self.epoch_rows.append({C.TRIAL_ID: trial_id, C.EPOCH: epoch, C.TIMESTAMP: _at(self.now), C.EPOCH_SECONDS: seconds, **metrics})
        return {C.EPOCH: epoch, "training_iteration": epoch, "trial_id": trial_id, **metrics}

    def _outcome(self) -> Simulated:
        rows, busy = [], 0.0
        pick = max if self.spec.mode == "max" else min
        for trial_id, s in self.trials.items():
            end = s.get("end", self.now)
            busy += s["busy"] + (0.0 if "end" in s else end - s["seg"])
            values = s["values"]
            best = pick(values) if values else None
            status = C.STATUS_COMPLETED if s["epochs"] >= self.spec.budget.max_epochs else C.STATUS_STOPPED
            status = C.STATUS_CANCELLED if trial_id in self.cancelled else status
            rows.append(
                {
                    C.TRIAL_ID: trial_id,
                    "params": s["params"],
                    C.STATUS: status,
                    C.EPOCHS_COMPLETED: s["epochs"],
                    C.BEST_METRIC: best,
                    C.BEST_EPOCH: values.index(best) + 1 if values else None,
                    C.LAST_METRIC: values[-1] if values else None,
                    C.STARTED_AT: _at(s["start"]),
                    C.ENDED_AT: _at(end),
                    C.WALL_SECONDS: end - s["start"],
                }
            )
        wall = max((s.get("end", self.now) for s in self.trials.values()), default=0.0)
        return Simulated(
            self.workers,
            self.spec.seed,
            self.summary,
            rows,
            self.epoch_rows,
            wall,
            len(self.epoch_rows),
            busy,
            self.surrogate_results,
            self.best,
            self.near_best_at,
            self.stopped,
            self.spec.to_dict(),
        )


def _near(best: float, goal: float, mode: str) -> bool:
    return best >= goal - abs(goal) * NEAR_BEST if mode == "max" else best <= goal + abs(goal) * NEAR_BEST


def _at(seconds: float) -> datetime:
    """A simulated time as a timestamp: seconds after the Unix epoch, so a sweep starts at 1970-01-01."""
    return datetime.fromtimestamp(seconds, timezone.utc)
