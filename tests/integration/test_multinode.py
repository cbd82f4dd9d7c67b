"""Two Ray nodes on one machine: trials' worker groups span both, results land in shared storage."""

import pytest
import ray

from distsearch import constants as C
from distsearch.job import run_job
from distsearch.spec.model import parse_job

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_run_files, own_ray_tmpdir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    with own_ray_tmpdir():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            cluster.add_node(num_cpus=1)
            ray.init(address=cluster.address)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def test_one_trial_worker_group_spans_both_nodes(two_nodes, tmp_path):
    # 1 CPU per node and 2 one-CPU workers per trial: a trial can only run across both nodes
    spec = parse_job(tiny_job(tmp_path, budget={"num_trials": 3, "max_epochs": 2}, scaling={"num_workers": 2, "cpus_per_worker": 1}))
    result = run_job(spec)
    run = check_run_files(result.run_dir, spec, expect_stopped=False)
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2
    per_report = [set(ids.split(",")) for ids in run["epochs"][C.NODE_IDS]]
    assert set().union(*per_report) == nodes  # trial workers were placed on both nodes
    assert all(s == nodes for s in per_report)  # and each trial's worker group spans both
    assert result.status_counts[C.STATUS_ERROR] == 0
    assert run["run"]["max_concurrent_trials"] == 1
    assert run["best"] is not None  # the checkpoint written by rank 0 was readable by the driver
    assert_nothing_left()


def _node_of_a_trial_mid_training(root, head: str, up_to_epoch: int):
    """A non-head node on which some trial has checkpointed an epoch <= ``up_to_epoch``: that
    trial is still training there (FIFO, so not stopped), with epochs left to resume."""
    import json

    for meta in root.glob(f"runs/tiny/*/{C.TRAIN_DIR}/*/checkpoint_*/{C.CHECKPOINT_META_FILE}"):
        try:
            m = json.loads(meta.read_text())
        except (OSError, ValueError):  # still being written
            continue
        if m.get(C.EPOCH, up_to_epoch + 1) <= up_to_epoch:
            node = next((n for n in str(m.get(C.NODE_IDS, "")).split(",") if n and n != head), None)
            if node:
                return node
    return None


def test_lost_worker_node_trials_move_to_the_head_and_complete(two_nodes, tmp_path):
    """Last in this module: it removes the worker node. Like Ray's fault-tolerance release test,
    every trial must still reach its last epoch, resuming from a checkpoint after the loss."""
    import threading
    import time

    max_epochs = 10
    spec = parse_job(
        tiny_job(
            tmp_path,
            budget={"num_trials": 4, "max_epochs": max_epochs},
            asha={"enabled": False},
            scaling={"num_workers": 2, "cpus_per_worker": 0.5},
            harness={"max_worker_failures": 3},
            space={"model": {"choice": {"mlp": {"width": 32}}}, "lr": {"loguniform": [1.0e-3, 1.0e-2]}, "optimizer": "adam", "batch_size": 8},
        )
    )
    head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
    worker_node = next(n for n in two_nodes.worker_nodes)
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.setdefault("result", run_job(spec)), daemon=True)
    runner.start()
    deadline = time.monotonic() + 240
    lost_node_id = None
    while time.monotonic() < deadline:
        # a trial that has reported from the worker node and has 6+ epochs to go: the loss
        # must land mid-training, not before a trial's first epoch there or after its last
        lost_node_id = _node_of_a_trial_mid_training(tmp_path, head, up_to_epoch=max_epochs - 6)
        if lost_node_id:
            break
        time.sleep(0.1)
    assert lost_node_id, "no trial ever ran on the worker node"
    assert lost_node_id == worker_node.node_id
    two_nodes.remove_node(worker_node, allow_graceful=False)
    lost_at = time.time()
    runner.join(timeout=400)
    assert not runner.is_alive()
    run = check_run_files(outcome["result"].run_dir, spec, expect_stopped=False)
    trials, epochs = run["trials"], run["epochs"]
    assert (trials[C.STATUS] == C.STATUS_COMPLETED).all(), trials[[C.STATUS, C.ERROR]]
    assert (trials[C.EPOCHS_COMPLETED] == max_epochs).all()
    assert not epochs.duplicated([C.TRIAL_ID, C.EPOCH]).any()
    moved = []
    for tid, mine in epochs.groupby(C.TRIAL_ID):
        # split by where each epoch ran, not by arrival time: a report of the old worker group
        # can arrive just after the node is gone
        on_lost = mine[C.NODE_IDS].str.contains(lost_node_id)
        if not on_lost.any() or mine.loc[on_lost, C.EPOCH].max() == max_epochs:
            continue
        before = mine[on_lost]
        after = mine[mine[C.EPOCH] > before[C.EPOCH].max()]
        assert not after[C.NODE_IDS].str.contains(lost_node_id).any()  # rescheduled on the head
        assert after[C.EPOCH].min() == before[C.EPOCH].max() + 1  # from its last checkpoint: no epoch lost or redone
        moved.append((tid, int(before[C.EPOCH].max()), after[C.TIMESTAMP].min().timestamp() - lost_at))
    assert moved, "no trial was running on the lost node"
    for tid, epoch, recover_s in moved:
        print(f"trial {tid}: node lost after epoch {epoch}; epoch {epoch + 1} reported on the head {recover_s:.1f} s later")
    print(f"node loss: {len(trials)} trials completed, {len(epochs)} epoch rows checked")
    assert_nothing_left()
