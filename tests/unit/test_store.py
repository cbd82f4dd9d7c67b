"""A lone trial's own checkpoints (distsearch.train.store): Ray Train's retention, a record that
names only whole checkpoints, and nothing read from a record that leads out of its trial's folder."""

import json

import pytest

from distsearch import constants as C
from distsearch.train.store import Entry, TrialCheckpoints, read_record, retained


def _entries(ranks):
    return [Entry(f"checkpoint_{i + 1:06d}", i + 1, r) for i, r in enumerate(ranks)]


@pytest.mark.parametrize(
    "ranks, num_to_keep, kept_epochs",
    [
        ([1, 2, 3, 4], 2, [3, 4]),  # improving every epoch: the best two, the latest among them
        ([1, 2, 1.5, 1.5, 1], 2, [2, 4, 5]),  # the best, the later of the tied, and the latest
        ([1, 0.5, 0.5, 0.5], 1, [1, 4]),  # the best stays however far back, with the latest
        ([3], 2, [1]),
        ([], 2, []),
    ],
)
def test_retention_keeps_the_highest_ranked_the_later_of_ties_and_the_latest(ranks, num_to_keep, kept_epochs):
    assert [e.epoch for e in retained(_entries(ranks), num_to_keep)] == kept_epochs


def _files(epoch):
    return {C.CHECKPOINT_FILE: b"weights", C.CHECKPOINT_META_FILE: json.dumps({C.EPOCH: epoch}).encode(), C.CHECKPOINT_HISTORY_FILE: b"[]"}


def test_a_trial_writes_records_and_drops_checkpoints_as_ray_train_would(tmp_path):
    trial = str(tmp_path / "train" / "t1")
    assert read_record(trial) is None
    store = TrialCheckpoints(trial, num_to_keep=1)
    assert store.latest is None
    for epoch, rank in [(1, 1.0), (2, 2.0), (3, 1.5), (4, 1.5)]:
        path = store.write(epoch, rank, _files(epoch))
        assert path == f"{trial}/checkpoint_{epoch:06d}"
    on_disk = sorted(p.name for p in (tmp_path / "train" / "t1").iterdir())
    assert on_disk == ["checkpoint_000002", "checkpoint_000004", C.CHECKPOINT_RECORD_FILE]
    again = TrialCheckpoints(trial, num_to_keep=1)  # what a resumed trial finds
    assert [e.epoch for e in again.kept] == [2, 4] and again.latest.epoch == 4
    assert again.path(again.latest) == f"{trial}/checkpoint_000004"


def test_an_epoch_trained_again_after_a_resume_replaces_its_checkpoint(tmp_path):
    trial = str(tmp_path / "t")
    store = TrialCheckpoints(trial, num_to_keep=2)
    for epoch in (1, 2, 3):
        store.write(epoch, float(epoch), _files(epoch))
    resumed = TrialCheckpoints(trial, num_to_keep=2)
    resumed.kept = resumed.kept[:-1]  # the driver died before epoch 3's record: its files are on disk, unnamed
    resumed.write(3, 3.0, {**_files(3), C.CHECKPOINT_FILE: b"new"})
    assert [e.epoch for e in read_record(trial)] == [2, 3]
    assert (tmp_path / "t" / "checkpoint_000003" / C.CHECKPOINT_FILE).read_bytes() == b"new"


@pytest.mark.parametrize(
    "record, needle",
    [
        ('{"kept": [{"name": "../../elsewhere", "epoch": 1, "rank": 1}]}', "names something other than a checkpoint folder"),
        ('{"kept": [{"name": "/etc", "epoch": 1, "rank": 1}]}', "names something other than a checkpoint folder"),
        ('{"kept": [{"epoch": 1}]}', "is damaged (KeyError"),
        ('{"kept": ', "is damaged (JSONDecodeError"),
    ],
)
def test_a_record_that_is_damaged_or_leads_elsewhere_is_refused_with_the_fix(tmp_path, record, needle):
    (tmp_path / C.CHECKPOINT_RECORD_FILE).write_text(record)
    with pytest.raises(ValueError) as info:
        TrialCheckpoints(str(tmp_path), num_to_keep=2)
    assert needle in str(info.value) and "fix: delete it" in str(info.value) and C.CHECKPOINT_RECORD_FILE in str(info.value)


def test_a_record_larger_than_its_bound_is_not_read(tmp_path):
    (tmp_path / C.CHECKPOINT_RECORD_FILE).write_text(" " * (2 << 20))
    with pytest.raises(ValueError, match="is damaged"):
        read_record(str(tmp_path))
