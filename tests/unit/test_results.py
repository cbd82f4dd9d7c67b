"""Parquet writer: typed columns, schema version, atomic writes, readable by pandas/pyarrow/duckdb."""

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from distsearch import constants as C
from distsearch import storage
from distsearch.results import files as results


def _rows():
    return [
        {
            C.TRIAL_ID: "a_00000",
            "params": {"model": "mlp", "model.depth": 2, "lr": 0.01, "nesterov": True},
            C.STATUS: C.STATUS_COMPLETED,
            C.EPOCHS_COMPLETED: 3,
            C.BEST_METRIC: 0.9,
            C.BEST_EPOCH: 3,
            C.LAST_METRIC: 0.9,
            C.WALL_SECONDS: 10.0,
            C.STARTED_AT: datetime(2026, 1, 1, tzinfo=timezone.utc),
            C.ENDED_AT: datetime(2026, 1, 1, 0, 0, 10, tzinfo=timezone.utc),
            C.RELEASE_SECONDS: 0.1,
            C.ERROR: None,
        },
        {
            C.TRIAL_ID: "a_00001",
            "params": {"model": "cnn", "model.channels": 16, "lr": 0.1, "nesterov": False},
            C.STATUS: C.STATUS_ERROR,
            C.EPOCHS_COMPLETED: 0,
            C.BEST_METRIC: None,
            C.BEST_EPOCH: None,
            C.LAST_METRIC: None,
            C.WALL_SECONDS: None,
            C.STARTED_AT: None,
            C.ENDED_AT: None,
            C.RELEASE_SECONDS: None,
            C.ERROR: "boom",
        },
    ]


TYPES = {"model": str, "model.depth": int, "model.channels": int, "lr": float, "nesterov": bool}


def test_trials_round_trip_with_typed_columns(tmp_path):
    df = results.trials_frame(_rows(), TYPES)
    path = tmp_path / "run" / C.TRIALS_FILE
    results.write_frame(path, df)
    back = results.read_frame(path)
    assert list(back[C.TRIAL_ID]) == ["a_00000", "a_00001"]
    schema = pq.read_schema(path)
    assert str(schema.field("hp_model__depth").type) == "int64"
    assert str(schema.field("hp_lr").type) == "double"
    assert str(schema.field("hp_nesterov").type) == "bool"
    assert pa.types.is_string(schema.field("hp_model").type) or pa.types.is_large_string(schema.field("hp_model").type)
    assert back["hp_model__depth"].isna().tolist() == [False, True]  # conditional: absent for cnn
    assert back.loc[1, C.ERROR] == "boom" and back.loc[0, C.EPOCHS_COMPLETED] == 3
    assert schema.metadata[C.SCHEMA_VERSION_KEY] == C.SCHEMA_VERSION.encode()


def test_epochs_sorted_and_readable_by_duckdb(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    now = datetime.now(timezone.utc)
    rows = [{C.TRIAL_ID: t, C.EPOCH: e, C.TIMESTAMP: now, "val_accuracy": 0.1 * e, C.CHECKPOINT_PATH: None} for t in ("b", "a") for e in (2, 1)]
    results.write_frame(tmp_path / C.EPOCHS_FILE, results.epochs_frame(rows))
    got = duckdb.sql(f"SELECT trial_id, epoch, val_accuracy FROM '{tmp_path / C.EPOCHS_FILE}'").fetchall()
    assert [(t, e) for t, e, _ in got] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]


def test_write_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / C.TRIALS_FILE
    results.write_frame(target, results.trials_frame(_rows()[:1], TYPES))
    before = target.read_bytes()

    class RenameFails:  # a real local filesystem whose rename step fails, as on a full disk
        def __init__(self):
            self._fs = pafs.LocalFileSystem()

        def __getattr__(self, name):
            return getattr(self._fs, name)

        def move(self, src, dst):
            raise OSError("disk gone")

    real = storage.filesystem
    monkeypatch.setattr(storage, "filesystem", lambda p: (RenameFails(), real(p)[1]))
    with pytest.raises(OSError, match="disk gone"):
        results.write_frame(target, results.trials_frame(_rows(), TYPES))
    assert target.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [C.TRIALS_FILE]  # no temporary left behind


def test_uri_and_local_path_agree(tmp_path):
    storage.write_json(f"file://{tmp_path}/x/run.json", {"a": 1})
    assert storage.read_json(tmp_path / "x" / "run.json") == {"a": 1}
    assert storage.join("s3://bucket/pre/", "job", "run") == "s3://bucket/pre/job/run"
