"""A run's files: ``trials.parquet``, ``epochs.parquet``, ``run.json``, ``best.json``.

Written atomically through ``storage`` (local paths or URIs). No Ray import: a run can be read
anywhere pandas and pyarrow are installed.
"""

from __future__ import annotations

import io
from typing import Any, Iterable, Mapping, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import constants as C
from ..errors import RunFileMissing
from ..search.objective import Objective
from ..space.names import hp_column
from ..storage import PathLike, absolute, exists, filesystem, is_uri, join, read_bytes, read_json, write_bytes

_PANDAS_DTYPE = {bool: "boolean", int: "Int64", float: "float64", str: "string"}


def write_frame(path: PathLike, df: pd.DataFrame) -> None:
    """Write ``df`` as Parquet, atomically, with ``schema_version`` in the file metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[C.SCHEMA_VERSION_KEY] = C.SCHEMA_VERSION.encode()
    table = table.replace_schema_metadata(meta)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(path, buf.getvalue())


def read_frame(path: PathLike) -> pd.DataFrame:
    fs, p = filesystem(path)
    return pq.read_table(p, filesystem=fs).to_pandas()


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------
TRIAL_COLUMNS = {  # column -> pandas dtype; hp_* columns sit between trial_id and status
    C.TRIAL_ID: "string",
    C.STATUS: "string",
    C.EPOCHS_COMPLETED: "Int64",
    C.BEST_METRIC: "float64",
    C.BEST_EPOCH: "Int64",
    C.LAST_METRIC: "float64",
    C.STARTED_AT: "datetime64[us, UTC]",
    C.ENDED_AT: "datetime64[us, UTC]",
    C.WALL_SECONDS: "float64",
    C.RELEASE_SECONDS: "float64",
    C.ERROR: "string",
}
EPOCH_KEY_COLUMNS = {C.TRIAL_ID: "string", C.EPOCH: "Int64", C.TIMESTAMP: "datetime64[us, UTC]"}
_EPOCH_TEXT_COLUMNS = (C.PLACEMENT_GROUP_ID, C.NODE_IDS, C.CHECKPOINT_PATH)


def trials_frame(rows: Iterable[Mapping[str, Any]], param_types: Mapping[str, type]) -> pd.DataFrame:
    """One row per trial; one typed ``hp_*`` column per hyperparameter (null where a
    conditional parameter does not apply to the trial's option)."""
    rows = list(rows)
    data: dict[str, Any] = {C.TRIAL_ID: pd.array([r[C.TRIAL_ID] for r in rows], dtype="string")}
    for name, typ in param_types.items():
        data[hp_column(name)] = pd.array([r["params"].get(name) for r in rows], dtype=_PANDAS_DTYPE[typ])
    for col, dtype in TRIAL_COLUMNS.items():
        if col != C.TRIAL_ID:
            data[col] = pd.array([r.get(col) for r in rows], dtype=dtype)
    return pd.DataFrame(data)


def epochs_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (trial, epoch): every metric the loop reported, plus the driver's timestamp."""
    df = pd.DataFrame(list(rows))
    for col, dtype in EPOCH_KEY_COLUMNS.items():
        if col not in df:
            df[col] = pd.Series(dtype=dtype)
    df = df.astype({k: v for k, v in EPOCH_KEY_COLUMNS.items()})
    for col in _EPOCH_TEXT_COLUMNS:
        if col in df:
            df[col] = df[col].astype("string")
    rest = sorted(c for c in df.columns if c not in EPOCH_KEY_COLUMNS)
    return df[list(EPOCH_KEY_COLUMNS) + rest].sort_values([C.TRIAL_ID, C.EPOCH], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# A run on storage
# ---------------------------------------------------------------------------------------------
def run_dir(storage: str, job_name: str, run_id: str) -> str:
    return join(absolute(storage), job_name, run_id)


def run_ids(storage: str, job_name: str) -> list[str]:
    """Ids of the runs of ``job_name`` under ``storage`` (folders holding a ``run.json``), oldest first
    (the default ids start with their UTC start time)."""
    import pyarrow.fs as pafs

    fs, base = filesystem(join(absolute(storage), job_name))
    found = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return sorted(
        i.base_name for i in found if i.type == pafs.FileType.Directory and fs.get_file_info(f"{i.path}/{C.RUN_FILE}").type == pafs.FileType.File
    )


def write_tables(directory: PathLike, trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    write_frame(join(directory, C.TRIALS_FILE), trials)
    write_frame(join(directory, C.EPOCHS_FILE), epochs)


def load_state(checkpoint_path: str) -> dict[str, Any]:
    """The state dict a Train checkpoint directory holds (``model.pt``), from any filesystem:
    tensors and plain values only (``train.checkpoint``)."""
    from ..train.checkpoint import read_state

    path = join(checkpoint_path, C.CHECKPOINT_FILE)
    return read_state(read_bytes(path), path)


def best_checkpoints(epochs: pd.DataFrame, trial_id: str, objective: Objective, count: int) -> list[pd.Series]:
    """Up to ``count`` epoch rows of ``trial_id`` whose checkpoint still exists, best metric first."""
    rows = epochs[(epochs[C.TRIAL_ID] == trial_id) & epochs[C.CHECKPOINT_PATH].notna()] if C.CHECKPOINT_PATH in epochs else epochs.iloc[0:0]
    found = []
    for _, row in objective.rank(rows, objective.metric, loss="val_loss", epoch=C.EPOCH).iterrows():
        if len(found) == count:
            break
        if exists(join(row[C.CHECKPOINT_PATH], C.CHECKPOINT_FILE)):
            found.append(row)
    return found


def best_checkpoint(epochs: pd.DataFrame, trial_id: str, objective: Objective) -> Optional[pd.Series]:
    """The epoch row of ``trial_id`` with the best metric whose checkpoint still exists."""
    found = best_checkpoints(epochs, trial_id, objective, 1)
    return found[0] if found else None


def read_run(directory: PathLike) -> dict[str, Any]:
    """A run's files as ``{"trials": DataFrame, "epochs": DataFrame, "run": dict, "best": dict|None, "ensemble": dict|None}``."""
    directory = str(directory) if is_uri(directory) else absolute(directory)
    best_path, ensemble_path = join(directory, C.BEST_FILE), join(directory, C.ENSEMBLE_FILE)
    if not exists(join(directory, C.RUN_FILE)):
        raise RunFileMissing(f"{directory} is not a run folder (it has no {C.RUN_FILE}); fix: give a run directory, e.g. runs/<job name>/<run id>")
    return {
        "trials": read_frame(join(directory, C.TRIALS_FILE)),
        "epochs": read_frame(join(directory, C.EPOCHS_FILE)),
        "run": read_json(join(directory, C.RUN_FILE)),
        "best": read_json(best_path) if exists(best_path) else None,
        "ensemble": read_json(ensemble_path) if exists(ensemble_path) else None,
    }
