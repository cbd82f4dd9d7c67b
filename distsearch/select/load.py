"""Loading a run's selected model in one line: ``load_model(run)``, the single best or the ensemble.

A run saves both as ``model/best.pt`` and ``model/ensemble.pt``: a ``LoadedModel`` holding the
torch module in eval mode and what feeds it (the task's input encoder, its class names, the
regression target's scale). Loading needs torch and the model's code, not Ray.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import constants as C
from ..errors import RunFileMissing
from ..storage import PathLike, absolute, exists, is_uri, join, read_bytes, read_json
from .ensemble import Averaged


@dataclass
class LoadedModel:
    """A selected model, ready to use.

    - ``module``: the ``torch.nn.Module``, in eval mode, mapping the model's input tensor to
      predictions (class or next-token probabilities, or standardised values);
    - ``encode``: raw inputs (a DataFrame of the table's rows, an array of images, text) to that
      input tensor, as the training split fixed it; None when the task has no encoder;
    - ``class_names``: the classes, in output order (classification), else None;
    - ``target_mean``, ``target_scale``: what un-standardises a regression prediction;
    - ``members``: the trial ids in the model and their weights.
    """

    module: Averaged
    task: str
    encode: Optional[Callable[[Any], torch.Tensor]]
    class_names: Optional[list[str]]
    target_mean: float
    target_scale: float
    members: dict[str, float]

    def _forward(self, raw: Any) -> torch.Tensor:
        x = self.encode(raw) if self.encode is not None else raw
        with torch.no_grad():
            return self.module(x)

    def predict_proba(self, raw: Any) -> np.ndarray:
        """The module's predictions for raw inputs (encoded first when the task has an encoder), as a
        NumPy array as scikit-learn gives them: class probabilities (rows, classes) for classification."""
        return self._forward(raw).detach().cpu().numpy()

    def predict(self, raw: Any) -> list:
        """Class names for classification, values in the target's units for regression, else
        the predictions as ``predict_proba`` gives them."""
        p = self._forward(raw)
        if self.class_names is not None:
            return [self.class_names[i] for i in p.argmax(-1).tolist()]
        if self.module.kind == "values":
            return (p.squeeze(-1) * self.target_scale + self.target_mean).tolist()
        return p.detach().cpu().numpy()


def save(model: LoadedModel, path: str) -> None:
    from ..storage import write_bytes

    buf = io.BytesIO()
    torch.save(model, buf)
    write_bytes(path, buf.getvalue())


def load_model(run: PathLike, ensemble: bool = False) -> LoadedModel:
    """The selected model of the run at ``run`` (a local path or a storage URI): the single best
    trial at its best checkpoint, or with ``ensemble=True`` the run's ensemble. Raises
    ``FileNotFoundError`` saying why when the run has no such model."""
    run = str(run) if is_uri(run) else absolute(run)
    name = C.ENSEMBLE_MODEL_FILE if ensemble else C.BEST_MODEL_FILE
    path = join(run, C.MODEL_DIR, name)
    if not exists(path):
        why = "no trial reported a metric, or the run has not finished"
        record = join(run, C.ENSEMBLE_FILE)
        if ensemble and exists(record) and read_json(record).get("skipped"):
            why = f"the ensemble was skipped: {read_json(record)['skipped']}"
        raise RunFileMissing(f"{path} does not exist ({why}); fix: load the single best (ensemble=False) or run the job to its end")
    from ..tasks.vision_import import ensure_importable

    ensure_importable()  # a text or image model unpickles Transformers' or torchvision's modules
    model = torch.load(io.BytesIO(read_bytes(path)), map_location="cpu", weights_only=False)
    model.module.eval()
    return model
