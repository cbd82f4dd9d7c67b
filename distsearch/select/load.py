"""Saved models: a JSON description and safetensors weights, rebuilt by ``load_model(run)`` without running code from the run.

A run saves its single best and its ensemble as ``model/best.{json,safetensors}`` and
``model/ensemble.{json,safetensors}``. The JSON names the task, each member's hyperparameters and
weight, and the task's *recipe*: what its models and input encoder are built from (the table's
standardisation and categories, the class names, a vocabulary, a tokenizer's own JSON). The
module is rebuilt by distsearch's code from that description, and the weights are tensors in a
safetensors file, read with its size checked first. A run folder may come from anyone's bucket:
nothing in it is a pickle, and nothing read from it is imported or run (docs/results.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from .. import constants as C
from ..errors import RunFileMissing, UserError
from ..storage import PathLike, TooLarge, absolute, exists, is_uri, join, read_bytes, read_json, write_bytes
from .ensemble import Averaged

#: The description format this code writes and reads.
FORMAT = "distsearch-model/2"
#: A description holds hyperparameters, class names and a tokenizer or two: more is not ours.
MAX_DESCRIPTION_BYTES = 64 * 2**20
#: safetensors' header (names, shapes) on top of the tensors' own bytes.
HEADER_ALLOWANCE_BYTES = 2**20


_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "uint8": torch.uint8}


#: run.json holds the job and the run's records; no run writes more than this.
MAX_RUN_FILE_BYTES = 16 * 2**20


class UnsafeModelFile(UserError):
    """A model file that distsearch will not read: a pickle, or not what its description says."""


@dataclass
class LoadedModel:
    """A selected model, ready to use.

    - ``module``: the ``torch.nn.Module``, in eval mode, mapping the model's input tensor to
      predictions (class or next-token probabilities, or standardised values);
    - ``encode``: raw inputs (a DataFrame of the table's rows, an array of images, text) to that
      input tensor, as the training split fixed it; None when the task has no encoder;
    - ``class_names``: the classes, in output order (classification), else None;
    - ``target_mean``, ``target_scale``: what un-standardises a regression prediction;
    - ``members``: the members' names and their weights: a trial id, or ``<trial id>@<epoch>``
      where a trial is a member at several epochs (``selection.checkpoints_per_trial``).
    """

    module: Averaged
    task: str
    encode: Optional[Callable[[Any], torch.Tensor]]
    class_names: Optional[list[str]]
    target_mean: float
    target_scale: float
    members: dict[str, float]
    params: list[dict[str, Any]] = field(default_factory=list)  # each member's hyperparameters, in member order
    recipe: Optional[dict[str, Any]] = None  # the task's model_recipe(): what rebuilds module and encoder; None for a custom task
    input_shape: list[int] = field(default_factory=list)  # one input's shape, without the batch dimension
    input_dtype: str = "float32"

    def _forward(self, raw: Any) -> torch.Tensor:
        x = self.encode(raw) if self.encode is not None else raw
        with torch.no_grad():
            return self.module(x)

    def predict_proba(self, raw: Any) -> np.ndarray:
        """The module's predictions for raw inputs (encoded first when the task has an encoder), as a
        NumPy array as scikit-learn gives them: class probabilities (rows, classes) for classification."""
        return self._forward(raw).detach().cpu().numpy()

    def predict(self, raw: Any) -> list:
        """Class names for classification, values in the target's units for regression, else
        the predictions as ``predict_proba`` gives them."""
        p = self._forward(raw)
        if self.class_names is not None:
            return [self.class_names[i] for i in p.argmax(-1).tolist()]
        if self.module.kind == "values":
            return (p.squeeze(-1) * self.target_scale + self.target_mean).tolist()
        return p.detach().cpu().numpy()

    def description(self) -> dict[str, Any]:
        """What the JSON file holds: everything but the weights."""
        return {
            "format": FORMAT,
            "task": self.task,
            "prediction_kind": self.module.kind,
            "class_names": self.class_names,
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
            "members": [{C.TRIAL_ID: t, "weight": w, "params": p} for (t, w), p in zip(self.members.items(), self.params, strict=True)],
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "recipe": self.recipe,
        }


def save(model: LoadedModel, prefix: str) -> None:
    """Write ``<prefix>.safetensors`` (the weights), then ``<prefix>.json`` (the description, last:
    a reader that finds it finds the weights)."""
    from safetensors.torch import save

    # Copies: safetensors refuses tensors that share memory (tied embeddings), and views.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.module.state_dict().items()}
    write_bytes(prefix + C.MODEL_WEIGHTS_SUFFIX, save(state))
    write_bytes(prefix + C.MODEL_DESCRIPTION_SUFFIX, json.dumps(model.description(), indent=1, default=_plain).encode())


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def load_model(
    run: PathLike, ensemble: bool = False, task: Any = None, trial: Optional[str] = None, pick: Optional[Mapping[str, Mapping[str, float]]] = None
) -> LoadedModel:
    """The selected model of the run at ``run`` (a local path or a storage URI): the single best
    trial at its best checkpoint, or with ``ensemble=True`` the run's ensemble, or with
    ``trial="<trial id>"`` that trial at its best checkpoint that was kept
    (``checkpointing.keep_after_sweep``), read as tensors only. For a run with objectives,
    ``pick={"latency_ms": {"max": 5}}`` loads the trial of the Pareto front that is best by the
    job's metric among those within the bounds (``pick_from_front``).

    The module is rebuilt by distsearch from the saved description and filled with the saved
    weights; nothing in the run folder is imported or unpickled. A ``custom`` task's models are
    built by its own code, which a run folder may name but never runs: pass ``task``, the object
    your factory returns. Raises ``RunFileMissing`` when the run has no such model and
    ``UnsafeModelFile`` for a file that is not what distsearch writes."""
    run = str(run) if is_uri(run) else absolute(run)
    if sum((ensemble, trial is not None, pick is not None)) > 1:
        raise ValueError(f"load_model: got ensemble={ensemble}, trial={trial!r} and pick={pick!r}; fix: pass one of them")
    if pick is not None:
        trial = pick_from_front(read_json(join(run, C.RUN_FILE), MAX_RUN_FILE_BYTES), pick)
    name = C.ENSEMBLE_MODEL if ensemble else C.BEST_MODEL
    prefix = join(run, C.MODEL_DIR, name)
    described, weights = prefix + C.MODEL_DESCRIPTION_SUFFIX, prefix + C.MODEL_WEIGHTS_SUFFIX
    if not exists(described):
        legacy = prefix + C.LEGACY_MODEL_SUFFIX
        if exists(legacy):
            raise UnsafeModelFile(
                f"{legacy} is a pickle from an older distsearch, and unpickling it could run any code in it, so it is not read; "
                f"fix: run `distsearch resave-models {run}` on a machine with the job's data: it rebuilds the models from the run's "
                "checkpoints (tensors only) and writes them as JSON and safetensors"
            )
        why = "no trial reported a metric, or the run has not finished"
        record = join(run, C.ENSEMBLE_FILE)
        if ensemble and exists(record) and read_json(record, MAX_DESCRIPTION_BYTES).get("skipped"):
            why = f"the ensemble was skipped: {read_json(record, MAX_DESCRIPTION_BYTES)['skipped']}"
        raise RunFileMissing(f"{described} does not exist ({why}); fix: load the single best (ensemble=False) or run the job to its end")
    try:
        desc = read_json(described, MAX_DESCRIPTION_BYTES)
    except (TooLarge, ValueError) as e:
        raise UnsafeModelFile(f"{described}: not a model description distsearch wrote ({e})") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        got = desc.get("format") if isinstance(desc, dict) else type(desc).__name__
        raise UnsafeModelFile(f"{described}: format {got!r}, not {FORMAT!r}; fix: load it with the distsearch that wrote it")
    builder = _builder(desc, described, task)
    if trial is not None:  # the best model's description, with that trial as its one member
        desc, state = _trial_member(run, desc, trial)
        module = rebuild(desc, builder)
        module.members[0].load_state_dict(state, strict=True)
    else:
        module = rebuild(desc, builder)
        module.load_state_dict(read_weights(weights, module.state_dict()), strict=True)
    encoder = getattr(builder, "input_encoder", None)
    members = desc["members"]
    return LoadedModel(
        module=module.eval(),
        task=desc["task"],
        encode=encoder() if encoder is not None else None,
        class_names=desc["class_names"],
        target_mean=float(desc["target_mean"]),
        target_scale=float(desc["target_scale"]),
        members={m[C.TRIAL_ID]: float(m["weight"]) for m in members},
        params=[m["params"] for m in members],
        recipe=desc["recipe"],
        input_shape=desc["input_shape"],
        input_dtype=desc["input_dtype"],
    )


def pick_from_front(meta: Mapping[str, Any], pick: Mapping[str, Mapping[str, float]]) -> str:
    """The id of the trial of ``meta``'s (run.json's) Pareto front that is best by the job's metric
    among those within ``pick``'s bounds ({metric: {"min": ..., "max": ...}})."""
    job, front = meta["job"], meta.get("front")
    if not job.get("objectives") or front is None:
        raise ValueError("load_model: pick= needs a run with objectives, which has a Pareto front; fix: pass trial= or nothing")
    within = [
        p
        for p in front
        if all(
            name in p and (b.get("min") is None or p[name] >= b["min"]) and (b.get("max") is None or p[name] <= b["max"]) for name, b in pick.items()
        )
    ]
    if not within:
        ranges = "; ".join(
            f"{n} {min(p[n] for p in front):.4g}..{max(p[n] for p in front):.4g}" for n in pick if front and all(n in p for p in front)
        )
        raise RunFileMissing(
            f"no trial of the Pareto front meets {dict(pick)} (the front spans {ranges or 'none of those metrics'}); fix: loosen the bounds"
        )
    sign = 1.0 if job["mode"] == "max" else -1.0
    return max(within, key=lambda p: sign * p[job["metric"]])[C.TRIAL_ID]


def _trial_member(run: str, desc: Mapping[str, Any], trial_id: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``desc`` with ``trial_id`` as its one member, and that trial's weights at its best kept
    checkpoint, under the run's selection rule (its ``selection.smoothing_epochs`` included)."""
    from ..results import files as results
    from ..search.objective import Objective
    from .view import smoothed_epochs

    job = read_json(join(run, C.RUN_FILE), MAX_RUN_FILE_BYTES)["job"]
    objective = Objective.of(job)
    epochs = results.read_frame(join(run, C.EPOCHS_FILE))
    smoothing_epochs = int((job.get("selection") or {}).get("smoothing_epochs", 1))
    epochs = smoothed_epochs(epochs, objective, smoothing_epochs)
    row = results.best_checkpoint(epochs, trial_id, objective)
    if row is None:
        why = "none of its checkpoints was kept" if trial_id in set(epochs[C.TRIAL_ID]) else "the run has no such trial"
        raise RunFileMissing(
            f"trial {trial_id}: {why}; fix: pass a trial id of trials.parquet whose checkpoint was kept (the single best's, an "
            "ensemble member's, a cancelled trial's), or run the job with checkpointing.keep_after_sweep: all"
        )
    state = results.load_state(row[C.CHECKPOINT_PATH])
    return {**desc, "members": [{C.TRIAL_ID: trial_id, "weight": 1.0, "params": state["params"]}]}, state["model"]


def _builder(desc: Mapping[str, Any], where: str, task: Any) -> Any:
    if task is not None:
        return task
    from ..tasks import from_recipe

    try:
        return from_recipe("custom" if desc["recipe"] is None else desc["task"], desc["recipe"])
    except (KeyError, TypeError, ValueError) as e:
        raise UnsafeModelFile(f"{where}: its recipe for task {desc.get('task')!r} cannot be used ({type(e).__name__}: {e})") from None


def rebuild(desc: Mapping[str, Any], builder: Any) -> Averaged:
    """The module ``desc`` describes, built by ``builder`` (a task), with fresh weights."""
    from ..tasks import Splits

    dtype = desc["input_dtype"]
    if dtype not in _DTYPES:
        raise UnsafeModelFile(f"input_dtype: got {dtype!r}; a saved model takes one of {', '.join(_DTYPES)}")
    x = torch.empty((0, *(int(n) for n in desc["input_shape"])), dtype=_DTYPES[dtype])
    shape_only = Splits(train=(x, x), val=(x, x), test=(x, x))  # what build_model reads of them: the input's shape
    members = [builder.build_model(m["params"], shape_only) for m in desc["members"]]
    return Averaged(members, [float(m["weight"]) for m in desc["members"]], desc["prediction_kind"])


def read_weights(path: str, expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file at ``path``, which must be the ones ``expected`` names,
    of its shapes; the file's size is checked against them before it is read."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    need = sum(t.numel() * t.element_size() for t in expected.values())
    try:
        data = read_bytes(path, need + HEADER_ALLOWANCE_BYTES)
        state = load(data)
    except (TooLarge, SafetensorError, OSError) as e:
        raise UnsafeModelFile(f"{path}: not the safetensors weights of the model its description builds ({e})") from None
    wrong = sorted(set(state) ^ set(expected)) + sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
    if wrong:
        raise UnsafeModelFile(f"{path}: tensors {', '.join(wrong[:5])} do not match the model its description builds")
    return state
