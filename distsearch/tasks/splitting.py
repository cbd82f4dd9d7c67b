"""Rows split into train, validation and test parts, stratified by class, and why a split cannot be made."""

from __future__ import annotations

from typing import Any, Optional


def split_indices(n: int, seed: int, val_fraction: float, test_fraction: float, stratify: Optional[Any] = None):
    """Index arrays (train, val, test) of ``n`` rows, fixed by ``seed``; stratified on ``stratify``
    (one label per row) when given. Raises ``ValueError`` if a class is too small to stratify."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    strat = None if stratify is None else np.asarray(stratify)
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=None if strat is None else strat[rest]
    )
    return train, val, test


#: How many class names a message lists before it says "and N more".
SHOWN_CLASSES = 5


def _some(names: list[str]) -> str:
    more = len(names) - SHOWN_CLASSES
    return ", ".join(names[:SHOWN_CLASSES]) + (f" and {more} more" if more > 0 else "")


def stratify_problem(labels: Any, val_fraction: float, test_fraction: float, field: str, unit: str = "row(s)") -> Optional[str]:
    """Why ``labels`` (one class per row) cannot be split into stratified train/val/test parts,
    as one "field: cause; fix" line naming at most ``SHOWN_CLASSES`` classes; None when it can."""
    import math

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
