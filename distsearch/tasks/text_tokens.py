"""Texts as token tensors: the text task's encoder, the bound on a text's length, and tokenizers saved as JSON."""

from __future__ import annotations

from typing import Any

import torch

from .vision_import import ensure_importable

#: Characters kept per token of ``max_tokens``: each text is cut at ``max_tokens`` times this
#: before tokenising, so that one huge cell costs what a long text does. Past it, a text's tokens
#: would be cut by ``max_tokens`` anyway unless its average token is longer than this.
CHARS_PER_TOKEN = 32


def max_chars(max_tokens: int) -> int:
    return int(max_tokens) * CHARS_PER_TOKEN


class TextEncoder:
    """Texts as the models take them: each tokenizer's ids and mask, padded to ``max_tokens``."""

    def __init__(self, tokenizers: list, max_tokens: int):
        self.tokenizers, self.max_tokens = tokenizers, max_tokens

    def __call__(self, texts) -> torch.Tensor:
        limit = max_chars(self.max_tokens)
        texts = [texts[:limit]] if isinstance(texts, str) else [str(t)[:limit] for t in texts]
        return torch.stack([tokenise(tok, texts, self.max_tokens) for tok in self.tokenizers], dim=1)


def tokenise(tokenizer, texts: list[str], max_tokens: int) -> torch.Tensor:
    enc = tokenizer(texts, truncation=True, max_length=max_tokens, padding="max_length", return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).to(torch.int32)


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    """A fast tokenizer as plain JSON: the ``tokenizers`` library's own serialisation and the
    special tokens; ``tokenizer_from_json`` rebuilds it without reading files or running code."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer, so it cannot be saved as JSON; fix: use a checkpoint with a tokenizer.json"
        )
    special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return {"tokenizer": backend.to_str(), "special_tokens": special}


def tokenizer_from_json(saved: dict[str, Any]):
    ensure_importable()
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    special = {str(k): str(v) for k, v in saved["special_tokens"].items() if k in SPECIAL_TOKEN_ATTRIBUTES}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(saved["tokenizer"]), **special)


SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
