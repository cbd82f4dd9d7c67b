"""A trial's torch backend (distsearch.train.backend), without a cluster: none for a lone worker."""

from ray.train.torch import TorchConfig

from distsearch.train.backend import LoneWorkerBackend, LoneWorkerTorchConfig, torch_config


class _Group:
    """What a backend touches of a worker group: its resources and ``execute``."""

    def __init__(self, gpus: float):
        self.gpus, self.calls = gpus, []

    def get_resources_per_worker(self):
        return {"CPU": 1, "GPU": self.gpus}

    def execute(self, fn, *args, **kwargs):
        self.calls.append(fn.__name__)
        return [fn(*args, **kwargs)]


def test_a_lone_worker_gets_no_process_group_and_a_group_gets_rays_own():
    lone, group = torch_config("gloo", 1), torch_config("nccl", 4)
    assert type(group) is TorchConfig and group.backend == "nccl"
    assert isinstance(lone, LoneWorkerTorchConfig) and lone.backend == "gloo"
    assert lone.backend_cls is LoneWorkerBackend and lone.train_func_context is group.train_func_context  # the device context stays
    backend, workers = LoneWorkerBackend(), _Group(gpus=0)
    backend.on_start(workers, lone)
    backend.on_training_start(workers, lone)
    backend.on_shutdown(workers, lone)
    assert workers.calls == []  # not one call to the workers: nothing to set up or tear down
    gpu_workers = _Group(gpus=1)
    backend.on_shutdown(gpu_workers, lone)
    assert gpu_workers.calls == ["_empty_cuda_cache"]
    assert LoneWorkerBackend.share_cuda_visible_devices
