"""jobs/kuberay/rayjob.yaml parses, and uses only fields KubeRay's ray.io/v1 RayJob documents."""

import shlex

import pytest
import ray
import yaml

from distsearch.spec.model import load_job
from distsearch.validate import check_job

from ..conftest import ROOT

MANIFEST = ROOT / "jobs" / "kuberay" / "rayjob.yaml"
# Field names from KubeRay's CRD API reference (ray.io/v1, v1.5-v1.7).
RAYJOB_SPEC = {
    "entrypoint",
    "runtimeEnvYAML",
    "jobId",
    "shutdownAfterJobFinishes",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "rayClusterSpec",
    "clusterSelector",
    "submissionMode",
    "submitterPodTemplate",
    "submitterConfig",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "entrypointResources",
    "suspend",
    "deletionStrategy",
    "managedBy",
    "backoffLimit",
    "metadata",
}
RAYCLUSTER_SPEC = {
    "rayVersion",
    "headGroupSpec",
    "workerGroupSpecs",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "authOptions",
    "headServiceAnnotations",
    "suspend",
    "managedBy",
    "gcsFaultToleranceOptions",
    "upgradeStrategy",
}
HEAD_GROUP = {"template", "rayStartParams", "serviceType", "headService", "enableIngress", "resources", "labels"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "numOfHosts",
    "scaleStrategy",
    "suspend",
    "idleTimeoutSeconds",
    "resources",
    "labels",
}


@pytest.fixture(scope="module")
def manifest():
    return yaml.safe_load(MANIFEST.read_text())


def test_is_a_rayjob_with_the_documented_fields(manifest):
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob" and manifest["metadata"]["name"]
    spec = manifest["spec"]
    assert {"entrypoint", "rayClusterSpec", "shutdownAfterJobFinishes"} <= set(spec)
    assert set(spec) <= RAYJOB_SPEC, set(spec) - RAYJOB_SPEC
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= RAYCLUSTER_SPEC and set(cluster["headGroupSpec"]) <= HEAD_GROUP
    assert all(set(g) <= WORKER_GROUP for g in cluster["workerGroupSpecs"])
    assert spec["shutdownAfterJobFinishes"] is True


def test_matches_this_ray_gpu_workers_and_token_auth(manifest):
    cluster = manifest["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token"
    images = [c["image"] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]] for c in g["template"]["spec"]["containers"]]
    assert all(f"ray:{ray.__version__}-py311" in i for i in images)
    assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP"  # the dashboard is not exposed outside the cluster
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpu = cluster["workerGroupSpecs"][0]
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1


def test_entrypoint_runs_a_shipped_gpu_job_on_shared_storage(manifest):
    argv = shlex.split(manifest["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "distsearch", "run"]
    job = load_job(ROOT / argv[4])
    check_job(job)
    assert job.scaling.use_gpu
    assert argv[argv.index("--storage") + 1].startswith("s3://")  # every node reads and writes the same place
    env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    assert env["working_dir"].endswith(".zip") and any(p.startswith("torch==") for p in env["pip"])
