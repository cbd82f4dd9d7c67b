"""``tabular``: any Parquet or CSV file (local path or URI) with a named target column.

Options:

- ``path`` (required): a ``.parquet``/``.pq`` or ``.csv`` file, local (relative to the current
  directory) or a URI pyarrow opens (``s3://``, ``gs://``, ``file://``).
- ``target`` (required): the column to predict. Rows whose target is missing are dropped, and
  counted in the log; integer labels that a missing value made float stay class labels.
- ``problem``: ``classification``, ``regression`` or ``auto`` (default). ``auto`` picks
  classification for a string, boolean or categorical target, or an integer target with at
  most ``MAX_AUTO_CLASSES`` distinct values; regression otherwise.
- ``val_fraction``, ``test_fraction``: fractions of all rows (default 0.15 each); splits are
  fixed by the seed and stratified for classification.

Features: numeric columns are standardised with the training split's mean and standard
deviation (missing values become that mean); every other column is one-hot encoded with the
categories seen in the training split (an unseen category encodes as all zeros). A regression
target is standardised the same way, and RMSE is reported in its own units. Model family: ``mlp``
(``depth: 0`` is a linear model).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .. import models
from .base import ClassificationHead, RegressionHead, Splits, TaskInputError, check_fractions, check_options, locate
from .splitting import split_indices, stratify_problem

log = logging.getLogger("distsearch")

DEFAULTS = {"problem": "auto", "val_fraction": 0.15, "test_fraction": 0.15}
REQUIRED = ("path", "target")
MAX_AUTO_CLASSES = 20
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def read_table(path: str):
    """The file at ``path`` as a pandas DataFrame; raises ``TaskInputError`` naming the problem."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = next((s for s in FORMATS if str(path).lower().endswith(s)), None)
    if suffix is None:
        raise TaskInputError([f"task_options.path: got {path!r}; give a file ending in {', '.join(FORMATS)}"])
    fs, inner = locate(path, "file")
    try:
        if FORMATS[suffix] == "parquet":
            table = pq.read_table(inner, filesystem=fs)
        else:
            with fs.open_input_stream(inner) as f:
                table = pacsv.read_csv(f)
    except Exception as e:  # noqa: BLE001 - any parse failure is the file's fault, reported as such
        raise TaskInputError([f"task_options.path: got {path!r}; cannot read it as {FORMATS[suffix]}: {e}"]) from None
    problems = _binary_problems(table, path)
    if problems:
        raise TaskInputError(problems)
    return table.to_pandas()


def _binary_problems(table, path: str) -> list[str]:
    """A line per column that holds bytes, not text: pyarrow reads a CSV column with any byte
    that is not UTF-8 as binary, and pandas would turn each cell into the text ``"b'...'"``."""
    import pyarrow as pa

    problems = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            continue
        for row, value in enumerate(column.to_pylist(), start=1):
            try:
                (value or b"").decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(
                    f"task_options.path: {path}, column {name!r}, data row {row}: byte 0x{value[e.start]:02x} at offset {e.start} is not UTF-8; "
                    "fix: save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 in.csv > out.csv)"
                )
                break
        else:
            problems.append(f"task_options.path: {path}, column {name!r} holds bytes, not text; fix: store it as UTF-8 strings")
    return problems


class TableEncoder:
    """Features as the model takes them: each numeric column standardised with the training
    split's mean and standard deviation (a missing value becomes the mean), each other column
    one-hot over the training split's categories. Plain data, so it pickles into a saved model."""

    def __init__(self, features: list[str], numeric: list[str], encoding: list[tuple]):
        self.features, self.numeric, self.encoding = features, numeric, encoding

    @classmethod
    def fit(cls, features: list[str], numeric: list[str], columns: Mapping[str, np.ndarray]) -> "TableEncoder":
        encoding = []
        for c in features:
            col = columns[c]
            if c in numeric:
                finite = np.isfinite(col).any()
                mean, std = (float(np.nanmean(col)), float(np.nanstd(col))) if finite else (0.0, 0.0)
                encoding.append(("num", mean, std if std > 0 else 1.0))
            else:
                encoding.append(("cat", np.unique(col)))
        return cls(features, numeric, encoding)

    def matrix(self, columns: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        blocks = []
        for c, enc in zip(self.features, self.encoding, strict=True):
            col = columns[c]
            if enc[0] == "num":
                filled = np.where(np.isnan(col), enc[1], col)
                blocks.append(((filled - enc[1]) / enc[2])[:, None])
            else:
                blocks.append((col[:, None] == enc[1][None, :]).astype(float))
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((n_rows, 0))

    def __call__(self, frame) -> torch.Tensor:
        """New rows (a DataFrame with the feature columns; others are ignored) as the model's input."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ValueError(f"rows: columns {', '.join(missing)} are missing; fix: give every feature column: {', '.join(self.features)}")
        columns = {c: (frame[c].to_numpy(dtype=float) if c in self.numeric else frame[c].astype(str).to_numpy()) for c in self.features}
        return torch.tensor(self.matrix(columns, len(frame)), dtype=torch.float32)

    def to_json(self) -> dict[str, Any]:
        encoding = [["num", e[1], e[2]] if e[0] == "num" else ["cat", [str(v) for v in e[1]]] for e in self.encoding]
        return {"features": list(self.features), "numeric": list(self.numeric), "encoding": encoding}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TableEncoder":
        encoding = [
            ("num", float(e[1]), float(e[2])) if e[0] == "num" else ("cat", np.array([str(v) for v in e[1]], dtype=object)) for e in d["encoding"]
        ]
        return cls([str(f) for f in d["features"]], [str(f) for f in d["numeric"]], encoding)


class _Tabular:
    name = "tabular"
    families = ("mlp",)
    hyperparameters = models.param_names(families)

    def __init__(self, options: Mapping[str, Any], frame, problem: str):
        import pandas as pd

        self.options = dict(options)
        self.problem = problem
        target = options["target"]
        self.dropped_rows = int(frame[target].isna().sum())
        frame = frame[frame[target].notna()].reset_index(drop=True)
        self.features = [c for c in frame.columns if c != target]
        self.numeric = [c for c in self.features if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
        # Plain arrays, not a DataFrame: the task is pickled to workers that need not import pandas.
        self.columns = {c: (frame[c].to_numpy(dtype=float) if c in self.numeric else frame[c].astype(str).to_numpy()) for c in self.features}
        self.y_raw = frame[target].to_numpy()
        self.n_rows = len(frame)

    def encode(self, rows) -> np.ndarray:
        """Feature matrix for all rows, with statistics and categories from ``rows`` only; the
        encoder is kept for ``input_encoder``."""
        self.encoder = TableEncoder.fit(self.features, self.numeric, {c: self.columns[c][rows] for c in self.features})
        return self.encoder.matrix(self.columns, self.n_rows)

    def input_encoder(self) -> "TableEncoder":
        return self.encoder

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module:
        return models.build(params, in_features=splits.train[0].shape[1], out_features=self.out_features)

    def model_recipe(self) -> dict[str, Any]:
        return {
            "problem": self.problem,
            "out_features": int(self.out_features),
            "class_names": getattr(self, "class_names", None),
            "encoder": self.encoder.to_json(),
        }


def from_recipe(recipe: Mapping[str, Any]) -> _Tabular:
    """What builds a tabular task's models and encodes its rows, without the table."""
    cls = {"classification": TabularClassification, "regression": TabularRegression}[recipe["problem"]]
    task = cls.__new__(cls)
    task.problem, task.out_features, task.encoder = recipe["problem"], int(recipe["out_features"]), TableEncoder.from_json(recipe["encoder"])
    if recipe["problem"] == "classification":
        task.class_names = [str(c) for c in recipe["class_names"]]
        task.classes, task.num_classes = np.array(task.class_names, dtype=object), task.out_features
    return task


class TabularClassification(ClassificationHead, _Tabular):
    def __init__(self, options, frame):
        _Tabular.__init__(self, options, frame, "classification")
        if self.y_raw.dtype.kind == "f":  # integer labels read as float because of a missing value
            self.y_raw = self.y_raw.astype(np.int64)
        self.classes = np.unique(self.y_raw.astype(str))
        self.num_classes = self.out_features = len(self.classes)
        self.class_names = [str(c) for c in self.classes]
        self.labels = np.searchsorted(self.classes, self.y_raw.astype(str))

    def splits(self, seed: int) -> Splits:
        parts = split_indices(self.n_rows, seed, self.options["val_fraction"], self.options["test_fraction"], stratify=self.labels)
        x = torch.tensor(self.encode(parts[0]), dtype=torch.float32)
        y = torch.tensor(self.labels, dtype=torch.long)
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)


class TabularRegression(RegressionHead, _Tabular):
    out_features = 1

    def __init__(self, options, frame):
        _Tabular.__init__(self, options, frame, "regression")
        self.y_raw = self.y_raw.astype(float)

    def splits(self, seed: int) -> Splits:
        parts = split_indices(self.n_rows, seed, self.options["val_fraction"], self.options["test_fraction"])
        x = torch.tensor(self.encode(parts[0]), dtype=torch.float32)
        mean, std = self.y_raw[parts[0]].mean(), self.y_raw[parts[0]].std()
        # RMSE is reported in the target's units; set per split call, as the training rows decide it.
        self.target_scale, self.target_mean = float(std) if std > 0 else 1.0, float(mean)
        y = torch.tensor((self.y_raw - mean) / self.target_scale, dtype=torch.float32)
        tr, va, te = ((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts)
        return Splits(train=tr, val=va, test=te)


def integral(column) -> bool:
    """Whether a numeric column's values are all whole numbers: integer labels that a missing
    value made float still count as integers."""
    import pandas as pd

    if pd.api.types.is_integer_dtype(column):
        return True
    values = column.dropna().to_numpy(dtype=float)
    return pd.api.types.is_float_dtype(column) and bool(np.isfinite(values).all() and (values == np.round(values)).all())


def infer_problem(column) -> str:
    """``classification`` or ``regression`` for a target column, by the rule in the module doc."""
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return "classification"
    if integral(column) and column.nunique() <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


def table_problems(frame, path: str, target: str) -> list[str]:
    """What makes a table unusable before any trial sees it: duplicate columns, infinite cells."""
    import pandas as pd

    problems = []
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        problems.append(f"task_options.path: {path} has the column(s) {', '.join(duplicated)} more than once; fix: give each column one name")
        return problems
    for c in frame.columns:
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            bad = int(np.isinf(col.to_numpy(dtype=float, na_value=np.nan)).sum())
            if bad:
                problems.append(
                    f"task_options.path: column {c!r} of {path} holds {bad} infinite value(s); fix: replace them with a number, "
                    f"or leave the cells empty (a missing feature becomes the training mean; a row without a target is dropped)"
                )
    return problems


def make(options: Mapping[str, Any]):
    """A tabular task for ``options``; reads the file and raises ``TaskInputError`` on bad input."""
    import pandas as pd

    opts, problems = check_options("tabular", options, DEFAULTS, REQUIRED)
    problems += check_fractions(opts)
    if opts["problem"] not in ("auto", "classification", "regression"):
        problems.append(f"task_options.problem: got {opts['problem']!r}; use auto, classification or regression")
    if problems:
        raise TaskInputError(problems)
    target = opts["target"]
    if not isinstance(target, str):
        raise TaskInputError([f"task_options.target: got {target!r}; fix: name one column, e.g. target: label"])
    frame = read_table(opts["path"])
    problems = table_problems(frame, opts["path"], target)
    if problems:
        raise TaskInputError(problems)
    if target not in frame.columns:
        raise TaskInputError(
            [f"task_options.target: got {target!r}; {opts['path']} has no such column; its columns are {', '.join(map(str, frame.columns))}"]
        )
    y = frame[target].dropna()
    if y.nunique() < 2:
        shown = repr(y.iloc[0]) if len(y) else "nothing (every value is missing)"
        raise TaskInputError([f"task_options.target: column {target!r} holds {shown} in every row; a constant target has nothing to learn"])
    problem = infer_problem(y) if opts["problem"] == "auto" else opts["problem"]
    if problem == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise TaskInputError(
            [f"task_options.problem: got regression for column {target!r} of type {y.dtype}; use classification or a numeric target"]
        )
    task = TabularClassification(opts, frame) if problem == "classification" else TabularRegression(opts, frame)
    if task.dropped_rows:
        log.warning("tabular: %d row(s) of %s have no %r and are left out", task.dropped_rows, opts["path"], target)
    if problem == "classification":
        why = stratify_problem(task.classes[task.labels], opts["val_fraction"], opts["test_fraction"], f"task_options.target ({target!r})")
        if why:
            raise TaskInputError([why])
    return task
