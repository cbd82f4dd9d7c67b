"""A trial's reports handed to Tune from the thread that trains beside it, until the training ends, stops or runs out of time.

Both ways a trial trains (a Ray Train run whose controller forwards reports, or the trial's own
thread in its actor) put their reports in a queue; the trial function's thread, the one Tune
watches, takes them out and calls ``tune.report``. So Tune's stop reaches the trial there, and
the trial's own deadline is checked there too.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Optional

from ray import tune

from .. import constants as C

# Put by a trial trained in this process once its training thread is done: nothing more comes.
END = object()


class TrialTimedOut(RuntimeError):
    """The trial ran longer than ``budget.trial_timeout_s``; its training was ended."""


def with_checkpoint_path(item: tuple[dict[str, Any], Any]) -> dict[str, Any]:
    """A lone trial's report (``train.lone``) once its checkpoint is stored, with that checkpoint's
    path; one without a checkpoint (``stored`` None: a resumed trial's repeated report) as it is."""
    metrics, stored = item
    if stored is None:
        return metrics
    return {**metrics, C.CHECKPOINT_PATH: stored.result()}  # raises the checkpoint's storage error, if any


def relay(
    reports: Any,
    runner: threading.Thread,
    end_run: Callable[[], None],
    join_s: Optional[float],
    timed_out_join_s: Optional[float],
    deadline: Optional[float],
    timeout_s: Optional[float],
    opened: Callable[[Any], dict[str, Any]],
) -> None:
    """Hand every report in ``reports`` to Tune (``opened`` turns an item into one) until the
    training ``runner`` is done and its reports are taken, or ``END`` comes. Tune ends a trial
    that it stopped (ASHA, a limit) by raising SystemExit in ``tune.report``: when it stops the
    actor, and when it reuses the actor for the next trial. Then, and when a report cannot be
    made, ``end_run`` ends the training and the runner gets ``join_s`` seconds to be gone; at the
    trial's deadline, ``timed_out_join_s``."""
    timed_out = False
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
            try:
                item = reports.get(timeout=0.25)
            except queue.Empty:  # ray.util.queue.Empty is a subclass
                if runner.is_alive():
                    continue
                try:  # the training has returned, so every put has landed: drain what is left
                    item = reports.get_nowait()
                except queue.Empty:
                    break
            if item is END:
                break
            tune.report(opened(item))
    except BaseException:  # Tune's stop, or a report that cannot be made (its checkpoint's storage failed)
        end_run()
        if join_s is not None:
            runner.join(timeout=join_s)
        raise
    if timed_out:
        end_run()
        if timed_out_join_s is not None:
            runner.join(timeout=timed_out_join_s)
        raise TrialTimedOut(
            f"timed out: the trial ran longer than budget.trial_timeout_s = {timeout_s:g} s, so its training "
            f"was ended; fix: raise budget.trial_timeout_s, or find what the trial waits on (a hung forward pass, data)"
        )
