"""TPE on resume: the study rebuilt from the searcher's saved JSON and the run's ledger, which outranks it.

A resumed sweep builds its searcher afresh (``SearcherKind.resume``); nothing of Tune's saved
state is read. TPE takes its own saved state (``TPESearch.save``'s JSON) when it can be read,
then makes it agree with the ledger: a trial the state holds as running but the ledger as ended
is told as it ended; one it holds as running that never started is forgotten; one the state
lacks (it was saved before the trial started, or is missing or damaged) is added from the
ledger's parameters and the reports the checkpoints hold.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from .. import constants as C
from ..space.points import searcher_names
from .kinds import Ledger, PriorMetrics
from .tpe import TPESearch, UnsafeSearcherState, read_state

log = logging.getLogger("distsearch")


def resume(tpe: TPESearch, ledger: Ledger, metrics: PriorMetrics, saved: Optional[bytes], where: str) -> list[tuple[str, dict[str, Any]]]:
    """Bring ``tpe`` (built afresh from the job) to where the run's earlier drivers left it;
    ``saved`` is its newest saved state (from ``where``), if any. Returns the unfinished
    trials as ``(trial id, config)``, in ledger order, for the sweep to run first."""
    state = None
    if saved is not None:
        try:
            state = read_state(saved, where)
        except UnsafeSearcherState as e:
            log.warning("%s; TPE learns the run's earlier trials from its ledger instead", e)
    unfinished = [t for t, r in ledger.items() if not r.get(C.ENDED_AT)]
    if state is not None:
        tpe.load(state, keep_live=unfinished)
    else:
        tpe.study = tpe._new_study(draws_before=len(ledger))
        tpe.points = tpe.points[len(ledger) :]  # the first trials took the first points
    for trial_id, record in ledger.items():
        if (tpe.records.get(trial_id) or {}).get("state") is not None:
            continue  # told already
        if trial_id not in tpe.live:
            tpe.relive(trial_id, searcher_names(tpe.space, record.get(C.PARAMS) or {}))
        if record.get(C.ENDED_AT):
            _tell(tpe, trial_id, record, metrics.get(trial_id, []))
    # A carried trial's config is its flat parameters, which every reader of a trial's config
    # takes as they are (``space.flatten`` leaves them so).
    return [(t, dict(ledger[t].get(C.PARAMS) or {})) for t in unfinished]


def _tell(tpe: TPESearch, trial_id: str, record: Mapping[str, Any], reports: list[tuple[int, float]]) -> None:
    last = record.get(C.LAST_REPORT) or {}
    for epoch, value in [*reports, *([(last[C.EPOCH], last[tpe.metric])] if tpe.metric in last else [])]:
        tpe.on_trial_result(trial_id, {C.EPOCH: epoch, tpe.metric: value})
    tpe.on_trial_complete(trial_id, error=bool(record.get(C.ERROR)))
