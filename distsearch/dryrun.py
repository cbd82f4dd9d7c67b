"""The dry run: each model family in the space built once, and one small batch taken through its
forward pass, the loss and backward, on CPU, before Ray starts.

A shape bug in a model (a custom family's wrong input width, a head with too few outputs) would
otherwise fail every trial of the sweep, one after another, on the cluster.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .params import Choice, Conditional, Fixed, Param, RandInt, Uniform
from .space import OPTION_KEY, flatten
from .tasks.base import batches

#: Rows in the dry run's batch.
BATCH_ROWS = 4


def _first(p: Param) -> Any:
    """One value ``p`` can take: a constant, the first option, a distribution's low end."""
    if isinstance(p, Fixed):
        return p.value
    if isinstance(p, Choice):
        return p.values[0]
    if isinstance(p, (Uniform, RandInt)):
        return p.low
    raise TypeError(type(p).__name__)


def configs(space: Mapping[str, Param]) -> list[dict[str, Any]]:
    """One flat config per option of the top-level ``model`` choice (or one, without it): every
    other parameter at its first value, each option's sub-space at its first values."""
    base = {name: _first(p) for name, p in space.items() if not isinstance(p, Conditional)}
    conditional = {name: p for name, p in space.items() if isinstance(p, Conditional)}
    chosen = {name: next(iter(p.options)) for name, p in conditional.items()}
    out = []
    for option in conditional["model"].options if "model" in conditional else [None]:
        config = dict(base)
        for name, p in conditional.items():
            picked = option if name == "model" else chosen[name]
            config[name] = {OPTION_KEY: picked, **{k: _first(v) for k, v in p.options[picked].items()}}
        out.append(flatten(config))
    if "model" not in conditional and isinstance(space.get("model"), Choice):
        out = [{**out[0], "model": v} for v in space["model"].values]
    return out


def dry_run(task: Any, space: Mapping[str, Param], seed: int) -> list[str]:
    """One problem line per model family that fails to build, to run forward on a small batch of
    the training split, to give a finite loss, or to run backward."""
    splits = task.splits(seed)
    problems = []
    for params in configs(space):
        x, y = next(batches(task, splits.train, torch.arange(min(BATCH_ROWS, len(splits.train[1]))), BATCH_ROWS, params, train=True))
        family = params.get("model", "the model")
        torch.manual_seed(seed)
        try:
            model = task.build_model(params, splits)
            model.train()
            loss = task.loss(model(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss of an untrained model is {float(loss)}")
            loss.backward()
        except Exception as e:  # noqa: BLE001 - the user's model code: its error is the message
            problems.append(
                f"space.model: family {family!r} fails a dry run (build, forward on {BATCH_ROWS} training rows, loss, backward) "
                f"with {params}: {type(e).__name__}: {e}; fix: mend the model or the parameters, or skip the dry run (--no-dry-run)"
            )
    return problems
