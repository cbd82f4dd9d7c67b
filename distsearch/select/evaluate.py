"""Evaluation: the selected model and the ensemble, each scored once on the held-out test split.

The sweep never shows a worker the test rows (``Splits.without_test``); this module is the one
place that reads them, once per reported model, after selection on the validation split is over:
the single best trial at its best checkpoint (best.json), and the ensemble of the best trials'
best checkpoints (ensemble.json). Both are saved for ``distsearch.load_model``. The job's
``selection`` section says how they are picked: on smoothed curves (``view``), from several
checkpoints per trial, and refit on train and validation together (``refit``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional

import pandas as pd
import torch

from .. import constants as C
from .. import storage
from ..errors import UserError
from ..results import files as results
from ..search.objective import Objective
from ..spec.model import JobSpec
from ..tasks import Splits, Task
from ..tasks.base import ENSEMBLE_MEMBERS, batches
from ..train import loop
from . import load
from .ensemble import Averaged, select
from .refit import merged_splits, refit
from .view import selection_view

log = logging.getLogger("distsearch")

SPLITS = ("train", "val", "test")
_BATCH = 512


def evaluate_model(task: Task, splits: Splits, model: torch.nn.Module, split_names=SPLITS) -> dict[str, float]:
    """Score ``model`` (restored, in eval mode) on each named split, on CPU: ``{"<split>_<metric>": value}``."""
    scores = {}
    for split in split_names:
        sums = loop.evaluate(task, model, getattr(splits, split), torch.device("cpu"))
        scores.update({f"{split}_{k}": v for k, v in task.metrics_from_sums(sums).items()})
    return scores


def _restore(task: Task, splits: Splits, params: Mapping[str, Any], state: Mapping[str, Any]) -> torch.nn.Module:
    model = task.build_model(params, splits)
    model.load_state_dict(state["model"])
    return model.eval()


def _inputs(task: Task, data: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    """The model inputs of a split, batch by batch: made once and fed to every candidate, since a
    task's own batches may decode (images)."""
    return [xb for xb, _ in batches(task, data, batch_size=_BATCH)]


def _predictions(task: Task, model: torch.nn.Module, inputs: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([task.predictions(model(xb)) for xb in inputs])


def _metrics(task: Task, predictions: torch.Tensor, targets: torch.Tensor, split: str) -> dict[str, float]:
    sums = task.metric_sums(task.outputs_from_predictions(predictions), targets)
    return {f"{split}_{k}": v for k, v in task.metrics_from_sums(sums).items()}


def to_saved(task: Task, splits: Splits, models: list[torch.nn.Module], members: Mapping[str, float], params: list[dict]) -> load.LoadedModel:
    """``models`` averaged with the ``members``' weights, and what feeds them, ready to save."""
    module = Averaged(models, list(members.values()), getattr(task, "prediction_kind", "values")).eval()
    encoder = getattr(task, "input_encoder", None)
    recipe = getattr(task, "model_recipe", None)
    x = splits.train[0]
    return load.LoadedModel(
        params=[dict(p) for p in params],
        recipe=recipe() if recipe is not None else None,  # None: a custom task, whose own code builds its models
        input_shape=list(x.shape[1:]),
        input_dtype=str(x.dtype).removeprefix("torch."),
        module=module,
        task=task.name,
        encode=encoder() if encoder is not None else None,
        class_names=getattr(task, "class_names", None),
        target_mean=float(getattr(task, "target_mean", 0.0)),
        target_scale=float(getattr(task, "target_scale", 1.0)),
        members=dict(members),
    )


def _refit(spec: JobSpec, task: Task, merged: Splits, params: Mapping[str, Any], epoch: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    model, seconds = refit(task, merged, params, epoch, spec.budget.max_epochs, spec.seed)
    return model, {C.EPOCH: epoch, "rows": int(len(merged.train[1])), "seconds": seconds}


def score_best(
    spec: JobSpec, task: Task, splits: Splits, trials: pd.DataFrame, epochs: pd.DataFrame, merged: Optional[Splits] = None
) -> tuple[Optional[dict[str, Any]], Optional[torch.nn.Module]]:
    """Restore the best trial's best checkpoint and score it on the test split, once: best.json's
    content, and the restored model (None, None when there is none). With ``merged`` (train and
    validation together, ``selection.refit``), the recipe is refit on it to the checkpoint's epoch
    and the refit model is the one scored and returned.

    The same model is scored on the train and validation splits too, in eval mode, so the
    overfitting gap (``train`` against ``val``) sits beside the test score.
    """
    objective = Objective.of(spec)
    row = objective.best_trial(trials, epochs)
    if row is None:
        log.warning("no trial reported %s; nothing to test", spec.metric)
        return None, None
    trial_id = row[C.TRIAL_ID]
    ckpt = results.best_checkpoint(epochs, trial_id, objective)
    if ckpt is None:
        log.warning("trial %s has no checkpoint left to test", trial_id)
        return None, None
    t0 = time.perf_counter()
    state = results.load_state(ckpt[C.CHECKPOINT_PATH])
    params = state["params"]
    model, refit_record = _restore(task, splits, params, state), None
    if merged is not None:
        model, refit_record = _refit(spec, task, merged, params, int(ckpt[C.EPOCH]))
    scores = evaluate_model(task, splits, model)
    by_split = {s: {k: v for k, v in scores.items() if k.startswith(f"{s}_")} for s in SPLITS}
    record = {
        C.TRIAL_ID: trial_id, "params": params, "metric": spec.metric, "mode": spec.mode,
        "val_metric": float(ckpt[spec.metric]), C.EPOCH: int(ckpt[C.EPOCH]), C.CHECKPOINT_PATH: ckpt[C.CHECKPOINT_PATH],
        "test": by_split["test"], "final_train": by_split["train"], "final_val": by_split["val"], "test_seconds": time.perf_counter() - t0,
        "smoothing_epochs": spec.selection.smoothing_epochs, "refit": refit_record,
    }  # fmt: skip
    return record, model


def _labels(chosen: list) -> list[str]:
    """Each member's name in the saved model: its trial id, with its epoch where the trial is a member at several."""
    trials = [c[0] for c, _ in chosen]
    return [c[0] if trials.count(c[0]) == 1 else f"{c[0]}@{c[1]}" for c, _ in chosen]


def build_ensemble(
    spec: JobSpec, task: Task, splits: Splits, trials: pd.DataFrame, epochs: pd.DataFrame, best: Mapping[str, Any], merged: Optional[Splits] = None
) -> dict[str, Any]:
    """The ensemble record (ensemble.json's content) and, under ``"model"``, the ensemble as a
    ``load.LoadedModel``: the ``ensemble.top_trials`` best trials, each at its best
    ``selection.checkpoints_per_trial`` checkpoints, predict the validation split once; greedy
    forward selection with replacement (``ensemble.select``) picks the members for the job's
    metric; then the ensemble predicts the test split, once. With ``merged``, each member is
    first refit on it to its epoch (``selection.refit``), and the refit members predict the test split."""
    objective = Objective.of(spec)
    single = {C.TRIAL_ID: best[C.TRIAL_ID], "val": best["final_val"], "test": best["test"]}
    record: dict[str, Any] = {"metric": spec.metric, "mode": spec.mode, "single_best": single, "skipped": None}
    missing = [m for m in ENSEMBLE_MEMBERS if not hasattr(task, m)]
    if missing:
        return {
            **record,
            "skipped": f"task {task.name} has no {', '.join(missing)} (see distsearch.tasks.base.Task); fix: inherit a head or define them",
        }
    candidates, costs = [], []  # (trial id, epoch, checkpoint path, model, params); each one's cost metrics
    for _, row in objective.rank_trials(trials, epochs).iterrows():
        if len({c[0] for c in candidates}) == spec.ensemble.top_trials or row[C.STATUS] == C.STATUS_ERROR or pd.isna(row[C.BEST_METRIC]):
            break
        for ckpt in results.best_checkpoints(epochs, row[C.TRIAL_ID], objective, spec.selection.checkpoints_per_trial):
            state = results.load_state(ckpt[C.CHECKPOINT_PATH])
            model = _restore(task, splits, state["params"], state)
            candidates.append((row[C.TRIAL_ID], int(ckpt[C.EPOCH]), ckpt[C.CHECKPOINT_PATH], model, state["params"]))
            costs.append({name: float(ckpt[name]) for name in C.COST_METRICS if name in ckpt and pd.notna(ckpt[name])})
    if not candidates:
        return {**record, "skipped": "no trial has a checkpoint left"}
    y_val, y_test = splits.val[1], splits.test[1]
    val_inputs = _inputs(task, splits.val)
    val_predictions = [_predictions(task, c[3], val_inputs) for c in candidates]
    # an ensemble runs every member: a bound on a cost holds for the members' sum
    budget = {name: b.max for name, b in spec.constraints.items() if name in C.COST_METRICS and b.max is not None}
    try:
        selection = select(
            val_predictions,
            lambda p: _metrics(task, p, y_val, "val")[spec.metric],
            objective,
            spec.ensemble.rounds,
            tiebreak=lambda p: _metrics(task, p, y_val, "val")["val_loss"],  # every head reports a loss
            costs=costs,
            budget=budget,
        )
    except ValueError:
        return {**record, "skipped": f"no candidate checkpoint fits the constraints on its own ({budget})"}
    chosen = [(candidates[i], selection.weights[i]) for i in selection.members]
    val = sum(w * val_predictions[i] for i, w in zip(selection.members, (w for _, w in chosen), strict=True))
    refits = [_refit(spec, task, merged, c[4], c[1]) for c, _ in chosen] if merged is not None else None
    models = [r[0] for r in refits] if refits is not None else [c[3] for c, _ in chosen]
    # the test split, once: each member's test predictions, averaged with the selected weights
    test_inputs = _inputs(task, splits.test)
    test = sum(w * _predictions(task, m, test_inputs) for m, (_, w) in zip(models, chosen, strict=True))
    labels = _labels(chosen)
    return {
        **record,
        "candidates": list(dict.fromkeys(c[0] for c in candidates)),
        "candidate_checkpoints": len(candidates),
        "members": [{C.TRIAL_ID: c[0], C.EPOCH: c[1], C.CHECKPOINT_PATH: c[2], "weight": w} for c, w in chosen],
        "checkpoints_per_trial": spec.selection.checkpoints_per_trial,
        "refit": [r[1] for r in refits] if refits is not None else None,
        "rounds": spec.ensemble.rounds,
        "rounds_kept": selection.rounds_kept,
        "val_by_round": selection.scores,
        "cost": {name: sum(costs[i][name] for i in selection.members) for name in costs[0]} if costs and costs[0] else None,
        "val": _metrics(task, val, y_val, "val"),
        "test": _metrics(task, test, y_test, "test"),
        "model": to_saved(task, splits, models, dict(zip(labels, (w for _, w in chosen), strict=True)), [c[4] for c, _ in chosen]),
    }


def resave_models(run: str) -> list[str]:
    """Write a run's selected models in the current format (JSON and safetensors) from its
    checkpoints (read as tensors only) and its job, whose data must be where the job says; the
    models of an older run, saved as pickles, are never read. Returns the files written."""
    from ..spec.model import parse_job
    from ..validate import check_job

    meta = storage.read_json(storage.join(run, C.RUN_FILE), load.MAX_DESCRIPTION_BYTES)
    spec = parse_job(meta["job"], storage.join(run, C.RUN_FILE))
    task = check_job(spec, dry_run=False)
    splits = task.splits(spec.seed)
    records = [(C.BEST_MODEL, storage.read_json(storage.join(run, C.BEST_FILE), load.MAX_DESCRIPTION_BYTES))]
    path = storage.join(run, C.ENSEMBLE_FILE)
    ensemble = storage.read_json(path, load.MAX_DESCRIPTION_BYTES) if storage.exists(path) else {}
    if ensemble.get("members"):  # a skipped ensemble has none
        records.append((C.ENSEMBLE_MODEL, ensemble))
    written = []
    for name, record in records:
        if record.get("refit"):
            raise UserError(f"{run}: its {name} model was refit on train and validation, which no checkpoint holds; fix: run its job again")
        members = record.get("members") or [{**record, "weight": 1.0}]
        states = [results.load_state(m[C.CHECKPOINT_PATH]) for m in members]
        models = [_restore(task, splits, s["params"], s) for s in states]
        chosen = [((m[C.TRIAL_ID], m.get(C.EPOCH)), float(m["weight"])) for m in members]
        saved = to_saved(task, splits, models, dict(zip(_labels(chosen), (w for _, w in chosen), strict=True)), [s["params"] for s in states])
        prefix = storage.join(run, C.MODEL_DIR, name)
        load.save(saved, prefix)
        written += [prefix + C.MODEL_DESCRIPTION_SUFFIX, prefix + C.MODEL_WEIGHTS_SUFFIX]
    return written


def score_front(spec: JobSpec, task: Task, splits: Splits, epochs: pd.DataFrame, front: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each trial of a multi-objective run's Pareto front (``results.front``) restored at its best
    kept checkpoint and scored on the test split, once: the front with each point's ``test``."""
    objective, out = Objective.of(spec), []
    for point in front:
        ckpt = results.best_checkpoint(epochs, point[C.TRIAL_ID], objective)
        if ckpt is None:
            out.append({**point, "test": None})
            continue
        state = results.load_state(ckpt[C.CHECKPOINT_PATH])
        out.append({**point, "test": evaluate_model(task, splits, _restore(task, splits, state["params"], state), ("test",))})
    return out


def evaluate_run(
    spec: JobSpec, task: Task, splits: Splits, trials: pd.DataFrame, epochs: pd.DataFrame, out: str
) -> tuple[Optional[dict], Optional[dict]]:
    """Score the single best, and the ensemble where ``ensemble.enabled``, once each on the test
    split; write best.json, ensemble.json and both models under ``out``. Returns both records."""
    trials, epochs = selection_view(trials, epochs, Objective.of(spec), spec.selection.smoothing_epochs)
    if spec.constraints and C.PARETO_RANK in trials:
        # a trial that misses a constraint has no Pareto rank: the selected models come from those that meet them all
        if trials[C.PARETO_RANK].notna().any():
            trials = trials[trials[C.PARETO_RANK].notna()]
        else:
            log.warning("no trial meets the job's constraints; the selected models are the best that miss them")
    merged = merged_splits(splits) if spec.selection.refit else None
    best, model = score_best(spec, task, splits, trials, epochs, merged)
    if best is None:
        return None, None
    storage.write_json(storage.join(out, C.BEST_FILE), best)
    load.save(to_saved(task, splits, [model], {best[C.TRIAL_ID]: 1.0}, [best["params"]]), storage.join(out, C.MODEL_DIR, C.BEST_MODEL))
    if not spec.ensemble.enabled:
        return best, None
    t0 = time.perf_counter()
    ensemble = build_ensemble(spec, task, splits, trials, epochs, best, merged)
    ensemble_model = ensemble.pop("model", None)
    if ensemble_model is not None:
        load.save(ensemble_model, storage.join(out, C.MODEL_DIR, C.ENSEMBLE_MODEL))
    else:
        log.warning("ensemble skipped: %s", ensemble["skipped"])
    ensemble["ensemble_seconds"] = time.perf_counter() - t0  # selection, the test score and the saved model
    storage.write_json(storage.join(out, C.ENSEMBLE_FILE), ensemble)
    return best, ensemble
