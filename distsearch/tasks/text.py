"""``text``: classification or regression of labelled text with Hugging Face Transformers models.

Needs the ``text`` extra (``pip install 'distsearch[text]'``). Options:

- ``path`` (required): a Parquet or CSV file (local path or URI), one text per row.
- ``text_column`` (default ``text``), ``label_column`` (default ``label``): the columns to read.
  Rows missing either are dropped, and counted in the log.
- ``problem``: ``classification``, ``regression`` or ``auto`` (default; as the tabular task decides).
- ``val_fraction``, ``test_fraction``: fractions of all rows (default 0.15 each); splits are
  fixed by the seed and stratified for classification.
- ``max_tokens``: tokens kept per text when it is tokenised (default 128); a trial's
  ``max_length`` (at most this) cuts them further, so one tokenisation serves every trial.
- ``vocab_size``: the size of the ``encoder`` family's word-level tokenizer, trained on the
  training split's texts (default 8000).
- ``cache_dir``: where token tensors are kept, keyed by the texts, the tokenizer and
  ``max_tokens``, so that a later run of the same data skips tokenising (default
  ``$XDG_CACHE_HOME/distsearch/tokens``; null: no cache).

Model families: ``hf``, a pretrained ``AutoModelForSequenceClassification`` checkpoint with its
own tokenizer, named by ``model.checkpoint`` (a directory saved with ``save_pretrained``, or a
hub id); a checkpoint may also be a value of ``model`` itself (``model: {choice: [dir-a, dir-b]}``).
And ``encoder``, a BERT encoder built from a config (``depth``, ``width``, ``heads``, ``dropout``)
for when no checkpoint is at hand. Besides the recipe (``lr``, ``weight_decay``,
``warmup_fraction``, ``batch_size``...), trials tune ``max_length`` and ``freeze_epochs`` (epochs
in which an ``hf`` encoder is frozen and only the new head trains).

Each text is tokenised once per tokenizer, on the driver, before any trial; no network is used
for a checkpoint on disk, and a hub id must be in the local cache when ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .. import models
from ..space import domains
from ..space.params import Param
from .base import (
    ClassificationHead,
    RegressionHead,
    Splits,
    TaskInputError,
    check_fractions,
    check_options,
    check_whole_numbers,
    family_values,
    require_extra,
)
from .splitting import split_indices, stratify_problem
from .tabular import infer_problem, read_table
from .text_tokens import CHARS_PER_TOKEN, TextEncoder, max_chars, tokenise, tokenizer_from_json, tokenizer_json

log = logging.getLogger("distsearch")

DEFAULTS = {
    "text_column": "text",
    "label_column": "label",
    "problem": "auto",
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    "max_tokens": 128,
    "vocab_size": 8000,
    "trust_remote_code": False,
    "cache_dir": os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "distsearch", "tokens"),
}
REQUIRED = ("path",)
FAMILIES = ("hf", "encoder")
ENCODER = "encoder"  # the tokenizer key of the encoder family's own tokenizer


def checkpoints_in(space: Mapping[str, Param]) -> tuple[list[str], bool]:
    """The checkpoints a space names (in order) and whether it has the ``encoder`` family."""
    p = space.get(models.FAMILY_PARAM)
    if p is not None and p.sub_spaces():
        return [str(v) for v in family_values(space, "hf", "checkpoint")] if "hf" in p.sub_spaces() else [], ENCODER in p.sub_spaces()
    values = (p.listed() if p is not None else []) or [ENCODER]
    return [str(v) for v in values if v not in FAMILIES], ENCODER in values


class _Text:
    name = "text"
    families = FAMILIES
    hyperparameters = models.param_names(FAMILIES) | {"max_length", "freeze_epochs"}
    mixed_precision = True

    def __init__(self, options: Mapping[str, Any], texts: list[str], labels: np.ndarray):
        self.options, self.texts, self.y_raw = dict(options), texts, labels
        self.max_tokens = int(options["max_tokens"])
        self.param_domains = {"max_length": domains.Number(True, 1, self.max_tokens), "freeze_epochs": domains.Number(True, 0)}
        self.checkpoints: list[str] = []
        self.uses_encoder = True
        self.tokenizers: dict[str, Any] = {}
        self.located: dict[str, str] = {}  # checkpoint as the space names it -> where a worker loads it from
        self.configs: dict[str, dict] = {}  # set by from_recipe only: each checkpoint's config, to build it empty
        self.trust_remote_code = bool(options.get("trust_remote_code", False))
        self._splits: dict[int, Splits] = {}

    def __getstate__(self):
        # Workers get the splits through the object store beside the task: no second copy here.
        return {**self.__dict__, "_splits": {}}

    @staticmethod
    def family_of(value: Any) -> str:
        return str(value) if value in FAMILIES else "hf"

    def use_space(self, space: Mapping[str, Param]) -> None:
        """Load and check each checkpoint's config and tokenizer before any trial."""
        from . import text_models

        self.checkpoints, self.uses_encoder = checkpoints_in(space)
        problems = []
        for ckpt in self.checkpoints:
            where = f"space.model: checkpoint {ckpt!r}"
            if text_models.is_local(ckpt) and not Path(ckpt).expanduser().joinpath("config.json").is_file():
                problems.append(f"{where} is a directory without config.json; fix: give a directory saved with save_pretrained")
                continue
            try:
                config = text_models.load_config(ckpt, self.trust_remote_code)
                tokenizer = text_models.load_tokenizer(ckpt, self.trust_remote_code)
            except Exception as e:  # noqa: BLE001 - Transformers' own error says what was missing
                if "trust_remote_code" in str(e):
                    problems.append(
                        f"{where} ships its own Python code (auto_map in its config), which distsearch does not run; fix: use a checkpoint "
                        "of a built-in Transformers architecture, or, having read that code, set task_options.trust_remote_code: true"
                    )
                    continue
                if text_models.is_local(ckpt):
                    hint = "its files are incomplete"
                elif text_models.offline():
                    hint = "it is not a directory, and HF_HUB_OFFLINE is set, so it must be in the local Hugging Face cache"
                else:
                    hint = "it is not a directory, and the Hugging Face Hub could not supply it"
                problems.append(
                    f"{where} cannot be loaded: {type(e).__name__}: {str(e).splitlines()[0]}; {hint}; "
                    "fix: on a machine with network access, save the model and its tokenizer with save_pretrained and give that directory"
                )
                continue
            why = text_models.mismatch(tokenizer, config, self.max_tokens)
            if why:
                problems.append(
                    f"{where}: {why}; fix: give the checkpoint its own tokenizer (save both with save_pretrained), or lower task_options.max_tokens"
                )
            elif text_models.is_local(ckpt):  # a hub id's files are Transformers' to fetch and check
                why = text_models.weight_problems(ckpt, config, self.out_features)
                if why:
                    problems.append(f"{where}: {why}")
            self.tokenizers[ckpt] = tokenizer
            self.located[ckpt] = text_models.located(ckpt)
        if problems:
            raise TaskInputError(problems)

    def splits(self, seed: int) -> Splits:
        if seed not in self._splits:
            parts = split_indices(len(self.texts), seed, self.options["val_fraction"], self.options["test_fraction"], stratify=self._stratify())
            y = self._targets(parts[0])
            x = self._tokens(seed, parts[0])
            self._splits[seed] = Splits(*((x[torch.as_tensor(i)], y[torch.as_tensor(i)]) for i in parts))
        return self._splits[seed]

    def _tokens(self, seed: int, train_rows) -> torch.Tensor:
        """Every text tokenised by every tokenizer the space needs: ``(N, K, 2, max_tokens)``."""
        from . import text_models

        if self.uses_encoder:
            self.tokenizers[ENCODER] = text_models.train_tokenizer((self.texts[i] for i in train_rows), int(self.options["vocab_size"]))
        t0 = time.perf_counter()
        keys = self.tokenizer_keys()
        digest = hashlib.sha256()
        for t in self.texts:
            digest.update(t.encode("utf-8", "surrogatepass") + b"\0")
        x = torch.stack([self._cached(self.tokenizers[k], digest.hexdigest()) for k in keys], dim=1)
        log.info("text: %d texts tokenised by %d tokenizer(s) in %.2f s (seed %d)", len(self.texts), len(keys), time.perf_counter() - t0, seed)
        return x

    def tokenizer_keys(self) -> list[str]:
        return list(self.checkpoints) + ([ENCODER] if self.uses_encoder else [])

    def _cached(self, tokenizer, texts_digest: str) -> torch.Tensor:
        """``tokenizer``'s tokens of every text, from ``cache_dir`` when an earlier run left them."""
        cache = self.options["cache_dir"]
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if cache is None or backend is None:
            return tokenise(tokenizer, self.texts, self.max_tokens)
        key = hashlib.sha256(f"{self.max_tokens}\0{backend.to_str()}\0{texts_digest}".encode()).hexdigest()
        path = Path(cache).expanduser() / f"{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        tokens = tokenise(tokenizer, self.texts, self.max_tokens)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(tokens, tmp)
        os.replace(tmp, path)  # atomic: a concurrent run reads the whole file or none
        return tokens

    def input_encoder(self) -> TextEncoder:
        return TextEncoder([self.tokenizers[k] for k in self.tokenizer_keys()], self.max_tokens)

    def model_recipe(self) -> dict[str, Any]:
        """The tokenizers as their own JSON and each checkpoint's config: what rebuilds the models
        (``from_recipe``) with no checkpoint folder and no code from one."""
        from . import text_models

        return {
            "problem": "classification" if isinstance(self, TextClassification) else "regression",
            "class_names": getattr(self, "class_names", None),
            "out_features": int(self.out_features),
            "max_tokens": self.max_tokens,
            "checkpoints": list(self.checkpoints),
            "uses_encoder": self.uses_encoder,
            "tokenizers": {k: tokenizer_json(self.tokenizers[k]) for k in self.tokenizer_keys()},
            "configs": {c: text_models.load_config(self.located.get(c, c), self.trust_remote_code).to_dict() for c in self.checkpoints},
        }

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> "_Text":

        kind = {"classification": TextClassification, "regression": TextRegression}[recipe["problem"]]
        task = kind.__new__(kind)
        task.max_tokens, task.out_features = int(recipe["max_tokens"]), int(recipe["out_features"])
        task.checkpoints, task.uses_encoder = [str(c) for c in recipe["checkpoints"]], bool(recipe["uses_encoder"])
        task.tokenizers = {k: tokenizer_from_json(v) for k, v in recipe["tokenizers"].items()}
        task.configs, task.located, task.trust_remote_code = dict(recipe["configs"]), {}, False
        if recipe["problem"] == "classification":
            task.class_names = [str(c) for c in recipe["class_names"]]
            task.classes, task.num_classes = np.array(task.class_names), task.out_features
        return task

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module:
        from . import text_models

        family = self.family_of(params.get(models.FAMILY_PARAM, ENCODER))
        max_length = int(params.get("max_length", self.max_tokens))
        keys = self.tokenizer_keys()
        if family == ENCODER:
            tok = self.tokenizers[ENCODER]
            net = text_models.encoder(
                len(tok), self.max_tokens, self.out_features,
                depth=int(models.family_param(params, "depth", 2)), width=int(models.family_param(params, "width", 128)),
                heads=int(models.family_param(params, "heads", 4)), dropout=float(models.family_param(params, "dropout", 0.1)),
                pad_token_id=tok.pad_token_id,
            )  # fmt: skip
            return text_models.TextModel(net, keys.index(ENCODER), max_length)
        ckpt = str(params[models.FAMILY_PARAM]) if params[models.FAMILY_PARAM] != "hf" else models.family_param(params, "checkpoint", None)
        if ckpt not in self.tokenizers:
            raise ValueError(
                f"model.checkpoint: got {ckpt!r}, which the job's space does not name; fix: give the hf family a checkpoint from the space"
            )
        pad = self.tokenizers[ckpt].pad_token_id
        if self.configs:  # rebuilt from a saved model's recipe: its weights come next
            net = text_models.from_config(self.configs[ckpt], self.out_features, pad)
        else:
            net = text_models.pretrained(self.located.get(ckpt, ckpt), self.out_features, pad, self.trust_remote_code)
        return text_models.TextModel(net, keys.index(ckpt), max_length, int(params.get("freeze_epochs", 0)))


class TextClassification(ClassificationHead, _Text):
    def __init__(self, options, texts, labels):
        _Text.__init__(self, options, texts, labels)
        self.classes = np.unique(labels.astype(str))
        self.num_classes = self.out_features = len(self.classes)
        self.class_names = [str(c) for c in self.classes]
        self.labels = np.searchsorted(self.classes, labels.astype(str))

    def _stratify(self):
        return self.labels

    def _targets(self, train_rows) -> torch.Tensor:
        return torch.tensor(self.labels, dtype=torch.long)


class TextRegression(RegressionHead, _Text):
    out_features = 1

    def _stratify(self):
        return None

    def _targets(self, train_rows) -> torch.Tensor:
        y = self.y_raw.astype(float)
        mean, std = y[train_rows].mean(), y[train_rows].std()
        self.target_scale, self.target_mean = float(std) if std > 0 else 1.0, float(mean)
        return torch.tensor((y - mean) / self.target_scale, dtype=torch.float32)


def _option_problems(opts: Mapping[str, Any]) -> list[str]:
    problems = check_fractions(opts) + check_whole_numbers(opts, (("max_tokens", 8, 8192), ("vocab_size", 100, 1_000_000)))
    for key in ("text_column", "label_column"):
        if not isinstance(opts[key], str):
            problems.append(f"task_options.{key}: got {opts[key]!r}; fix: name one column, e.g. {key}: {DEFAULTS[key]}")
    if opts["problem"] not in ("auto", "classification", "regression"):
        problems.append(f"task_options.problem: got {opts['problem']!r}; fix: use auto, classification or regression")
    if not isinstance(opts["trust_remote_code"], bool):
        problems.append(
            f"task_options.trust_remote_code: got {opts['trust_remote_code']!r}; fix: true or false (false unless you have read the checkpoints' code)"
        )
    if opts["cache_dir"] is not None and not isinstance(opts["cache_dir"], str):
        problems.append(f"task_options.cache_dir: got {opts['cache_dir']!r}; fix: give a directory, or null for no cache")
    return problems


def make(options: Mapping[str, Any]) -> _Text:
    """A text task for ``options``; reads the file and raises ``TaskInputError`` on bad input."""
    import pandas as pd

    require_extra("text", "transformers", "tokenizers")
    opts, problems = check_options("text", options, DEFAULTS, REQUIRED)
    problems += [] if problems else _option_problems(opts)
    if problems:
        raise TaskInputError(problems)
    frame = read_table(opts["path"])
    text_col, label_col = opts["text_column"], opts["label_column"]
    missing = [
        f"task_options.{k}: got {c!r}; {opts['path']} has no such column"
        for k, c in (("text_column", text_col), ("label_column", label_col))
        if c not in frame.columns
    ]
    if missing:
        raise TaskInputError([f"{m}; its columns are {', '.join(map(str, frame.columns))}; fix: name one of those" for m in missing])
    kept = frame[frame[text_col].notna() & frame[label_col].notna()]
    if len(kept) < len(frame):
        log.warning("text: %d row(s) of %s have no %r or no %r and are left out", len(frame) - len(kept), opts["path"], text_col, label_col)
    y = kept[label_col]
    if y.nunique() < 2:
        held = "no rows with both columns" if y.empty else f"{y.iloc[0]!r} in every row"
        raise TaskInputError([f"task_options.label_column: column {label_col!r} holds {held}; fix: give at least two distinct labels"])
    problem = infer_problem(y) if opts["problem"] == "auto" else opts["problem"]
    if problem == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise TaskInputError(
            [f"task_options.problem: got regression for column {label_col!r} of type {y.dtype}; fix: use classification or a numeric label"]
        )
    limit = max_chars(opts["max_tokens"])
    long = int((kept[text_col].astype(str).str.len() > limit).sum())
    if long:
        log.info("text: %d text(s) longer than %d characters are cut there (max_tokens x %d) before tokenising", long, limit, CHARS_PER_TOKEN)
    texts = [str(t)[:limit] for t in kept[text_col]]
    cls = TextClassification if problem == "classification" else TextRegression
    task = cls(opts, texts, y.to_numpy())
    if problem == "classification":
        why = stratify_problem(task.classes[task.labels], opts["val_fraction"], opts["test_fraction"], f"task_options.label_column ({label_col!r})")
        if why:
            raise TaskInputError([why])
    return task
