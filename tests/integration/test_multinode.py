"""Two Ray nodes on one machine: trials' worker groups span both, results land in shared storage."""

import pytest
import ray

from distsearch import constants as C
from distsearch.runner import run_job
from distsearch.spec import parse_job

from ..conftest import tiny_job
from .conftest import assert_nothing_left, check_run_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield cluster
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
