"""Export a selected model to ONNX, with what turns raw inputs into its input beside it.

``distsearch export RUN --format onnx [--ensemble | --trial ID] --out DIR`` writes:

- ``model.onnx``: the module ``load_model`` rebuilds (the single best, the ensemble, or one
  trial), traced by PyTorch's ONNX exporter with a dynamic batch dimension. Its input
  ``input`` is the encoded input tensor (``input_shape`` and ``input_dtype`` below); its output
  ``output`` is class probabilities (classification), the standardised value (regression: times
  ``target_scale`` plus ``target_mean``) or next-token probabilities (charlm).
- ``preprocessing.json``: the model description without the weights (task, class names, the
  target's scale, each member's hyperparameters) and the task's recipe: a table's columns,
  categories and standardisation; images' colour mode and size; a character vocabulary.
- ``tokenizer-<i>.json`` per tokenizer of a text model, in the ``tokenizers`` library's own
  format (``tokenizers.Tokenizer.from_file``); ``preprocessing.json`` maps each tokenizer's name
  to its file (``onnx.tokenizer_files``) and holds its special tokens and ``max_tokens``.

Nothing in the run folder runs: the model is rebuilt from JSON and safetensors first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch

from .load import load_model

#: What the exported graph's input and output are called.
INPUT, OUTPUT = "input", "output"
FORMATS = ("onnx",)


def export_model(run: str, out_dir: str, fmt: str = "onnx", ensemble: bool = False, trial: Optional[str] = None) -> dict[str, Any]:
    """Write ``run``'s model to ``out_dir`` (see the module docstring); returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: got {fmt!r}; fix: use one of {', '.join(FORMATS)}")
    model = load_model(run, ensemble=ensemble, trial=trial)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    example = _example(model)
    program = torch.onnx.export(
        model.module.eval(),
        (example,),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(out / "model.onnx"))
    written = ["model.onnx"]
    description = model.description()
    tokenizers = (description.get("recipe") or {}).get("tokenizers") or {}
    files = {}
    for i, (name, saved) in enumerate(tokenizers.items()):  # a name is a checkpoint's path: files are numbered
        files[name] = f"tokenizer-{i}.json"
        (out / files[name]).write_text(saved["tokenizer"])
        written.append(files[name])
    shape, dtype = list(example.shape[1:]), str(example.dtype).removeprefix("torch.")
    description["onnx"] = {"input": INPUT, "output": OUTPUT, "input_shape": ["batch", *shape], "input_dtype": dtype, "tokenizer_files": files}
    (out / "preprocessing.json").write_text(json.dumps(description, indent=1))
    written.append("preprocessing.json")
    return {"dir": str(out), "files": written, "members": model.members}


def _example(model) -> torch.Tensor:
    """Two inputs of the shape and type the module takes. An image task's training split holds
    undecoded images, so its input comes from its encoder, given blank images of its size."""
    encode = model.encode
    if encode is not None and hasattr(encode, "size") and hasattr(encode, "color"):
        import numpy as np

        blank = np.zeros((encode.size, encode.size, 3), dtype=np.uint8)
        return encode([blank, blank])
    return torch.zeros((2, *model.input_shape), dtype=getattr(torch, model.input_dtype))


def onnx_predictions(out_dir: str, inputs: torch.Tensor) -> "Any":
    """What onnxruntime computes with the exported model for encoded ``inputs`` (a NumPy array)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(Path(out_dir, "model.onnx")), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: inputs.numpy()})[0]
