"""Predictions of a run's model for inputs on disk: a table, images, or a file of texts.

``distsearch predict RUN INPUT... [--out preds.parquet] [--ensemble | --trial ID]`` reads:

- a ``.csv`` or ``.parquet`` file: a table's rows (its feature columns; others are ignored);
- a folder, or image files: every image under it (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``,
  ``.webp``), in sorted order;
- a ``.txt`` file: one text per line.

Each input gets a row: ``input`` (the row number, file path or text), ``prediction`` (the class
name, or the value in the target's units), and for classification one ``p_<class>`` column of
probability per class. Inputs are bounded: at most ``MAX_INPUT_BYTES`` read from any one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..storage import write_bytes
from .load import load_model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TABLE_SUFFIXES = (".csv", ".parquet")
#: The most bytes read from one input file (a table, a text file).
MAX_INPUT_BYTES = 2**30
#: Rows predicted at once, so that memory stays bounded whatever the input's length.
BATCH_ROWS = 512


class BadInput(UserError):
    """An input that is not a table, images or texts."""


def read_inputs(paths: Sequence[str]) -> tuple[Any, list]:
    """The raw inputs the model's encoder takes, and what names each in the output."""
    files = [Path(p) for p in paths]
    for f in files:
        if not f.exists():
            raise BadInput(f"{f}: no such file or folder; fix: give a table (.csv, .parquet), a folder of images, images, or a .txt of texts")
        if f.is_file() and f.stat().st_size > MAX_INPUT_BYTES:
            raise BadInput(f"{f}: {f.stat().st_size} bytes, more than {MAX_INPUT_BYTES}; fix: split it")
    if len(files) == 1 and files[0].suffix.lower() in TABLE_SUFFIXES:
        table = pd.read_csv(files[0]) if files[0].suffix.lower() == ".csv" else pd.read_parquet(files[0])
        return table, list(range(len(table)))
    if len(files) == 1 and files[0].suffix.lower() == ".txt":
        texts = [line for line in files[0].read_text(encoding="utf-8").splitlines() if line.strip()]
        return texts, texts
    images = sorted(str(p) for f in files for p in ([f] if f.is_file() else f.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise BadInput(
            f"{', '.join(map(str, files))}: neither one table (.csv, .parquet), one .txt of texts, nor images ({', '.join(IMAGE_SUFFIXES)}); "
            "fix: give one of those"
        )
    return images, images


def predict(run: str, paths: Sequence[str], out: Optional[str] = None, ensemble: bool = False, trial: Optional[str] = None) -> pd.DataFrame:
    """The model's predictions for ``paths`` (see the module docstring), written to ``out`` as Parquet when given."""
    model = load_model(run, ensemble=ensemble, trial=trial)
    raw, names = read_inputs(paths)
    parts = []
    for start in range(0, len(names), BATCH_ROWS):
        chunk = raw.iloc[start : start + BATCH_ROWS] if isinstance(raw, pd.DataFrame) else raw[start : start + BATCH_ROWS]
        proba = model.predict_proba(chunk)
        part = pd.DataFrame({"input": names[start : start + BATCH_ROWS]})
        if model.class_names is not None:
            part["prediction"] = [model.class_names[i] for i in np.asarray(proba).argmax(-1)]
            for i, name in enumerate(model.class_names):
                part[f"p_{name}"] = np.asarray(proba)[:, i]
        else:
            part["prediction"] = model.predict(chunk)
        parts.append(part)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"input": [], "prediction": []})
    if out:
        import io

        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        write_bytes(out, buffer.getvalue())  # atomic: a reader never sees half a file
    return df
