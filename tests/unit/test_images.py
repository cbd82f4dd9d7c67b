"""The images task without Ray: folder validation, DataLoader decoding and augmentation, the models."""

import sys

import numpy as np
import pytest
import torch

from distsearch.spec.model import parse_job
from distsearch.tasks import TaskInputError, image_models, make_task
from distsearch.tasks.base import batches
from distsearch.train import loop
from distsearch.validate import check_job

from ..conftest import JOBS


def _folder(root, classes=("a", "b"), per_class=10, size=12, mode="L"):
    """Images of two kinds: class ``a`` dark with a bright left half, ``b`` the mirror image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size)).astype(np.uint8)
            pixels[:, : size // 2] += 150 if k == 0 else 0
            pixels[:, size // 2 :] += 150 if k == 1 else 0
            Image.fromarray(pixels).convert(mode).save(root / name / f"{i}.png")
    return root


def _job(root, space, tmp, **options):
    return parse_job(
        {
            "name": "i", "task": "images", "metric": "val_accuracy", "mode": "max", "space": space, "storage": str(tmp / "runs"),
            "task_options": {"path": str(root), "image_size": 12, "loader_workers": 0, **options},
        }
    )  # fmt: skip


def test_a_folder_with_one_class_or_an_empty_class_is_refused(tmp_path):
    one = _folder(tmp_path / "one", classes=("a",))
    with pytest.raises(TaskInputError, match=r"task_options.path: .* has 1 class folder\(s\) \(a\); fix: give a folder with one subfolder per class"):
        make_task("images", {"path": str(one)})
    (one / "b").mkdir()
    (one / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(TaskInputError, match=r"class folder\(s\) b of .* hold no image file; fix"):
        make_task("images", {"path": str(one)})


def test_links_to_parent_folders_list_no_image_twice_and_no_file_outside_the_root(tmp_path):
    """Issue 29, case 3: ``ln -s .. root/a/up`` turned 12 images into 492 and relabelled class b's as a;
    two such links allocated until killed."""
    import os

    root = _folder(tmp_path / "imgs", per_class=6)
    os.symlink("..", root / "a" / "up")
    os.symlink("../..", root / "b" / "up2")
    outside = _folder(tmp_path / "elsewhere", classes=("c",), per_class=3)
    os.symlink(outside / "c" / "0.png", root / "b" / "from_outside.png")
    os.symlink(root / "a" / "0.png", root / "b" / "alias.png")  # a file link inside the root is an image like any other
    task = make_task("images", {"path": str(root), "image_size": 12})
    labels = [task.class_names[i] for i in task.labels]
    assert labels.count("a") == 6 and labels.count("b") == 7 and len(task.blobs) == 13


def test_unreadable_images_are_counted_and_the_first_named(tmp_path):
    root = _folder(tmp_path / "imgs")
    for i in range(7):
        (root / "b" / f"broken{i}.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(TaskInputError) as e:
        make_task("images", {"path": str(root)})
    message = str(e.value)
    assert "7 of 27 files" in message and "broken0.png (UnidentifiedImageError" in message and "fix: remove or replace them" in message
    assert message.count("broken") == 5  # the first five, not all


def test_decoding_happens_in_dataloader_workers_with_the_trials_augmentation(tmp_path, monkeypatch):
    task = make_task("images", {"path": str(_folder(tmp_path / "imgs")), "image_size": 12, "loader_workers": 2})
    assert task.color == "grayscale" and task.class_names == ["a", "b"]
    splits = task.splits(0)
    assert splits.train[0].dtype == torch.long  # indices: the images stay encoded until a worker decodes them
    import os

    pids = []
    real = image_models.decode
    monkeypatch.setattr(image_models, "decode", lambda *a: pids.append(os.getpid()) or real(*a))
    plain = [x for x, _ in batches(task, splits.val, batch_size=4)]
    assert plain[0].shape[1:] == (1, 12, 12) and plain[0].dtype == torch.uint8
    assert all(torch.equal(a, b) for a, b in zip(plain, [x for x, _ in batches(task, splits.val, batch_size=4)], strict=True))
    flipped = [x for x, _ in batches(task, splits.val, torch.arange(len(splits.val[1])), 4, {"flip": True, "crop_padding": 2}, train=True)]
    assert any(not torch.equal(a, b) for a, b in zip(plain, flipped, strict=True))  # augmented
    assert pids == []  # nothing decoded in this process: the workers did it (forked, each with its own copy of the patch)
    task.options["loader_workers"] = 0
    next(batches(task, splits.val, batch_size=4))
    assert set(pids) == {os.getpid()}  # with no workers, this process decodes: the count above could see it


def test_models_resize_to_their_input_size_and_learn(tmp_path):
    spec = _job(
        _folder(tmp_path / "imgs", per_class=20),
        {"model": {"choice": {"cnn": {"depth": 1, "channels": 8, "width": 16}, "resnet18": {}}}, "input_size": 16},
        tmp_path,
    )
    task = check_job(spec)  # the dry run builds both families and runs a batch through each
    splits = task.splits(0)
    model = task.build_model({"model": "resnet18", "input_size": 24}, splits)
    assert model(torch.zeros(2, 1, 12, 12, dtype=torch.uint8)).shape == (2, 2)
    got = []
    loop.train(
        task,
        {"model": "cnn", "model.depth": 1, "model.channels": 8, "model.width": 16, "input_size": 16, "lr": 1e-2, "batch_size": 8},
        lambda m, s: got.append(m),
        max_epochs=4,
        seed=0,
        splits=splits,
    )
    assert got[-1]["val_accuracy"] == 1.0  # the halves tell the classes apart


def test_a_resnet18_weights_file_is_checked_and_loaded_with_imagenet_statistics(tmp_path):
    from torchvision.models import resnet18

    root = _folder(tmp_path / "imgs")
    good, bad = tmp_path / "resnet18.pth", tmp_path / "other.pth"
    torch.save(resnet18(num_classes=1000).state_dict(), good)
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    space = {"model": {"choice": {"resnet18": {"weights": {"choice": [str(good), str(bad)]}}}}}
    with pytest.raises(
        ValueError, match=r"space.model.choice.resnet18.weights: got '.*other.pth'; it is not a torchvision ResNet-18 state dict .*fix"
    ):
        check_job(_job(root, space, tmp_path), dry_run=False)
    task = check_job(_job(root, {"model": {"choice": {"resnet18": {"weights": str(good)}}}}, tmp_path))
    model = task.build_model({"model": "resnet18", "model.weights": str(good)}, task.splits(0))
    assert torch.equal(model.body.conv1.weight, torch.load(good)["conv1.weight"]) and model.mean.flatten().tolist() == pytest.approx(
        image_models.IMAGENET_MEAN
    )


def test_the_encoder_takes_paths_arrays_and_pil_images(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "imgs", mode="RGB")
    task = make_task("images", {"path": str(root), "image_size": 8})
    assert task.color == "rgb"
    path = next((root / "a").iterdir())
    x = task.input_encoder()([path, np.zeros((20, 30, 3), np.uint8), Image.open(path)])
    assert x.shape == (3, 3, 8, 8) and torch.equal(x[0], x[2])


def test_a_missing_extra_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(TaskInputError, match=r"fix: pip install 'distsearch\[images\]'"):
        make_task("images", {"path": str(tmp_path)})


def test_the_shipped_gpu_job_trains_on_nccl_with_whole_gpus():
    from distsearch.spec.model import load_job
    from distsearch.sweep.planning import worker_group_plan

    spec = load_job(JOBS / "images_gpu.yaml")
    plan = worker_group_plan(spec)
    assert (plan.backend, plan.use_gpu, plan.resources_per_worker["GPU"]) == ("nccl", True, 1) and spec.task == "images"


def test_a_folder_given_as_a_uri_reads_the_same(tmp_path):
    root = _folder(tmp_path / "imgs")
    local, uri = make_task("images", {"path": str(root)}), make_task("images", {"path": f"file://{root}"})
    assert local.class_names == uri.class_names and local.blobs == uri.blobs and (local.labels == uri.labels).all()
    with pytest.raises(TaskInputError, match=r"task_options.path: got '.*nowhere'; no such folder"):
        make_task("images", {"path": str(tmp_path / "nowhere")})
