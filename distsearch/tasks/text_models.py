"""Text models from Hugging Face Transformers, fed from the text task's token tensor.

The text task tokenises each text once per tokenizer and stacks the results: a model's input is
``(N, K, 2, L)`` integers, ``[:, k, 0]`` the ids and ``[:, k, 1]`` the attention mask of tokenizer
``k``. ``TextModel`` picks its own tokenizer's slice, cuts it to the trial's ``max_length`` and
to the longest text of the batch, and returns the classifier's logits. So one tensor serves
trials of several checkpoints, and an ensemble of them takes one input.

Also here: loading a checkpoint offline, checking a tokenizer against its model, and training
a word-level tokenizer (the ``encoder`` family's, and the shipped job's data script's).
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import nn

from .vision_import import ensure_importable

ensure_importable()  # before anything imports Transformers or torchvision, here or in a caller

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def offline() -> bool:
    """Whether the Hugging Face Hub may not be reached (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def is_local(checkpoint: str) -> bool:
    return Path(checkpoint).expanduser().is_dir()


def located(checkpoint: str) -> str:
    """A directory as an absolute path (Train workers do not run in the driver's directory); a hub id as it is."""
    return str(Path(checkpoint).expanduser().resolve()) if is_local(checkpoint) else checkpoint


def _local_only(checkpoint: str) -> bool:
    # A directory never needs the network; a hub id only when HF_HUB_OFFLINE allows it.
    return is_local(checkpoint) or offline()


@contextlib.contextmanager
def _quiet():
    """Transformers' warning that a new classifier head is untrained is the point of fine-tuning."""
    from transformers.utils import logging

    level, bars_off = logging.get_verbosity(), logging.is_progress_bar_enabled() is False
    logging.set_verbosity_error()
    logging.disable_progress_bar()  # a bar per trial's load says nothing in a sweep's log
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if not bars_off:
            logging.enable_progress_bar()


# trust_remote_code is passed on every load, False unless the job opts in
# (task_options.trust_remote_code): left unset, Transformers asks on stdin whether to run a
# checkpoint's own Python files, and a "y" piped in runs them.


def load_config(checkpoint: str, trust_remote_code: bool = False):
    ensure_importable()
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(os.path.expanduser(checkpoint), local_files_only=_local_only(checkpoint), trust_remote_code=trust_remote_code)


def load_tokenizer(checkpoint: str, trust_remote_code: bool = False):
    ensure_importable()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.expanduser(checkpoint), local_files_only=_local_only(checkpoint), trust_remote_code=trust_remote_code)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-style tokenizers have no pad token; the mask hides it
    return tok


def from_config(config: dict[str, Any], num_labels: int, pad_token_id: int) -> nn.Module:
    """A sequence classifier of a saved config's built-in architecture with fresh weights: no
    checkpoint folder, and no custom code (a config naming an unknown ``model_type`` is refused)."""
    ensure_importable()
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = {k: v for k, v in config.items() if k not in ("auto_map", "architectures", "model_type")}
    conf = AutoConfig.for_model(str(config["model_type"]), **cfg)
    conf.num_labels = num_labels
    with _quiet():
        model = AutoModelForSequenceClassification.from_config(conf, trust_remote_code=False)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A BERT-style word-level tokenizer (lower-cased, ``[CLS] text [SEP]``) whose vocabulary is
    the ``vocab_size`` most frequent words of ``texts`` (ties in word order), as a Transformers
    ``PreTrainedTokenizerFast``. Deterministic, unlike the ``tokenizers`` trainers, whose choice
    among equally frequent pieces varies from run to run: a driver that resumes a run retrains it
    and must get the same token ids its checkpoints were trained on."""
    from collections import Counter

    ensure_importable()
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = Counter(word for text in texts for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, vocab_size - len(SPECIAL_TOKENS))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(SPECIAL_TOKENS + words)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    cls, sep = SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


#: Tensors named in a message before "and N more".
SHOWN_TENSORS = 4


def weight_problems(checkpoint: str, config: Any, num_labels: int) -> Optional[str]:
    """Why the weights of the local ``checkpoint`` do not fill the classifier its ``config``
    builds, or None. Read from the safetensors headers and a model built on PyTorch's ``meta``
    device, so nothing the size of the model is allocated (a config can claim any size). Every
    tensor of the pretrained body must be in the files, with its shape; only the new
    classification head (outside ``base_model_prefix``) may be missing or differ."""
    import json

    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    folder = Path(checkpoint).expanduser()
    index = folder / "model.safetensors.index.json"
    files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.is_file() else [folder / "model.safetensors"]
    if not all(f.is_file() for f in files):
        pickled = [p.name for p in folder.glob("*.bin")]
        what = f"only pickled weights ({', '.join(pickled)})" if pickled else "no model.safetensors"
        return f"it has {what}; fix: save it with save_pretrained (safetensors, which loads no code)"
    saved = {}
    for f in files:
        with safe_open(str(f), framework="pt") as weights:
            saved.update({k: tuple(weights.get_slice(k).get_shape()) for k in weights.keys()})
    conf = copy.deepcopy(config)
    conf.num_labels = num_labels
    with torch.device("meta"), _quiet():
        model = AutoModelForSequenceClassification.from_config(conf, trust_remote_code=False)
    prefix = model.base_model_prefix + "."
    body = {k: tuple(p.shape) for k, p in model.named_parameters() if k.startswith(prefix)}
    found = {k if k in body else prefix + k: shape for k, shape in saved.items()}
    wrong = [f"{k} {found[k]} in the files, {shape} in the config" for k, shape in body.items() if k in found and found[k] != shape]
    missing = [k for k in body if k not in found]
    if not wrong and not missing:
        return None
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} tensor(s) differ in shape from what config.json builds: {'; '.join(wrong[:SHOWN_TENSORS])}")
    if missing:
        parts.append(f"{len(missing)} tensor(s) of the model are not in its weights: {', '.join(missing[:SHOWN_TENSORS])}")
    return " and ".join(parts) + "; they would start from random values; fix: save the model and its config together with save_pretrained"


def mismatch(tokenizer: Any, config: Any, max_tokens: int) -> Optional[str]:
    """Why ``tokenizer`` cannot feed the model of ``config`` at ``max_tokens``, or None."""
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        return f"its tokenizer has {len(tokenizer)} tokens but its model embeds {vocab}: they were not saved together"
    if tokenizer.pad_token is None:
        return "its tokenizer has neither a pad token nor an end-of-text token to pad with"
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and max_tokens > positions:
        return f"its model takes at most {positions} positions, fewer than task_options.max_tokens {max_tokens}"
    return None


class TextModel(nn.Module):
    """A Transformers sequence classifier over tokenizer ``tokenizer_index``'s slice of the input.

    ``freeze_epochs``: epochs at the start in which the pretrained encoder (``base_model``) is
    frozen and only the new head trains (``set_epoch``); its weights then get no gradient and
    no optimizer state."""

    def __init__(self, model: nn.Module, tokenizer_index: int, max_length: int, freeze_epochs: int = 0):
        super().__init__()
        self.model, self.tokenizer_index, self.max_length, self.freeze_epochs = model, tokenizer_index, max_length, freeze_epochs

    def set_epoch(self, epoch: int) -> bool:
        """Freeze or thaw the encoder for ``epoch`` (0-based); returns whether that changed anything."""
        frozen = epoch < self.freeze_epochs
        params = list(self.model.base_model.parameters())
        changed = any(p.requires_grad == frozen for p in params)
        for p in params:
            p.requires_grad_(not frozen)
        return changed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x[:, self.tokenizer_index, :, : self.max_length]
        ids, mask = tokens[:, 0].long(), tokens[:, 1].long()
        if torch.compiler.is_exporting():  # an exported graph takes any batch: its length cannot depend on the data
            return self.model(input_ids=ids, attention_mask=mask).logits
        length = max(1, int(mask.sum(1).max()))  # padding beyond the batch's longest text is dead work
        return self.model(input_ids=ids[:, :length], attention_mask=mask[:, :length]).logits


def pretrained(checkpoint: str, num_labels: int, pad_token_id: int, trust_remote_code: bool = False) -> nn.Module:
    """``checkpoint``'s model with a new ``num_labels``-way head (1: regression), offline when it is a directory."""
    ensure_importable()
    from transformers import AutoModelForSequenceClassification

    with _quiet():
        model = AutoModelForSequenceClassification.from_pretrained(
            os.path.expanduser(checkpoint), num_labels=num_labels, local_files_only=_local_only(checkpoint), ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
        )  # fmt: skip
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id
    return model


def encoder(vocab_size: int, max_tokens: int, num_labels: int, depth: int, width: int, heads: int, dropout: float, pad_token_id: int) -> nn.Module:
    """A BERT encoder built from a config, untrained: ``depth`` layers of ``width`` with ``heads`` heads."""
    ensure_importable()
    from transformers import BertConfig, BertForSequenceClassification

    if width % heads:
        raise ValueError(f"model.heads: got {heads} for width {width}; width must be a multiple of heads")
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        max_position_embeddings=max_tokens,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        num_labels=num_labels,
        pad_token_id=pad_token_id,
    )
    return BertForSequenceClassification(config)
