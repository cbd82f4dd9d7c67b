"""Cleanup: every finished trial's worker group released, SIGTERM handled, nothing left at the end.

Why there is a reaper. When ASHA stops a trial, Tune ends the trial actor; the Train controller
(in that actor by default, else an actor it owns) dies with it, and so do the workers, but the
worker group's placement group (PG) is scoped to the job and outlives them. Ray's own fix is a
detached ``PlacementGroupCleaner`` actor per run that watches the controller through the State
API, so it needs the dashboard; without it the cleaner never exits and the PG keeps its CPUs,
and the next trial waits on them forever (ray-project/ray#54305, #65443, #65881). distsearch therefore:

1. does not start Ray's cleaner (``_ray.train.lean_trainer_cls``), so nothing detached is left;
2. has rank 0 attach its own PG id (``ray.util.get_current_placement_group()``) to every report;
3. removes a finished trial's PG from the driver (``WorkerGroupReaper``) once the trial actor is
   gone, and records how long the release took. A trial actor that Tune reuses stays alive; it
   ends the old trial's run itself before its next trial, and the reaper waits for that. With
   kept worker groups it keeps the group for that next trial instead (distsearch._ray.warm):
   the PG is then the actor's, and the reaper removes it once the actor is gone;
4. bounds worker-group start: a per-attempt timeout and a finite attempt count, so a trial whose
   workers cannot be placed fails with a clear error instead of retrying forever;
5. sweeps any PG of this job still alive when the sweep ends, and records what it found;
6. on SIGTERM (``ray job stop``) and SIGINT (Ctrl-C), kills its trial actors and sweeps the
   job's PGs before it exits, leaving the run resumable (``released_on_stop``): GCS misses a PG
   that a dying controller registers late.

None of it needs the dashboard.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Optional

import ray
from ray import tune

from .. import constants as C
from .._ray import NotVouched
from .._ray import core as ray_core
from .._ray import tune as ray_tune

log = logging.getLogger("distsearch")

# Train worker actors in our job, by class name; used only to report leaks at the end.
TRAIN_ACTOR_CLASSES = ("RayTrainWorker", "TrainController", "PlacementGroupCleaner")
# Ray's job supervisor sends SIGTERM on `ray job stop` and SIGKILL a few seconds later
# (RAY_JOB_STOP_WAIT_TIME_S); Kubernetes waits longer. The cleanup must fit in the shorter.
STOP_CLEANUP_S = 2.0


def _pg(pg_hex: str):
    from ray.util.placement_group import PlacementGroup

    return PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_hex)))


def pg_state(pg_hex: str) -> str:
    try:
        return ray.util.placement_group_table(_pg(pg_hex)).get("state", "UNKNOWN")
    except Exception:  # noqa: BLE001 - an unknown PG is as good as removed
        return "REMOVED"


class WorkerGroupReaper(tune.Callback):
    """Removes each finished trial's worker-group PG from the driver; see the module docstring."""

    def __init__(
        self,
        release_timeout_s: float,
        actors_outlive_trials: bool = False,
        groups_outlive_trials: bool = False,
        paused: Optional[Callable[[str], bool]] = None,
    ):
        self.release_timeout_s = release_timeout_s
        # whether the scheduler paused a trial (SchedulerKind.pauses): its group goes as a stopped trial's does
        self.paused = paused
        self.actors_outlive_trials = actors_outlive_trials
        # kept worker groups: a trial's group may be kept by its actor for the actor's next trial
        self.groups_outlive_trials = groups_outlive_trials
        self._pgs: dict[str, set[str]] = {}
        self._actors: dict[str, Any] = {}
        # every trial actor this sweep started (a handle hashes and compares by its actor's id)
        # -> monotonic time its latest trial started
        self._actor_started: dict[Any, float] = {}
        self._threads: list[threading.Thread] = []
        self.release_seconds: dict[str, float] = {}
        self.unreleased: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        # Tune pickles callbacks into its experiment state; threads, locks and actor handles
        # belong to this driver process only.
        state = self.__dict__.copy()
        state.update(_threads=[], _lock=None, _actors={}, _actor_started={}, paused=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def on_trial_start(self, iteration, trials, trial, **info):
        actor = ray_tune.trial_actor(trial)
        self._actors[trial.trial_id] = actor
        if actor is not None:
            self._actor_started[actor] = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        pg = result.get(C.PLACEMENT_GROUP_ID)
        if pg:
            self._pgs.setdefault(trial.trial_id, set()).add(pg)

    def on_trial_save(self, iteration, trials, trial, **info):
        # A pause saves, then stops the trial's actor: its worker group holds resources the
        # paused trial no longer uses, and a promoted trial asks for a group of its own.
        if self.paused is not None and self.paused(trial.trial_id):
            self._start_reap(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._start_reap(trial.trial_id)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._start_reap(trial.trial_id)

    def _start_reap(self, trial_id: str) -> None:
        # popped: a trial resumed after a pause reports its new group's; its old one may be
        # another trial's by then (kept by the actor it ran in)
        pgs = sorted(self._pgs.pop(trial_id, ()))
        actor = self._actors.pop(trial_id, None)
        t = threading.Thread(target=self._reap, args=(trial_id, pgs, actor, time.monotonic()), daemon=True, name=f"reap-{trial_id}")
        self._threads.append(t)
        t.start()

    def _reap(self, trial_id: str, pgs: list[str], actor: Any, t0: float) -> None:
        deadline = t0 + self.release_timeout_s
        # Wait for the trial actor to be gone first: the Train controller runs in it (or is owned
        # by it) and could otherwise see its workers die with the PG and start a replacement group.
        # A reused actor lives on, but ends the trial's run itself before its next trial
        # (sweep.trial), and the run's PGs go with it. Or it keeps its group (_ray.warm): the
        # group is then the actor's for as long as the actor lives, so there is no deadline, and
        # this trial's part ends when the actor starts its next trial (which took the group, or
        # ended it) or dies (then the PG is removed here).
        while actor is not None and (time.monotonic() < deadline or self.groups_outlive_trials):
            if self.actors_outlive_trials and all(pg_state(pg) == "REMOVED" for pg in pgs):
                break
            started = self._actor_started.get(actor, 0.0)
            if self.groups_outlive_trials and started > t0:
                with self._lock:
                    self.release_seconds[trial_id] = started - t0
                return
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=1.0)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError):
                break
            except ray.exceptions.GetTimeoutError:
                pass
            time.sleep(0.2 if self.groups_outlive_trials else 0.05)
        deadline = max(deadline, time.monotonic())
        for pg in pgs:
            if pg_state(pg) != "REMOVED":
                try:
                    ray.util.remove_placement_group(_pg(pg))
                except Exception as e:  # noqa: BLE001
                    log.warning("could not remove placement group %s of trial %s: %s", pg, trial_id, e)
        while time.monotonic() < deadline + self.release_timeout_s:
            left = [pg for pg in pgs if pg_state(pg) != "REMOVED"]
            if not left:
                with self._lock:
                    self.release_seconds[trial_id] = time.monotonic() - t0
                return
            time.sleep(0.05)
        with self._lock:
            self.unreleased[trial_id] = left

    def live_trial_actors(self) -> list[Any]:
        """Handles of every trial actor this sweep has started, including dead ones (killing those
        is a no-op): a reused actor may still run the worker group of a trial that has ended."""
        return list(self._actor_started)

    def finish(self) -> None:
        for t in self._threads:
            t.join(timeout=3 * self.release_timeout_s)


def _job_id() -> str:
    return ray.get_runtime_context().get_job_id()


def sweep_job_pgs() -> list[str]:
    """Remove every placement group of this job that is still alive; return their ids."""
    job = _job_id()
    found = []
    for pg_hex, info in ray.util.placement_group_table().items():
        if pg_hex.endswith(job) and info.get("state") != "REMOVED":
            found.append(pg_hex)
            try:
                ray.util.remove_placement_group(_pg(pg_hex))
            except Exception as e:  # noqa: BLE001
                log.warning("could not remove leftover placement group %s: %s", pg_hex, e)
    return found


def live_train_actors() -> list[str]:
    """Class names of this job's Ray Train actors still alive."""
    return [c for c in ray_core.job_actors_alive(_job_id()).values() if c in TRAIN_ACTOR_CLASSES]


def release_everything(trial_actors: Iterable[Any] = (), deadline_s: float = STOP_CLEANUP_S) -> dict[str, Any]:
    """Kill ``trial_actors``, then remove every placement group of this job until none of them
    and no Train controller actor of the job is alive, and two sweeps in a row find nothing, or
    ``deadline_s`` passes. Workers may take longer to go; with their groups removed, Ray ends them.

    Why not leave it to Ray: when a job ends, GCS removes a group only if it already knows the
    group's creator is dead. A group that a Train controller registers while it is being
    killed (its worker group's start or restart racing the stop) arrives after the controller's
    death was processed and is never removed. Killing the controllers first (they run in, or die
    with, their trial actor) and sweeping until nothing comes back closes that window.
    Returns what it did, for the log line and for tests."""
    t0 = time.monotonic()
    killed = set()
    for actor in trial_actors:
        killed.add(ray_core.actor_id(actor))
        with contextlib.suppress(Exception):  # already dead is as good
            ray.kill(actor, no_restart=True)
    removed: list[str] = []
    clean_sweeps = 0
    job = _job_id()
    while True:
        found = sweep_job_pgs()
        removed += found
        try:
            alive = ray_core.job_actors_alive(job)
        except NotVouched:  # another Ray release: no census; the placement groups are still swept
            alive = {}
        # only a controller can register a new group (in its trial actor, or as its own actor); workers cannot
        creators = [aid for aid, cls in alive.items() if aid in killed or cls == "TrainController"]
        clean_sweeps = clean_sweeps + 1 if not found and not creators else 0
        if clean_sweeps >= 2 or time.monotonic() - t0 > deadline_s:
            train_alive = [cls for cls in alive.values() if cls in TRAIN_ACTOR_CLASSES]
            return {"placement_groups_removed": removed, "train_actors_alive": train_alive, "seconds": time.monotonic() - t0}
        time.sleep(0.1)


#: The exit status of a sweep stopped by SIGINT (Ctrl-C): 128 + 2, as shells report it.
INTERRUPTED_EXIT = 128 + signal.SIGINT
RESUME_HINT = "the run is unfinished: run the same command again to resume it"


@contextlib.contextmanager
def released_on_stop(reaper: WorkerGroupReaper):
    """While the sweep runs, SIGTERM (`ray job stop`, `kill`, a pod's deletion) and SIGINT
    (Ctrl-C) first release every trial, worker group and placement group of this job
    (``release_everything``), print what they did and that the same command resumes the run,
    and only then exit: SIGTERM as before (Ray's driver handler raises ``SystemExit``), SIGINT
    with ``INTERRUPTED_EXIT``. Nothing after the sweep runs (no test scoring, no report of a
    partial run as final), and the run stays unfinished. Tune's own SIGINT handler, which ends
    ``fit()`` normally as if the sweep were over, must be off (``TUNE_DISABLE_SIGINT_HANDLER``).
    Main thread only (Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stopped_by: list[int] = []
    # SIGTERM ignored on purpose stays ignored; None: a handler installed outside Python
    handled = [s for s, h in previous.items() if h != signal.SIG_IGN]

    def on_stop(signum, frame):
        name = signal.Signals(signum).name
        stopped_by.append(signum)
        # a second SIGTERM exits at once; a second Ctrl-C waits for the (bounded) cleanup
        signal.signal(signal.SIGTERM, previous[signal.SIGTERM] if previous[signal.SIGTERM] is not None else signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            done = release_everything(reaper.live_trial_actors())
            print(
                f"distsearch: {name}: stopped the sweep; removed {len(done['placement_groups_removed'])} placement groups in "
                f"{done['seconds']:.2f} s; Train actors still alive: {done['train_actors_alive'] or 'none'}; {RESUME_HINT}",
                file=sys.stderr,
                flush=True,
            )
        except Exception:  # noqa: BLE001 - exiting matters more than the cleanup report
            log.exception("cleanup on %s failed", name)
        if signum == signal.SIGINT:
            raise SystemExit(INTERRUPTED_EXIT)
        if callable(previous[signal.SIGTERM]):
            previous[signal.SIGTERM](signum, frame)
        raise SystemExit(128 + signum)

    for s in handled:
        signal.signal(s, on_stop)
    try:
        yield
    except SystemExit:
        if stopped_by:  # Ray's wait turns an exit raised inside it into SystemExit(1): restore the code
            raise SystemExit(INTERRUPTED_EXIT if stopped_by[0] == signal.SIGINT else 128 + stopped_by[0]) from None
        raise
    finally:
        for s in handled:
            if signal.getsignal(s) in (on_stop, signal.SIG_IGN):
                restore = previous[s]
                signal.signal(s, restore if restore is not None else signal.SIG_DFL)
