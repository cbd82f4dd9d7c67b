"""The Train worker's local housekeeping, without Ray."""

import os
import subprocess
import sys

from distsearch.worker import CHECKPOINT_TMP_PREFIX, remove_orphaned_checkpoint_copies


def test_checkpoint_copies_of_dead_workers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited: its copy is an orphan
    orphan = tmp_path / f"{CHECKPOINT_TMP_PREFIX}{dead_pid}-abc123"
    live = tmp_path / f"{CHECKPOINT_TMP_PREFIX}{os.getpid()}-def456"
    other = tmp_path / f"{CHECKPOINT_TMP_PREFIX}notapid"  # not ours to judge
    for d in (orphan, live, other):
        d.mkdir()
        (d / "model.pt").write_bytes(b"x" * 1024)
    assert remove_orphaned_checkpoint_copies(str(tmp_path)) == [str(orphan)]
    assert not orphan.exists() and live.exists() and other.exists()
