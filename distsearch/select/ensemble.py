"""Ensembles: greedy forward selection with replacement on validation predictions, and the averaging module.

Caruana, Niculescu-Mizil, Crew and Ksikes, "Ensemble selection from libraries of models" (ICML
2004): start from nothing, and at each round add the candidate (again, if it is already in) whose
addition gives the best validation score of the averaged predictions; keep the prefix of rounds
with the best score. Equal scores are told apart by a second, finer score (the loss). A member added k times of n has weight k / n. Pure torch: no Ray, no files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from ..search.objective import Objective


@dataclass(frozen=True)
class Selection:
    """The outcome of ``select``: a weight per candidate (zeros for those never picked), the
    validation score after each round, and how many rounds the kept prefix has."""

    weights: list[float]
    scores: list[float]
    rounds_kept: int

    @property
    def members(self) -> list[int]:
        """Indices of the candidates with a weight, in candidate order."""
        return [i for i, w in enumerate(self.weights) if w > 0]


def select(
    predictions: Sequence[torch.Tensor],
    score: Callable[[torch.Tensor], float],
    objective: Objective,
    rounds: int,
    tiebreak: Optional[Callable[[torch.Tensor], float]] = None,
    costs: Optional[Sequence[Mapping[str, float]]] = None,
    budget: Optional[Mapping[str, float]] = None,
) -> Selection:
    """Greedy forward selection with replacement over ``predictions`` (one tensor per candidate,
    all of one shape) for ``rounds`` rounds; ``score`` maps averaged predictions to the metric
    that ``objective`` ranks. Equal scores are told apart by ``tiebreak`` (lower is better; the
    validation loss, so that a coarse metric such as accuracy still lets a better-calibrated
    ensemble grow), then the earlier candidate wins, and the shorter prefix.

    With ``costs`` (per candidate, e.g. ``latency_ms``) and ``budget`` (the most of each), a
    candidate is added only while the summed cost of the distinct members stays within the
    budget: an ensemble runs every member. Rounds end early when none fits."""
    if not predictions:
        raise ValueError("select needs at least one candidate")

    def fits(members: set[int]) -> bool:
        return not budget or all(sum(costs[i].get(name, 0.0) for i in members) <= most for name, most in budget.items())

    def key(p: torch.Tensor) -> tuple[float, float]:
        return score(p), tiebreak(p) if tiebreak is not None else 0.0

    def better(a: tuple[float, float], b: Optional[tuple[float, float]]) -> bool:
        if b is None or objective.better(a[0], b[0]):
            return True
        return not objective.better(b[0], a[0]) and a[1] < b[1]

    total = torch.zeros_like(predictions[0])
    picks: list[int] = []
    keys: list[tuple[float, float]] = []
    for n in range(1, rounds + 1):
        best_i, best_k = None, None
        for i, p in enumerate(predictions):
            if not fits(set(picks) | {i}):
                continue
            k = key((total + p) / n)
            if better(k, best_k):
                best_i, best_k = i, k
        if best_i is None:
            break
        picks.append(best_i)
        keys.append(best_k)
        total += predictions[best_i]
    if not picks:
        raise ValueError("no candidate fits the budget on its own")
    best_round = 0  # the first round with the best score: the shortest best prefix
    for r, k in enumerate(keys):
        if better(k, keys[best_round]):
            best_round = r
    kept = best_round + 1
    counts = [picks[:kept].count(i) for i in range(len(predictions))]
    return Selection(weights=[c / kept for c in counts], scores=[k[0] for k in keys], rounds_kept=kept)


class Averaged(nn.Module):
    """Weighted average of its members' predictions; a single member with weight 1 is that model.

    ``kind`` says what a member's outputs become: ``probabilities`` (a softmax over the last
    dimension) or ``values`` (the outputs themselves). Call it on the model's input tensor."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], kind: str):
        super().__init__()
        if kind not in ("probabilities", "values"):
            raise ValueError(f"kind: got {kind!r}; fix: use probabilities or values")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float64))
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for w, model in zip(self.weights, self.members, strict=True):
            out = model(x).double()
            p = torch.softmax(out, dim=-1) if self.kind == "probabilities" else out
            total = w * p if total is None else total + w * p
        return total
