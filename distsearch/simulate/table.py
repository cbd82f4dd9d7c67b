"""A recorded run as a table: each configuration's learning curve, its epoch seconds, and the harness's gaps.

A run's ``epochs.parquet`` holds every report with the time the driver received it, and
``trials.parquet`` each trial's start and end. Replayed, a trial takes, for epoch ``e``, the
seconds between its report ``e - 1`` (its start, for the first) and report ``e``: the first
epoch carries the trial's start cost. Between a trial's last report and the next trial's start
in the same slot lie the harness's ``end_s`` (a median) and the trial's own wait for its
slot (``Curve.wait_s``; ``gap_s``, their median, for a configuration the table lacks). A FIFO run
(``asha.enabled: false``) trains every configuration to ``max_epochs``: a complete table.

A table is stored as Parquet, one row per (configuration, epoch), with the job, the gaps and
where it came from as JSON in the file's metadata; nothing in it is code.
"""

from __future__ import annotations

import io
import json
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import constants as C
from .. import storage
from ..errors import UserError
from ..space.names import hp_column, param_types

#: The key of the table's JSON in its Parquet metadata.
TABLE_META_KEY = b"distsearch.table"
TABLE_FORMAT = "distsearch-table/1"
CONFIG = "config"  # a table row's configuration number
SECONDS = "seconds"  # a table row's seconds: from the previous report (or the trial's start) to this one
WAIT = "wait_s"  # a table row's configuration's wait from its slot's freeing to its start
#: A table larger than this is not one distsearch wrote.
MAX_TABLE_BYTES = 256 * 2**20


@dataclass
class Curve:
    """One configuration: its flat parameters, and per epoch (from 1) its metrics and seconds."""

    params: dict[str, Any]
    metrics: list[dict[str, float]]
    seconds: list[float]
    wait_s: Optional[float] = None  # from its slot's freeing (the sweep's start, in the first wave) to its start


@dataclass
class Table:
    """Curves of one job's space, with what the harness added between them."""

    job: dict[str, Any]
    curves: list[Curve]
    end_s: float  # a trial's last report to its end
    gap_s: float  # a trial's end to the next trial's start in its slot
    concurrency: int  # trials at once in the recorded run
    source: dict[str, Any] = field(default_factory=dict)  # the run, command and machine it came from

    @property
    def max_epochs(self) -> int:
        return int(self.job["budget"]["max_epochs"])


def from_run(run_dir: str) -> Table:
    """The table of a finished run (``run.json``, ``trials.parquet``, ``epochs.parquet``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from ..spec.model import JobSpec

    def frame(name: str):
        fs, path = storage.filesystem(storage.join(run_dir, name))
        return pq.read_table(path, filesystem=fs).to_pandas()

    meta = storage.read_json(storage.join(run_dir, C.RUN_FILE))
    if meta.get("space_json"):  # the space in the job's own order: Tune draws in that order (run.json's keys are sorted)
        meta["job"] = {**meta["job"], "space": json.loads(meta["space_json"])}
    spec = JobSpec.model_validate(meta["job"])
    trials, epochs = frame(C.TRIALS_FILE), frame(C.EPOCHS_FILE)
    names = list(param_types(spec.space))
    curves, ends, starts = [], [], []
    for _, t in trials.sort_values(C.STARTED_AT).iterrows():
        mine = epochs[epochs[C.TRIAL_ID] == t[C.TRIAL_ID]].sort_values(C.EPOCH)
        if mine.empty or pd.isna(t[C.STARTED_AT]):
            continue
        times = [t[C.STARTED_AT].timestamp()] + [ts.timestamp() for ts in mine[C.TIMESTAMP]]
        keep = [m for m in (spec.metric, C.VAL_LOSS) if m in mine]
        params = {n: _plain(t[hp_column(n)]) for n in names if hp_column(n) in t and not pd.isna(t[hp_column(n)])}
        curves.append(
            Curve(
                params,
                [{m: float(r[m]) for m in keep if not pd.isna(r[m])} for _, r in mine.iterrows()],
                [b - a for a, b in zip(times, times[1:], strict=False)],
            )
        )
        if not pd.isna(t[C.ENDED_AT]):
            ends.append(t[C.ENDED_AT].timestamp() - times[-1])
        starts.append((times[0], t[C.ENDED_AT].timestamp() if not pd.isna(t[C.ENDED_AT]) else times[-1]))
    concurrency = int(meta.get("max_concurrent_trials") or 1)
    end_s = _median(ends)
    waits = _waits(starts, concurrency)
    for curve, wait in zip(curves, waits, strict=True):
        curve.wait_s = wait
    waits = waits[concurrency:]
    return Table(meta["job"], curves, end_s, _median(waits), concurrency, {"run": str(run_dir), "run_id": meta.get("run_id")})


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _median(values: list[float]) -> float:
    return max(0.0, statistics.median(values)) if values else 0.0


def _waits(spans: list[tuple[float, float]], concurrency: int) -> list[float]:
    """Per trial (in start order), the seconds from its slot's freeing to its start: the sweep's
    first start for the first ``concurrency``, else the latest trial end before it."""
    first = spans[0][0] if spans else 0.0
    out = []
    for i, (start, _) in enumerate(spans):
        before = [end for _, end in spans[:i] if end <= start]
        out.append(max(0.0, start - first if i < concurrency or not before else start - max(before)))
    return out


def save(table: Table, path: str) -> None:
    """Write ``table`` as Parquet (one row per configuration and epoch, its JSON in the metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i, c in enumerate(table.curves):
        for e, (m, s) in enumerate(zip(c.metrics, c.seconds, strict=True), start=1):
            rows.append({CONFIG: i, C.EPOCH: e, SECONDS: s, WAIT: c.wait_s, **m, **{hp_column(k): v for k, v in c.params.items()}})
    arrow = pa.Table.from_pylist(rows)
    info = {
        "format": TABLE_FORMAT,
        "job": table.job,
        "end_s": table.end_s,
        "gap_s": table.gap_s,
        "concurrency": table.concurrency,
        "source": table.source,
    }
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), TABLE_META_KEY: json.dumps(info).encode()})
    buf = io.BytesIO()
    pq.write_table(arrow, buf, compression="zstd")
    storage.write_bytes(path, buf.getvalue())


class NotATable(UserError, ValueError):
    """A file that is not a table ``save`` wrote."""


def load(path: str) -> Table:
    """The table ``save`` wrote at ``path``; ``NotATable`` names the file otherwise."""
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(io.BytesIO(storage.read_bytes(path, MAX_TABLE_BYTES)))
        info = json.loads((arrow.schema.metadata or {})[TABLE_META_KEY])
        if info.get("format") != TABLE_FORMAT:
            raise ValueError(f"format {info.get('format')!r}, not {TABLE_FORMAT}")
    except (OSError, ValueError, KeyError) as e:
        raise NotATable(
            f"{path} is not a distsearch table ({type(e).__name__}: {str(e)[:200]}); fix: give a table `distsearch simulate` reads, or a run folder"
        ) from e
    rows = arrow.to_pylist()
    metrics = [k for k in arrow.column_names if k not in (CONFIG, C.EPOCH, SECONDS, WAIT) and not k.startswith(C.HP_PREFIX)]
    by_config: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(r[CONFIG], []).append(r)
    names = {hp_column(n): n for n in param_types(_space(info["job"]))}
    curves = []
    for _, rs in sorted(by_config.items()):
        rs.sort(key=lambda r: r[C.EPOCH])
        params = {names[k]: v for k, v in rs[0].items() if k in names and v is not None}
        curves.append(Curve(params, [{m: r[m] for m in metrics if r.get(m) is not None} for r in rs], [r[SECONDS] for r in rs], rs[0].get(WAIT)))
    return Table(info["job"], curves, info["end_s"], info["gap_s"], info["concurrency"], info.get("source", {}))


def _space(job: dict[str, Any]):
    from ..spec.model import JobSpec

    return JobSpec.model_validate(job).space


def read(table_or_run: str) -> Table:
    """A table file, or the table of a run folder."""
    if storage.exists(storage.join(table_or_run, C.RUN_FILE)):
        return from_run(table_or_run)
    return load(table_or_run)


def describe(table: Table) -> str:
    """One line: configurations, epochs, how many reach max_epochs, and the gaps."""
    full = sum(len(c.metrics) >= table.max_epochs for c in table.curves)
    epochs = sum(len(c.metrics) for c in table.curves)
    return f"{len(table.curves)} configurations ({full} to max_epochs {table.max_epochs}), {epochs} epochs, end {table.end_s:.2f} s, slot gap {table.gap_s:.2f} s"
