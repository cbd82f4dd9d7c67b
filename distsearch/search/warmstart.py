"""Warm start: earlier runs' trials read back as points of this job's space, with their fidelity.

``search.warm_start`` names run directories or URIs. Each must hold a run of a job with the same
metric and mode (checked at validation, before Ray starts). A trial whose parameters do not fit
this space (a name it lacks, a value outside a range, an option it does not offer) is skipped and
counted; the rest seed the searcher with their per-epoch metric. Pure: no Ray, no Optuna.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import constants as C
from .. import storage
from ..space.names import param_name
from ..space.points import point_problems
from ..spec.model import JobSpec

log = logging.getLogger("distsearch")


@dataclass
class PriorTrial:
    """One earlier trial: its parameters (flat names), status and metric at each epoch."""

    point: dict[str, Any]
    status: str
    metric_by_epoch: dict[int, float]


@dataclass
class WarmStart:
    trials: list[PriorTrial] = field(default_factory=list)
    skipped: int = 0
    runs: list[str] = field(default_factory=list)


def problems(spec: JobSpec) -> list[str]:
    """Why an entry of ``search.warm_start`` cannot seed this job (one message per entry)."""
    out = []
    for i, run in enumerate(spec.search.warm_start):
        where = f"search.warm_start[{i}]"
        try:
            meta = storage.read_json(storage.join(run, C.RUN_FILE))
        except (OSError, ValueError) as e:
            out.append(f"{where}: got {run!r}, whose {C.RUN_FILE} cannot be read ({type(e).__name__}); fix: give the directory of a finished run")
            continue
        if not storage.exists(storage.join(run, C.TRIALS_FILE)):
            out.append(f"{where}: got {run!r}, which has no {C.TRIALS_FILE} (it never finished); fix: give a finished run, or resume it first")
            continue
        job = meta.get("job") or {}
        if (job.get("metric"), job.get("mode")) != (spec.metric, spec.mode):
            out.append(
                f"{where}: got {run!r}, a run for {job.get('metric')} ({job.get('mode')}); this job optimises {spec.metric} ({spec.mode}); "
                "fix: give runs of a job with the same metric and mode"
            )
            continue
        try:  # every row read as the sweep will read it: a bad one fails here, before Ray starts
            _trials_of(spec, run)
        except (OSError, ValueError, KeyError) as e:
            out.append(f"{where}: got {run!r}, whose results cannot seed the search: {e}; fix: give a run distsearch wrote, or drop it")
    return out


def _trials_of(spec: JobSpec, run: str) -> tuple[list[PriorTrial], int]:
    """The trials of ``run`` that fit ``spec.space``, and how many did not; raises ``ValueError``
    naming the first row whose epoch is not a whole number from 1 or whose metric is not a number."""
    trials, epochs = _frame(storage.join(run, C.TRIALS_FILE)), _frame(storage.join(run, C.EPOCHS_FILE))
    for frame, name, cols in ((trials, C.TRIALS_FILE, (C.TRIAL_ID, C.STATUS)), (epochs, C.EPOCHS_FILE, (C.TRIAL_ID, C.EPOCH))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} has no column {', '.join(missing)}")
    hp = [c for c in trials.columns if c.startswith(C.HP_PREFIX)]
    out, skipped = [], 0
    for _, row in trials.iterrows():
        point = {param_name(c): _plain(row[c]) for c in hp if not pd.isna(row[c])}
        mine = epochs[(epochs[C.TRIAL_ID] == row[C.TRIAL_ID])].dropna(subset=[spec.metric]) if spec.metric in epochs else epochs.iloc[0:0]
        if point_problems(spec.space, point) or row[C.STATUS] == C.STATUS_NOT_STARTED:
            skipped += 1
            continue
        by_epoch = {}
        for e, v in zip(mine[C.EPOCH], mine[spec.metric], strict=True):
            if not _whole(e) or not _number(v):
                raise ValueError(f"{C.EPOCHS_FILE}: trial {row[C.TRIAL_ID]} has a row with epoch {e!r} and {spec.metric} {v!r}")
            by_epoch[int(e)] = float(v)
        out.append(PriorTrial(point, row[C.STATUS], by_epoch))
    return out, skipped


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _whole(e: Any) -> bool:
    return _number(e) and e == int(e) and e >= 1


def load(spec: JobSpec) -> WarmStart:
    """The trials of ``search.warm_start``'s runs that fit ``spec.space``; the rest counted."""
    warm = WarmStart(runs=list(spec.search.warm_start))
    for run in spec.search.warm_start:
        trials, skipped = _trials_of(spec, run)
        warm.trials += trials
        warm.skipped += skipped
    log.info("warm start: %d trials from %d runs; %d skipped (parameters outside this space)", len(warm.trials), len(warm.runs), warm.skipped)
    return warm


def _frame(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    fs, p = storage.filesystem(path)
    return pq.read_table(p, filesystem=fs).to_pandas()


def _plain(v: Any) -> Any:
    """A numpy scalar from Parquet as the Python value the space compares against."""
    return v.item() if hasattr(v, "item") else v
