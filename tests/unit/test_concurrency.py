"""Resource arithmetic: how many trials fit, and clear refusals when none can."""

import pytest

from distsearch.spec.model import SpecError, parse_job
from distsearch.sweep.planning import DEFAULT_SPARE_KEEP_ALIVE_S, InfeasibleJobError, SparePlan, per_trial_resources, plan_concurrency, resolve_spares

from ..conftest import tiny_job


def _spec(tmp_path, **kw):
    return parse_job(tiny_job(tmp_path, **kw))


def test_two_half_cpu_workers_pack_two_trials_on_two_cpus(tmp_path):
    assert plan_concurrency(_spec(tmp_path), [{"CPU": 2.0}]) == 2
    assert plan_concurrency(_spec(tmp_path, scaling={"cpus_per_worker": 1}), [{"CPU": 2.0}]) == 1
    assert plan_concurrency(_spec(tmp_path, scaling={"cpus_per_worker": 1}), [{"CPU": 4.0}, {"CPU": 4.0}]) == 4


def test_gpu_trials_are_limited_by_gpus(tmp_path):
    spec = _spec(tmp_path, scaling={"num_workers": 1, "use_gpu": True, "gpus_per_worker": 0.25, "cpus_per_worker": 1})
    assert per_trial_resources(spec) == {"CPU": 1, "GPU": 0.25}
    assert plan_concurrency(spec, [{"CPU": 16.0, "GPU": 1.0}]) == 4
    multi = _spec(tmp_path, scaling={"num_workers": 2, "use_gpu": True, "gpus_per_worker": 1, "cpus_per_worker": 2})
    assert plan_concurrency(multi, [{"CPU": 16.0, "GPU": 1.0}, {"CPU": 16.0, "GPU": 1.0}]) == 1


def test_infeasible_worker_names_the_field(tmp_path):
    spec = _spec(tmp_path, scaling={"num_workers": 1, "use_gpu": True, "gpus_per_worker": 4})
    with pytest.raises(InfeasibleJobError, match="scaling.gpus_per_worker.*largest node"):
        plan_concurrency(spec, [{"CPU": 2.0}])
    with pytest.raises(InfeasibleJobError, match="scaling.cpus_per_worker"):
        plan_concurrency(_spec(tmp_path, scaling={"cpus_per_worker": 8}), [{"CPU": 2.0}])
    with pytest.raises(InfeasibleJobError, match="scaling.num_workers"):
        plan_concurrency(_spec(tmp_path, scaling={"num_workers": 5, "cpus_per_worker": 1}), [{"CPU": 2.0}])


def test_explicit_concurrency_cannot_exceed_what_fits(tmp_path):
    assert plan_concurrency(_spec(tmp_path, max_concurrent_trials=1), [{"CPU": 2.0}]) == 1
    with pytest.raises(InfeasibleJobError, match="max_concurrent_trials: got 3"):
        plan_concurrency(_spec(tmp_path, max_concurrent_trials=3), [{"CPU": 2.0}])


def test_fractional_gpus_refused_for_multi_worker_trials(tmp_path):
    with pytest.raises(SpecError, match="NCCL cannot put two ranks on one device"):
        _spec(tmp_path, scaling={"num_workers": 2, "use_gpu": True, "gpus_per_worker": 0.5})


def test_backend_is_nccl_on_gpus_and_gloo_on_cpus(tmp_path):
    import ray.train
    from ray.train.torch import TorchConfig

    from distsearch.spec.model import load_job
    from distsearch.sweep.planning import worker_group_plan

    from ..conftest import JOBS

    cpu = worker_group_plan(_spec(tmp_path))
    assert (cpu.backend, cpu.use_gpu, cpu.resources_per_worker) == ("gloo", False, {"CPU": 0.5})
    gpu = worker_group_plan(load_job(JOBS / "gpu.yaml"))
    assert (gpu.backend, gpu.num_workers, gpu.use_gpu, gpu.resources_per_worker) == ("nccl", 2, True, {"CPU": 2, "GPU": 1})
    packed = worker_group_plan(load_job(JOBS / "gpu_packed.yaml"))
    assert (packed.backend, packed.num_workers, packed.resources_per_worker["GPU"]) == ("nccl", 1, 0.25)
    # Ray Train accepts exactly what the driver passes it
    for plan in (cpu, gpu, packed):
        assert TorchConfig(backend=plan.backend).backend == plan.backend
        sc = ray.train.ScalingConfig(num_workers=plan.num_workers, use_gpu=plan.use_gpu, resources_per_worker=plan.resources_per_worker)
        assert sc.num_workers == plan.num_workers and sc.use_gpu == plan.use_gpu


def test_shipped_gpu_jobs_pack_as_documented(tmp_path):
    from distsearch.spec.model import load_job

    from ..conftest import JOBS

    packed = load_job(JOBS / "gpu_packed.yaml")
    one_gpu_node = [{"CPU": 16.0, "GPU": 1.0}]
    assert plan_concurrency(packed, one_gpu_node) == 4  # four 0.25-GPU trials share the GPU
    whole = load_job(JOBS / "gpu.yaml")
    assert plan_concurrency(whole, [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]) == 1  # 2 ranks x 1 GPU
    with pytest.raises(InfeasibleJobError, match="scaling.gpus_per_worker.*largest node"):
        plan_concurrency(whole, [{"CPU": 2.0}])  # this CPU-only machine: refused before any trial


def test_first_trials_always_get_spares_and_later_trials_only_where_the_trials_leave_a_cpu_free(tmp_path):
    # with kept worker groups (the default), later trials start in the kept processes: no spares for them
    quick, d = _spec(tmp_path), DEFAULT_SPARE_KEEP_ALIVE_S  # 2 workers x 0.5 CPU per trial
    assert resolve_spares(quick, [{"CPU": 2.0}], 2) == SparePlan(d, 0.0)
    assert resolve_spares(quick, [{"CPU": 2.0}], 1) == SparePlan(d, 0.0)
    # without them, later trials get spares only where the trials leave a CPU free
    quick = _spec(tmp_path, harness={"trial_processes": "reused_actor"})
    assert resolve_spares(quick, [{"CPU": 2.0}], 2) == SparePlan(d, 0.0)  # the quickstart on 2 cores: two trials take both CPUs
    assert resolve_spares(quick, [{"CPU": 2.0}], 1) == SparePlan(d, d)
    assert resolve_spares(quick, [{"CPU": 1.0}, {"CPU": 0.5}], 1) == SparePlan(d, 0.0)  # half a CPU free is not a CPU
    assert resolve_spares(quick, [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}], 2) == SparePlan(d, d)
    off = resolve_spares(_spec(tmp_path, harness={"spare_worker_keep_alive_s": 0}), [{"CPU": 16.0}], 1)
    assert off == SparePlan(0.0, 0.0) and not off.hook
    assert resolve_spares(_spec(tmp_path, harness={"spare_worker_keep_alive_s": 30}), [{"CPU": 2.0}], 2) == SparePlan(30.0, 30.0)
    assert SparePlan(d, 0.0).hook  # the first trials' spares need every trial's workers to carry the hook


def test_a_gpu_job_on_a_machine_without_enough_gpus_is_refused_before_ray_starts_or_a_run_folder_exists(tmp_path, monkeypatch):
    """Embedded (no address): the local CUDA devices are counted before anything else happens."""
    import ray
    import torch

    from distsearch.errors import ResourcesMissing
    from distsearch.job import run_job
    from distsearch.spec.model import parse_job
    from distsearch.tasks import make_task

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = parse_job(tiny_job(tmp_path, scaling={"num_workers": 2, "use_gpu": True, "gpus_per_worker": 1, "cpus_per_worker": 0.5}))
    assert torch.cuda.device_count() < 2  # the premise: these machines have no two GPUs
    with pytest.raises(ResourcesMissing, match=r"scaling.use_gpu: one trial needs 2 GPU\(s\).*fix: set scaling.use_gpu: false"):
        run_job(spec, task=make_task("digits"))
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()
