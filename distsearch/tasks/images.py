"""``images``: image classification over a folder in torchvision's ImageFolder layout, ``root/<class>/<file>``.

Needs the ``images`` extra (``pip install 'distsearch[images]'``). Options:

- ``path`` (required): the root folder, local (relative to the current directory) or a URI
  pyarrow opens (``s3://``, ``gs://``, ``file://``). Each subfolder is a class, named by the
  folder, in sorted order as ImageFolder numbers them; files with ImageFolder's image extensions
  (in any subfolder below a class) are its images, and other files are ignored.
- ``image_size``: the side, in pixels, that every image is decoded and resized to (default 32);
  trials resize further to their ``input_size`` inside the model.
- ``color``: ``rgb``, ``grayscale`` or ``auto`` (default: grayscale when every image is, else rgb).
- ``val_fraction``, ``test_fraction``: fractions of all images (default 0.15 each), stratified
  and fixed by the seed.
- ``loader_workers``: DataLoader worker processes per Train worker that decode and augment
  images (default 1; 0 decodes in the training process itself).

The driver reads every file once, checks that it opens as an image (an unreadable file fails
validation, counted and named), and ships the encoded bytes to the Train workers through Ray's
object store with the task, so no node needs the folder; decoding happens in the DataLoader
workers, every epoch. The folder's encoded size must therefore fit in the object store.

Model families: ``cnn`` (the project's, ``depth``, ``channels``, ``width``...) and ``resnet18``
(torchvision's, from scratch or, with ``model.weights: <file>``, from a ResNet-18 state dict on
disk; its head is always new). Trials also tune ``input_size``, ``crop_padding`` (a random crop
of the image padded by that many pixels; 0: none) and ``flip`` (random horizontal flips).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from .. import models, storage
from ..space import domains
from ..space.params import Param
from .base import (
    ClassificationHead,
    Splits,
    TaskInputError,
    check_fractions,
    check_options,
    check_whole_numbers,
    family_values,
    locate,
    require_extra,
)
from .splitting import split_indices, stratify_problem

log = logging.getLogger("distsearch")

DEFAULTS = {"image_size": 32, "color": "auto", "val_fraction": 0.15, "test_fraction": 0.15, "loader_workers": 1}
REQUIRED = ("path",)
FAMILIES = ("cnn", "resnet18")
STATS_SAMPLE = 512  # training images decoded to estimate the channel means and deviations
SHOWN = 5  # unreadable files named in the error


def scan(root: str) -> tuple[list[str], list[tuple[str, int]]]:
    """The class names and ``(file path, class index)`` of every image under ``root``, sorted."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    fs, inner = locate(root, "folder")
    base = inner.rstrip("/") + "/"
    entries = _local_entries(inner) if isinstance(fs, _local_fs()) else _entries(fs, inner)
    classes = sorted({p[len(base) :] for p, is_dir in entries if is_dir and "/" not in p[len(base) :]})
    index = {c: i for i, c in enumerate(classes)}
    files = sorted(
        (p, index[p[len(base) :].split("/", 1)[0]])
        for p, is_dir in entries
        if not is_dir and "/" in p[len(base) :] and p.lower().endswith(IMG_EXTENSIONS) and p[len(base) :].split("/", 1)[0] in index
    )
    return classes, files


def _local_fs():
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem


def _entries(fs, inner: str) -> list[tuple[str, bool]]:
    import pyarrow.fs as pafs

    return [(e.path, e.type == pafs.FileType.Directory) for e in fs.get_file_info(pafs.FileSelector(inner, recursive=True))]


def _local_entries(inner: str) -> list[tuple[str, bool]]:
    """``(path, is a directory)`` under a local folder, as ``inner``'s own paths. A link to a
    directory is not followed, a link to a file only when the file is inside the folder, and no
    directory is visited twice: pyarrow's recursive listing follows a link to ``..`` round and
    round, listing the tree again under every class."""
    import os

    top = os.path.realpath(inner)
    seen: set[tuple[int, int]] = set()
    out: list[tuple[str, bool]] = []
    stack = [(inner.rstrip("/"), top)]
    while stack:
        shown, real = stack.pop()
        st = os.stat(real)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(real) as it:
            for entry in it:
                path = f"{shown}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    out.append((path, True))
                    stack.append((path, entry.path))
                elif entry.is_file():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([top, target]) == top:  # a link out of the folder is not read
                        out.append((path, False))
    return out


def read_images(root: str, files: list[tuple[str, int]]) -> tuple[list[bytes], set[str], list[str]]:
    """Each file's bytes, the PIL modes seen, and a problem line per file that does not open as an image."""
    from PIL import Image

    fs, _ = storage.filesystem(root)
    blobs, modes, bad = [], set(), []
    for path, _ in files:
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
            with Image.open(io.BytesIO(data)) as image:
                modes.add(image.mode)
                image.verify()  # the file's structure and checksums, without decoding every pixel
        except Exception as e:  # noqa: BLE001 - any failure means the file is not an image we can use
            bad.append(f"{path} ({type(e).__name__}: {e})")
            continue
        blobs.append(data)
    return blobs, modes, bad


class ImagesTask(ClassificationHead):
    name = "images"
    families = FAMILIES
    hyperparameters = models.param_names(FAMILIES) | {"input_size", "crop_padding", "flip"}
    mixed_precision = True
    from_saved = False  # built by from_recipe: the saved weights replace any pretrained ones

    def __init__(self, options: Mapping[str, Any], classes: list[str], blobs: list[bytes], labels: np.ndarray, color: str):
        self.options, self.class_names, self.blobs, self.labels, self.color = dict(options), classes, blobs, labels, color
        self.num_classes, self.channels, self.image_size = len(classes), 3 if color == "rgb" else 1, int(options["image_size"])
        self.param_domains = {
            "input_size": domains.Number(True, 8, 1024),
            "crop_padding": domains.Number(True, 0, self.image_size // 2),
            "flip": domains.Options((True, False)),
        }
        self.mean, self.std = (0.5,) * self.channels, (0.25,) * self.channels
        self.weights_files: dict[str, str] = {}
        self._splits: dict[int, tuple[Splits, tuple, tuple]] = {}  # seed -> splits, channel means, deviations

    def __getstate__(self):
        # Workers get the splits through the object store beside the task, and never the test rows'.
        return {**self.__dict__, "_splits": {}}

    def use_space(self, space: Mapping[str, Param]) -> None:
        """Check each ResNet-18 weights file the space names before any trial."""
        from .image_models import SCRATCH, resnet18_state

        files = [str(w) for w in family_values(space, "resnet18", "weights") if w != SCRATCH]
        problems = []
        for w in files:
            try:
                resnet18_state(w)
                self.weights_files[w] = str(Path(w).expanduser().resolve())  # Train workers do not run in the driver's directory
            except Exception as e:  # noqa: BLE001 - a missing file, a pickle, another model: the reason is the message
                problems.append(
                    f"space.model.choice.resnet18.weights: got {w!r}; {e}; fix: give a torchvision ResNet-18 state dict file, or {SCRATCH}"
                )
        if problems:
            raise TaskInputError(problems)

    def splits(self, seed: int) -> Splits:
        """Row indices per split; sets ``mean`` and ``std`` to the training split's, once per seed
        (the dry run and the sweep both split)."""
        from .image_models import decode

        if seed not in self._splits:
            parts = split_indices(len(self.labels), seed, self.options["val_fraction"], self.options["test_fraction"], stratify=self.labels)
            sample = parts[0][:STATS_SAMPLE]
            pixels = torch.stack([decode(self.blobs[i], self.color, self.image_size) for i in sample]).float() / 255.0
            mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())  # the training split's, as the tabular task's standardisation
            std = tuple(max(s, 1e-3) for s in pixels.std(dim=(0, 2, 3)).tolist())
            x, y = torch.arange(len(self.labels)), torch.tensor(self.labels, dtype=torch.long)
            self._splits[seed] = (Splits(*((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)), mean, std)
        splits, self.mean, self.std = self._splits[seed]
        return splits

    def batches(self, data, order, batch_size: int, params: Mapping[str, Any], train: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decoded (and for training, augmented) images of ``data``'s rows in ``order``, from a
        DataLoader whose workers decode them."""
        from .image_models import Decoded

        index, y = data
        augment = {"crop_padding": int(params.get("crop_padding", 0)), "flip": bool(params.get("flip", False))} if train else {}
        rows = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        workers = int(self.options["loader_workers"])
        loader = torch.utils.data.DataLoader(
            Decoded(self.blobs, self.color, self.image_size, **augment), batch_sampler=[index[r].tolist() for r in rows], num_workers=workers
        )
        for images, r in zip(loader, rows, strict=True):
            yield images, y[r]

    def input_encoder(self) -> "ImageEncoder":
        return ImageEncoder(self.color, self.image_size)

    def model_recipe(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "color": self.color,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> "ImagesTask":
        """What builds its models and decodes images, without the folder; no pretrained weights
        are read (the saved weights replace them)."""
        task = cls.__new__(cls)
        task.class_names, task.color, task.image_size = [str(c) for c in recipe["class_names"]], str(recipe["color"]), int(recipe["image_size"])
        task.num_classes, task.channels = len(task.class_names), 3 if task.color == "rgb" else 1
        task.mean, task.std = tuple(float(v) for v in recipe["mean"]), tuple(float(v) for v in recipe["std"])
        task.weights_files, task.from_saved = {}, True
        return task

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module:
        from . import image_models

        family = params.get(models.FAMILY_PARAM, "cnn")
        weights = models.family_param(params, "weights", None)
        return image_models.build(
            family, dict(params), num_classes=self.num_classes, channels=self.channels, image_size=self.image_size,
            mean=self.mean, std=self.std, weights=None if self.from_saved else self.weights_files.get(str(weights), weights),
        )  # fmt: skip


class ImageEncoder:
    """Images (file paths, encoded bytes, PIL images or arrays) as the models take them."""

    def __init__(self, color: str, size: int):
        self.color, self.size = color, size

    def __call__(self, images) -> torch.Tensor:
        from .image_models import decode

        return torch.stack([decode(item, self.color, self.size) for item in images])


def make(options: Mapping[str, Any]) -> ImagesTask:
    """An images task for ``options``; reads the folder and raises ``TaskInputError`` on bad input."""
    require_extra("images", "torchvision", "PIL")
    from .vision_import import ensure_importable

    ensure_importable()
    opts, problems = check_options("images", options, DEFAULTS, REQUIRED)
    problems += [] if problems else check_fractions(opts)
    problems += check_whole_numbers(opts, (("image_size", 8, 1024), ("loader_workers", 0, 64)))
    if opts.get("color") not in ("auto", "rgb", "grayscale"):
        problems.append(f"task_options.color: got {opts.get('color')!r}; fix: use auto, rgb or grayscale")
    if problems:
        raise TaskInputError(problems)
    root = str(opts["path"])
    classes, files = scan(root)
    per_class = np.bincount([c for _, c in files], minlength=len(classes))
    if len(classes) < 2:
        raise TaskInputError(
            [
                f"task_options.path: {root} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); fix: give a folder with one subfolder per class, at least two"
            ]
        )
    empty = [c for c, n in zip(classes, per_class, strict=True) if n == 0]
    if empty:
        raise TaskInputError(
            [f"task_options.path: class folder(s) {', '.join(empty)} of {root} hold no image file; fix: add images or remove the folder(s)"]
        )
    blobs, modes, bad = read_images(root, files)
    if bad:
        raise TaskInputError(
            [
                f"task_options.path: {len(bad)} of {len(files)} files under {root} cannot be read as images; the first: {'; '.join(bad[:SHOWN])}; fix: remove or replace them"
            ]
        )
    color = opts["color"] if opts["color"] != "auto" else ("grayscale" if modes <= {"L", "1", "I;16", "I"} else "rgb")
    labels = np.array([c for _, c in files])
    why = stratify_problem(np.asarray(classes)[labels], opts["val_fraction"], opts["test_fraction"], "task_options.path (class folders)", "image(s)")
    if why:
        raise TaskInputError([why])
    log.info("images: %d images of %d classes under %s (%s, %.1f MB encoded)", len(blobs), len(classes), root, color, sum(map(len, blobs)) / 1e6)
    return ImagesTask(opts, classes, blobs, labels, color)
