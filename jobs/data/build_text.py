"""Build the text jobs' data from the Python standard library on disk: a labelled corpus and two small checkpoints.

Nothing downloads. Writes, beside this script (or under ``--out``):

- ``stdlib_docs.parquet``: columns ``text`` and ``label``. Each row is one docstring (at least
  40 characters, each distinct text once) of a function, class or method defined in one of the
  packages in ``PACKAGES``, labelled with that package: which library wrote this documentation?
  The texts are those of the Python that runs the script, so the counts differ a little between
  Python versions.
- ``text-models/bert-2l`` and ``text-models/distilbert-2l``: two checkpoints saved with
  ``save_pretrained``, each a two-layer encoder (``BertModel``, ``DistilBertModel``, untrained
  weights from a fixed seed) with its own word-level tokenizer trained on the corpus's texts, as a
  tokenizer is trained on a domain's unlabelled text. It sees no label; a word that only test
  texts hold gets a token whose embedding no training step updates, so it tells the model nothing.
  They stand in for pretrained checkpoints: the job tunes which of them to fine-tune.

    python jobs/data/build_text.py            # needs distsearch[text]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ("asyncio", "email", "logging", "multiprocessing", "unittest", "xml", "http")
MIN_CHARS = 40


def _modules(package: str):
    top = importlib.import_module(package)
    yield top
    for info in pkgutil.walk_packages(top.__path__, f"{package}."):
        if ".test" in info.name or info.name.endswith("__main__"):
            continue
        try:
            yield importlib.import_module(info.name)
        except Exception:  # noqa: BLE001, S112 - platform-only modules (asyncio.windows_events, ...) do not import here
            continue


def docstrings(package: str) -> list[str]:
    """Every distinct docstring of at least ``MIN_CHARS`` characters defined in ``package``, sorted."""
    found = set()
    for mod in _modules(package):
        for obj in vars(mod).values():
            if getattr(obj, "__module__", None) != mod.__name__ or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            members = [obj] + ([f for f in vars(obj).values() if inspect.isfunction(f)] if inspect.isclass(obj) else [])
            found.update(d for d in (inspect.getdoc(m) for m in members) if d and len(d) >= MIN_CHARS)
    return sorted(found)


def corpus():
    import pandas as pd

    rows = {}
    for package in PACKAGES:
        for text in docstrings(package):
            rows.setdefault(text, package)  # a text two packages share (an inherited docstring) keeps its first
    return pd.DataFrame({"text": list(rows), "label": list(rows.values())})


def checkpoint(out: Path, texts: list[str], kind: str, vocab_size: int, width: int) -> tuple[Path, int]:
    """Save a two-layer ``kind`` encoder and its tokenizer of at most ``vocab_size`` tokens; return the directory and the tokens."""
    import torch

    from distsearch.tasks.text_models import train_tokenizer
    from distsearch.tasks.vision_import import ensure_importable

    ensure_importable()  # Transformers imports torchvision where it is installed
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    tokenizer = train_tokenizer(texts, vocab_size)
    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=width, num_hidden_layers=2, num_attention_heads=2, intermediate_size=4 * width,
            max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
        model = BertModel(config)
    else:
        config = DistilBertConfig(
            vocab_size=len(tokenizer),
            dim=width,
            n_layers=2,
            n_heads=2,
            hidden_dim=4 * width,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = DistilBertModel(config)
    path = out / "text-models" / f"{kind}-2l"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, len(tokenizer)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: beside this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")  # deprecated modules warn as they are imported
    frame = corpus()
    path = args.out / "stdlib_docs.parquet"
    frame.to_parquet(path, index=False)
    counts = ", ".join(f"{k} {v}" for k, v in frame["label"].value_counts().sort_index().items())
    print(f"{path}: {len(frame)} docstrings of Python {sys.version.split()[0]}: {counts}")
    texts = frame["text"].tolist()
    for kind, vocab, width in (("bert", 4000, 128), ("distilbert", 2000, 64)):
        path, tokens = checkpoint(args.out, texts, kind, vocab, width)
        print(f"{path}: two-layer {kind}, width {width}, {tokens} tokens (at most {vocab}: 5 special ones and the corpus's most frequent words)")


if __name__ == "__main__":
    main()
