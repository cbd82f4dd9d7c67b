"""The task protocol and the parts tasks share: splits, loss-and-metric heads, input errors.

Kept free of pandas and scikit-learn at import time: Train workers unpickle task objects, and
every worker process pays for what this module imports.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError


class TaskInputError(UserError, ValueError):
    """A task's options or data are unusable. ``problems``: one "field: got value; fix" line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Splits:
    """Train, validation and test tensors, fixed by the job's seed: ``(inputs, targets)`` each."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def without_test(self) -> "Splits":
        """These splits with the test split emptied (zero rows): what Train workers receive, so
        that no trial can look at the test data, whatever its code does."""
        return Splits(train=self.train, val=self.val, test=(self.test[0][:0], self.test[1][:0]))


@runtime_checkable
class Task(Protocol):
    """The whole contract between a task and the training loop; options are bound at construction.

    - ``metric_modes``: each metric ``metrics_from_sums`` returns, with the mode that makes it
      better ("max" or "min"); the loop reports them as ``train_<m>`` and ``val_<m>``.
    - ``families``: the model families ``build_model`` accepts as ``params["model"]``.
    - ``hyperparameters``: every parameter name ``build_model`` reads (flat names, see models).
    - ``splits(seed)``: the same tensors for the same seed, on every call and every machine.
    - ``metric_sums``: additive sums (including ``count``), so that ranks can all-reduce them
      before ``metrics_from_sums`` turns them into one epoch's metrics.

    A task object is pickled to the Train workers, so it must hold plain data (arrays, strings),
    not open files or clients.

    Optional, for the loop:

    - ``batches(data, order, batch_size, params, train)``: the task's own batches of a split's
      ``(inputs, targets)``, as ``(model input, targets)`` pairs, for data that is decoded as it is
      read (images, in DataLoader workers); without it, the rows of the tensors are the batches.
    - ``mixed_precision``: True to train under bf16 autocast on a CUDA device that supports it.
    - ``use_space(space)``: called once by ``check_job`` with the job's space, before any split,
      for a task whose data depends on it (the text task tokenises once per checkpoint's tokenizer).
    - ``param_domains``: its own parameters' domains (``distsearch.space.domains``).
    - ``family_of(value)``: the family a value of ``model`` names, where a value can be other
      than a family's name (the text task reads a checkpoint there as the ``hf`` family).

    Optional, for ensembles and ``distsearch.load_model`` (the heads below provide the first two):

    - ``predictions(outputs)``: what a model's outputs become when several models' are averaged
      (class probabilities, regression values, next-token distributions); ``prediction_kind``,
      "probabilities" (a softmax of the outputs' last dimension) or "values" (the outputs); and
      ``outputs_from_predictions(predictions)``, their inverse as far as ``metric_sums`` cares.
      Without them, a run's ensemble is skipped, with the reason in ensemble.json.
    - ``input_encoder()``: a small picklable callable that turns raw inputs (rows of the table,
      pixel arrays, text) into the model's input tensor, with what the training split fixed
      (e.g. the tabular standardisation); ``class_names``: the classes, in output order.
    """

    name: str
    metric_modes: Mapping[str, str]
    families: tuple[str, ...]
    hyperparameters: frozenset[str]

    def splits(self, seed: int) -> Splits: ...

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module: ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]: ...

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]: ...


# (task object -> {seed: Splits}): weak, so a task and its splits go together; outside the task,
# since a task travels to the workers in the object store and its splits must not go twice.
_SPLITS: "weakref.WeakKeyDictionary[Any, dict[int, Splits]]" = weakref.WeakKeyDictionary()


def splits_once(task: Any, seed: int) -> Splits:
    """``task.splits(seed)``, made once per task object: validation's dry run and the sweep of one
    job share them (the evaluation gets the sweep's) rather than read and split the data again. A task that
    cannot be a weak dictionary key (it defines ``__eq__`` without ``__hash__``) splits each time."""
    try:
        memo = _SPLITS.setdefault(task, {})
    except TypeError:
        return task.splits(seed)
    if seed not in memo:
        memo[seed] = task.splits(seed)
    return memo[seed]


def batches(
    task: Any,
    data: tuple[torch.Tensor, torch.Tensor],
    order: Optional[torch.Tensor] = None,
    batch_size: int = 512,
    params: Optional[Mapping[str, Any]] = None,
    train: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(model input, targets)`` batches of ``data``'s rows in ``order`` (all rows, in turn, when
    None): the task's own ``batches`` when it has one, else slices of the tensors."""
    own = getattr(task, "batches", None)
    if own is not None:
        yield from own(data, torch.arange(len(data[1])) if order is None else order, batch_size, dict(params or {}), train)
        return
    x, y = data
    for i in range(0, len(y) if order is None else len(order), batch_size):
        if order is None:  # views, not copies
            yield x[i : i + batch_size], y[i : i + batch_size]
        else:
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]


def family_values(space: Mapping[str, Any], family: str, name: str) -> list[Any]:
    """The values a space gives the sub-parameter ``name`` of model family ``family``: under
    ``model: {choice: {family: {name: ...}}}``, else a top-level ``name``; a constant or a choice."""
    p = space.get("model")
    sub = p.sub_spaces().get(family, {}).get(name) if p is not None else None
    sub = sub if sub is not None else space.get(name)
    return sub.listed() if sub is not None and not sub.sub_spaces() else []


def locate(path: str, kind: str = "file", field: str = "task_options.path"):
    """``(filesystem, inner path)`` of ``path`` (local or a URI), which must be a ``kind``
    (``file`` or ``folder``); raises ``TaskInputError`` naming ``field`` when it cannot be opened or is not one."""
    import pyarrow.fs as pafs

    from .. import storage

    try:
        fs, inner = storage.filesystem(path)
        info = fs.get_file_info(inner)
    except (OSError, ValueError) as e:
        raise TaskInputError([f"{field}: got {path!r}; cannot open it: {e}"]) from None
    if info.type != (pafs.FileType.File if kind == "file" else pafs.FileType.Directory):
        raise TaskInputError([f"{field}: got {path!r}; no such {kind} (a path is relative to the directory distsearch runs in)"])
    return fs, inner


def require_extra(extra: str, *modules: str) -> None:
    """Raise ``TaskInputError`` naming ``distsearch[extra]`` when one of ``modules`` is not installed."""
    import importlib.util

    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or without a spec
            found = False
        if not found:
            raise TaskInputError(
                [
                    f"task: this task needs the optional dependencies of distsearch[{extra}] ({name} is not installed); fix: pip install 'distsearch[{extra}]'"
                ]
            )


ENSEMBLE_MEMBERS = ("prediction_kind", "predictions", "outputs_from_predictions")
PROTOCOL_MEMBERS = ("name", "metric_modes", "families", "hyperparameters", "splits", "build_model", "loss", "metric_sums", "metrics_from_sums")


# ---------------------------------------------------------------------------------------------
# Heads: loss and metrics for a kind of target. A task inherits one and sets its attributes.
# ---------------------------------------------------------------------------------------------
class ClassificationHead:
    """Cross-entropy over ``num_classes``; accuracy and macro-F1 from additive per-class counts.

    Outputs are logits ``(N, C)``; targets are class indices ``(N,)``. Macro-F1 averages F1 over
    the classes that occur in the targets or the predictions, as scikit-learn's ``f1_score``.
    """

    num_classes: int
    metric_modes = {"accuracy": "max", "macro_f1": "max", "loss": "min"}
    prediction_kind = "probabilities"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities: averaged over models, they are a soft vote."""
        return torch.softmax(outputs.double(), dim=-1)

    def outputs_from_predictions(self, predictions: torch.Tensor) -> torch.Tensor:
        # log-probabilities are logits whose softmax is the probabilities themselves
        return predictions.clamp_min(1e-12).log()

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        pred = outputs.argmax(1)
        k = self.num_classes
        hit = torch.bincount(targets[pred == targets], minlength=k).tolist()
        predicted = torch.bincount(pred, minlength=k).tolist()
        actual = torch.bincount(targets, minlength=k).tolist()
        sums = {"loss": float(F.cross_entropy(outputs, targets, reduction="sum")), "correct": float(sum(hit)), "count": float(len(targets))}
        for c in range(k):
            sums[f"tp_{c}"], sums[f"pred_{c}"], sums[f"true_{c}"] = float(hit[c]), float(predicted[c]), float(actual[c])
        return sums

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        f1s = [
            2 * sums[f"tp_{c}"] / (sums[f"pred_{c}"] + sums[f"true_{c}"])
            for c in range(self.num_classes)
            if sums[f"pred_{c}"] + sums[f"true_{c}"] > 0
        ]
        return {"accuracy": sums["correct"] / n, "macro_f1": sum(f1s) / max(len(f1s), 1), "loss": sums["loss"] / n}


class RegressionHead:
    """Mean squared error on standardised targets; RMSE in the target's units and R².

    Targets are standardised with the training split's mean and ``target_scale`` (its standard
    deviation); outputs are ``(N, 1)``. R² is the same in either unit; RMSE is scaled back.
    """

    target_scale: float = 1.0
    target_mean: float = 0.0
    metric_modes = {"rmse": "min", "r2": "max", "loss": "min"}
    prediction_kind = "values"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.squeeze(-1), targets)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """The predicted values (standardised, as the targets are)."""
        return outputs.double()

    def outputs_from_predictions(self, predictions: torch.Tensor) -> torch.Tensor:
        return predictions

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        err = outputs.squeeze(-1).double() - targets.double()
        t = targets.double()
        return {"sse": float((err**2).sum()), "sum_y": float(t.sum()), "sum_y2": float((t**2).sum()), "count": float(len(targets))}

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        n = max(sums["count"], 1.0)
        total = sums["sum_y2"] - sums["sum_y"] ** 2 / n
        mse = sums["sse"] / n
        return {"rmse": self.target_scale * math.sqrt(mse), "r2": 1.0 - sums["sse"] / total if total > 0 else float("nan"), "loss": mse}


class SequenceHead:
    """Next-token cross-entropy over a vocabulary; bits per token (``bpc`` for characters).

    Outputs are ``(N, T, V)`` logits; targets ``(N, T)`` token ids. ``count`` is tokens, not rows.
    """

    metric_modes = {"bpc": "min", "loss": "min"}
    prediction_kind = "probabilities"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Next-token distributions."""
        return torch.softmax(outputs.double(), dim=-1)

    def outputs_from_predictions(self, predictions: torch.Tensor) -> torch.Tensor:
        return predictions.clamp_min(1e-12).log()

    def metric_sums(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        nats = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="sum")
        return {"loss": float(nats), "count": float(targets.numel())}

    def metrics_from_sums(self, sums: Mapping[str, float]) -> dict[str, float]:
        per_token = sums["loss"] / max(sums["count"], 1.0)
        return {"bpc": per_token / math.log(2), "loss": per_token}


# ---------------------------------------------------------------------------------------------
# Option helpers
# ---------------------------------------------------------------------------------------------
def check_options(
    task: str, options: Mapping[str, Any], defaults: Mapping[str, Any], required: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """``options`` over ``defaults``, and a problem line for each unknown or missing key."""
    known = set(defaults) | set(required)
    problems = [f"task_options.{k}: {task} has no option {k!r}; use {', '.join(sorted(known))}" for k in options if k not in known]
    problems += [f"task_options.{k}: missing; {task} needs it" for k in required if k not in options]
    return {**defaults, **{k: v for k, v in options.items() if k in known}}, problems


def check_whole_numbers(opts: Mapping[str, Any], ranges: tuple[tuple[str, int, int], ...]) -> list[str]:
    """A problem line for each ``(key, low, high)`` whose option is not a whole number in ``[low, high]``."""
    problems = []
    for key, low, high in ranges:
        v = opts.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            problems.append(f"task_options.{key}: got {v!r}; fix: use a whole number from {low} to {high}")
    return problems


def check_fractions(opts: Mapping[str, Any], keys: tuple[str, ...] = ("val_fraction", "test_fraction")) -> list[str]:
    problems = []
    for k in keys:
        v = opts[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 0.4:
            problems.append(f"task_options.{k}: got {v!r}; use a fraction between 0.05 and 0.4")
    return problems
