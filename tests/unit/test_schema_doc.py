"""docs/ documents every Parquet column the code writes and every task metric; a change must be announced."""

import re

from distsearch import constants as C
from distsearch.results import files as results

from ..conftest import ROOT

RESULTS = (ROOT / "docs" / "results.md").read_text()
TASKS = (ROOT / "docs" / "tasks.md").read_text()


def _documented(table_heading: str) -> set[str]:
    section = RESULTS.split(table_heading, 1)[1].split("\n\n", 2)[1]
    return set(re.findall(r"^\| `([^`]+)`", section, flags=re.M)) | set(re.findall(r"`, `([^`]+)`", section))


def test_trials_columns_are_documented():
    documented = _documented("`trials.parquet` columns:")
    assert set(results.TRIAL_COLUMNS) <= documented
    assert f"{C.HP_PREFIX}<name>" in documented


def test_epochs_columns_are_documented():
    documented = _documented("`epochs.parquet` columns:")
    written_by_the_loop = {C.EPOCH, "train_<metric>", "val_<metric>", "lr", C.EPOCH_SECONDS, C.BUSY_SECONDS}
    written_by_the_worker = {C.WORLD_SIZE, C.NODE_IDS, C.PLACEMENT_GROUP_ID, C.WORKER_PROCESS_STARTED_AT, C.CHECKPOINT_PATH}
    assert set(results.EPOCH_KEY_COLUMNS) | written_by_the_loop | written_by_the_worker <= documented


def test_schema_version_is_documented():
    assert f"(now `{C.SCHEMA_VERSION}`)" in RESULTS


def test_every_task_metric_is_documented():
    from distsearch.tasks import ClassificationHead, RegressionHead, SequenceHead

    tasks_table = TASKS.split("# Tasks", 1)[1].split("\n\n", 3)[2]
    for head in (ClassificationHead, RegressionHead, SequenceHead):
        for metric in head.metric_modes:
            assert f"`{metric}`" in tasks_table, metric
