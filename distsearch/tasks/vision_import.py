"""Importing torchvision where its compiled operators cannot load (a CPU-only torch).

PyPI's torchvision wheels are built against CUDA torch: with the CPU torch wheel, their ``_C``
library fails to load (it links ``libc10_cuda.so``), and ``import torchvision`` then fails in
``torchvision._meta_registrations`` with "operator torchvision::nms does not exist"
(pytorch/vision#9077, pytorch/pytorch#122494; the fix upstream is a ``+cpu`` torchvision wheel,
which only PyTorch's own index serves). Transformers imports torchvision too, when it is
installed, so the text task is hit as well.

What distsearch uses of torchvision is pure Python over torch: ``models.resnet18``, the
transforms, the ImageFolder conventions. ``ensure_importable`` declares the schemas of the
detection operators that torchvision registers Python kernels for, with no kernel behind them,
so that its import succeeds; calling one of those operators (``nms``, ``roi_align``...) still
fails, as it would without them. It acts only on that exact failure: where ``_C`` loads (a CUDA
torch, a ``+cpu`` torchvision), it changes nothing.
"""

from __future__ import annotations

import importlib.util
import sys

import torch

# torchvision's detection operators, as its C++ library declares them (torchvision/csrc/ops).
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, "
    "SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, "
    "SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
    "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)

_declared = None  # the Library holding the declarations; kept alive, as dropping it removes them


def _missing_operators() -> bool:
    return not hasattr(torch.ops.torchvision, "nms")


def ensure_importable() -> None:
    """Make ``import torchvision`` work (see the module doc); a no-op when it works already or
    torchvision is not installed. Call before importing torchvision or transformers' models."""
    global _declared
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError as e:
        if "torchvision::" not in str(e) or not _missing_operators():
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import's half-initialised modules
    _declared = torch.library.Library("torchvision", "DEF")
    for schema in SCHEMAS:
        _declared.define(schema)
    import torchvision  # noqa: F401, F811
