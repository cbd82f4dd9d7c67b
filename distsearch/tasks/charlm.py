"""``charlm``: character-level language modelling; the metric is validation bits per character.

The default corpus is the English text that ships with Python's standard library
(``pydoc_data.topics``, about 465k characters of the language reference), so nothing downloads.
Options:

- ``corpus``: a UTF-8 text file (local path or URI) to use instead; ``null`` for the default.
- ``seq_len``: characters per training sequence (default 128). The corpus is cut into
  non-overlapping windows of ``seq_len + 1`` characters: inputs are the first ``seq_len``,
  targets the same shifted by one.
- ``val_fraction``, ``test_fraction``: fractions of the windows (default 0.1 each), assigned by
  a permutation fixed by the seed.

The vocabulary is every character of the corpus. Model families: ``gru``, ``lstm`` and
``transformer`` (causal). A bigram model scores about 3.5 bits per character on the default corpus.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .. import models
from .base import SequenceHead, Splits, TaskInputError, check_fractions, check_options, locate

DEFAULTS = {"corpus": None, "seq_len": 128, "val_fraction": 0.1, "test_fraction": 0.1}
MIN_WINDOWS = 20  # fewer leaves a split with a handful of sequences: no honest estimate


def default_corpus() -> str:
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))


def read_corpus(path: str) -> str:
    fs, inner = locate(path, "file", field="task_options.corpus")
    try:
        with fs.open_input_stream(inner) as f:
            raw = f.read()
    except (OSError, ValueError) as e:
        raise TaskInputError([f"task_options.corpus: got {path!r}; cannot read it: {e}"]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TaskInputError([f"task_options.corpus: got {path!r}; not UTF-8 text ({e})"]) from None


class CharEncoder:
    """One text, or texts of one length, as token ids ``(N, T)``; a character the corpus lacks is refused."""

    def __init__(self, vocab: list[str]):
        self.index = {ch: i for i, ch in enumerate(vocab)}

    def __call__(self, texts) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        unknown = sorted({ch for t in texts for ch in t if ch not in self.index})
        if unknown:
            raise ValueError(f"texts: characters {unknown!r} are not in the corpus's vocabulary; fix: remove or replace them")
        return torch.tensor([[self.index[ch] for ch in t] for t in texts], dtype=torch.long)


class CharLMTask(SequenceHead):
    name = "charlm"
    families = ("gru", "lstm", "transformer")
    hyperparameters = models.param_names(families)

    def __init__(self, options: Mapping[str, Any] | None = None):
        self.options, problems = check_options(self.name, options or {}, DEFAULTS)
        problems += check_fractions(self.options)
        seq_len = self.options["seq_len"]
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 2 <= seq_len <= 4096:
            problems.append(f"task_options.seq_len: got {seq_len!r}; use an integer number of characters from 2 to 4096")
        if problems:
            raise TaskInputError(problems)
        corpus = self.options["corpus"]
        text = default_corpus() if corpus is None else read_corpus(str(corpus))
        self.n_windows = len(text) // (seq_len + 1)
        if self.n_windows < MIN_WINDOWS:
            raise TaskInputError(
                [
                    f"task_options.corpus: {len(text):,} characters make {self.n_windows} sequences of seq_len + 1 = {seq_len + 1}; "
                    f"need at least {MIN_WINDOWS}: use a longer text or a smaller task_options.seq_len"
                ]
            )
        self.vocab = sorted(set(text))
        index = {ch: i for i, ch in enumerate(self.vocab)}
        self.tokens = torch.tensor([index[ch] for ch in text], dtype=torch.long)

    def splits(self, seed: int) -> Splits:
        w = self.options["seq_len"] + 1
        windows = self.tokens[: self.n_windows * w].view(self.n_windows, w)
        order = torch.randperm(self.n_windows, generator=torch.Generator().manual_seed(seed))
        n_test = max(1, round(self.options["test_fraction"] * self.n_windows))
        n_val = max(1, round(self.options["val_fraction"] * self.n_windows))
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        pick = lambda i: (windows[i, :-1].contiguous(), windows[i, 1:].contiguous())  # noqa: E731
        return Splits(train=pick(train), val=pick(val), test=pick(test))

    def input_encoder(self) -> "CharEncoder":
        return CharEncoder(self.vocab)

    def model_recipe(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "seq_len": self.options["seq_len"]}

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any]) -> "CharLMTask":
        """What builds its models and encodes text, without a corpus."""
        task = cls.__new__(cls)
        task.vocab, task.options = [str(ch) for ch in recipe["vocab"]], {"seq_len": int(recipe["seq_len"])}
        return task

    def build_model(self, params: Mapping[str, Any], splits: Splits) -> nn.Module:
        return models.build_sequence(params, vocab_size=len(self.vocab), seq_len=self.options["seq_len"])
