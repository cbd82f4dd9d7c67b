"""cluster.yaml passes Ray's own cluster-launcher schema, as `ray up` fills and checks it."""

import copy

import pytest
import yaml

from ..conftest import ROOT

RAW = yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _validated(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(cfg))
    validate_config(cfg)
    return cfg


def test_cluster_yaml_passes_ray_schema_validation():
    cfg = _validated(RAW)
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] <= gpu["max_workers"]
    assert cfg["available_node_types"]["head"]["resources"] == {"CPU": 0}


def test_image_setup_token_and_dashboard():
    assert "2.60.0" in RAW["docker"]["image"] and "py311" in RAW["docker"]["image"]
    assert any("pip install" in c and "distsearch" in c for c in RAW["setup_commands"])
    assert any(dst.endswith(".ray/auth_token") for dst in RAW["file_mounts"])
    starts = RAW["head_start_ray_commands"] + RAW["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    head = next(c for c in RAW["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head


def test_the_validation_can_fail():
    from ray.autoscaler._private.util import validate_config  # noqa: F401

    broken = copy.deepcopy(RAW)
    del broken["available_node_types"]["gpu_worker"]["resources"]
    with pytest.raises(Exception, match="resources"):
        _validated(broken)
