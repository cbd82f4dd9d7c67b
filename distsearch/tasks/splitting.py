"""Rows split into train, validation and test parts, stratified by class, and why a split cannot be made."""

from __future__ import annotations

import math
from typing import Any, Optional


def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float, stratify: Optional[Any] = None):
    """Index arrays (train, val, test) of ``n`` rows, fixed by ``seed``; stratified on ``stratify``
    (one label per row) when given. Raises ``ValueError`` if a class is too small to stratify.

    The very parts scikit-learn's ``train_test_split(test_size=..., random_state=seed,
    stratify=...)`` gives, applied twice (test off all rows, then val off the rest); written
    in NumPy because importing scikit-learn takes longer than a small job's data takes to load.
    ``tests/unit/test_tasks.py`` checks both ways agree, draw for draw."""
    import numpy as np

    idx = np.arange(n)
    strat = None if stratify is None else np.asarray(stratify)
    rest, test = _train_test(idx, test_fraction, seed, strat)
    train, val = _train_test(rest, val_fraction / (1 - test_fraction), seed, None if strat is None else strat[rest])
    return train, val, test


def _train_test(rows, test_size: float, seed: int, labels):
    """``train_test_split(rows, test_size=test_size, random_state=seed, stratify=labels)``."""
    import numpy as np

    n = len(rows)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size={test_size} should be a fraction in (0, 1)")
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    if n_train == 0:
        raise ValueError(f"with {n} rows and test_size={test_size}, the train part would be empty")
    rng = np.random.RandomState(seed)
    if labels is None:
        order = rng.permutation(n)
        return rows[order[n_test : n_test + n_train]], rows[order[:n_test]]
    classes, y_indices, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        raise ValueError(f"the least populated classes have only 1 member: {classes[class_counts < 2].tolist()}")
    if n_train < len(classes) or n_test < len(classes):
        raise ValueError(f"a part of {min(n_train, n_test)} rows cannot hold one of each of {len(classes)} classes")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train, test = [], []
    for i in range(len(classes)):
        mine = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(mine[: n_i[i]])
        test.extend(mine[n_i[i] : n_i[i] + t_i[i]])
    return rows[rng.permutation(train)], rows[rng.permutation(test)]


def _approximate_mode(class_counts, n_draws: int, rng):
    """scikit-learn's ``_approximate_mode``: how many of ``n_draws`` rows each class gets, its
    share rounded down, then one more each to the classes with the largest remainders (ties
    drawn from ``rng``)."""
    import numpy as np

    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


#: How many class names a message lists before it says "and N more".
SHOWN_CLASSES = 5


def _some(names: list[str]) -> str:
    more = len(names) - SHOWN_CLASSES
    return ", ".join(names[:SHOWN_CLASSES]) + (f" and {more} more" if more > 0 else "")


def stratify_problem(labels: Any, val_fraction: float, test_fraction: float, field: str, unit: str = "row(s)") -> Optional[str]:
    """Why ``labels`` (one class per row) cannot be split into stratified train/val/test parts,
    as one "field: cause; fix" line naming at most ``SHOWN_CLASSES`` classes; None when it can."""
    import numpy as np

    labels = np.asarray(labels)
    try:
        split_indices(len(labels), 0, val_fraction, test_fraction, stratify=labels)
        return None
    except ValueError:
        pass
    classes, counts = np.unique(labels.astype(str), return_counts=True)
    n, k = len(labels), len(classes)
    n_test = math.ceil(test_fraction * n)
    n_val = math.ceil(val_fraction / (1 - test_fraction) * (n - n_test))
    for part, size, option in (("test", n_test, "test_fraction"), ("validation", n_val, "val_fraction")):
        if size < k:  # scikit-learn's stratified split puts one of each class in each part
            return (
                f"{field}: {k} classes, but the {part} split holds {size} of the {n} {unit}; a stratified split needs one of each class "
                f"in every part; fix: merge rare classes into fewer (e.g. {_some(list(classes))}), or give more {unit}"
                f" (task_options.{option} cannot exceed 0.4)"
            )
    rare = [str(c) for c in classes[counts == counts.min()]]
    return f"{field}: class(es) {_some(rare)} have only {counts.min()} {unit}; fix: give each class at least 5 {unit}, or drop those"
