"""The ONNX operators of a QDQ graph, in PyTorch: what export/qdq_graph.py runs, one function each.

y = OPS[node.op_type](node, *inputs)       # inputs: tensors, in the node's input order
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from flower_edge.common.errors import ExportError


def attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv(node, x, w, b=None):
    pads = list(attr(node, "pads", [0] * (2 * (w.dim() - 2))))
    if attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ExportError("int8 tuning supports explicit convolution padding only")
    half = len(pads) // 2
    if pads[:half] != pads[half:]:
        x = F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])])
        pads = [0] * len(pads)
    return F.conv2d(
        x,
        w,
        b,
        stride=attr(node, "strides", [1, 1]),
        padding=pads[:half],
        dilation=attr(node, "dilations", [1, 1]),
        groups=attr(node, "group", 1),
    )


def _gemm(node, a, b, c=None):
    a = a.t() if attr(node, "transA", 0) else a
    b = b.t() if attr(node, "transB", 0) else b
    y = attr(node, "alpha", 1.0) * (a @ b)
    return y if c is None else y + attr(node, "beta", 1.0) * c


def _reduce_mean(node, x, axes=None):
    axes = attr(node, "axes", None) if axes is None else axes.tolist()
    keep = bool(attr(node, "keepdims", 1))
    return x.mean(dim=list(range(x.dim())) if axes is None else axes, keepdim=keep)


def _pad(node, x, pads, value=None, axes=None):
    if attr(node, "mode", b"constant") not in (b"constant", "constant") or axes is not None:
        raise ExportError("int8 tuning supports constant padding of every axis only")
    pads = pads.tolist()
    half = len(pads) // 2
    widths = [w for axis in reversed(range(half)) for w in (pads[axis], pads[axis + half])]
    return F.pad(x, widths, value=0.0 if value is None else float(value))


def _reshape(node, x, shape):
    shape = shape.tolist()
    if not attr(node, "allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _clip(node, x, lo=None, hi=None):
    return torch.clamp(x, None if lo is None else float(lo), None if hi is None else float(hi))


def _flatten(node, x):
    axis = attr(node, "axis", 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


OPS: dict[str, Callable] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": lambda node, a, b: a @ b,
    "Add": lambda node, a, b: a + b,
    "Sub": lambda node, a, b: a - b,
    "Mul": lambda node, a, b: a * b,
    "Div": lambda node, a, b: a / b,
    "Relu": lambda node, x: F.relu(x),
    "Clip": _clip,
    "Sigmoid": lambda node, x: torch.sigmoid(x),
    "HardSigmoid": lambda node, x: torch.clamp(attr(node, "alpha", 0.2) * x + attr(node, "beta", 0.5), 0, 1),
    "HardSwish": lambda node, x: F.hardswish(x),
    "ReduceMean": _reduce_mean,
    "GlobalAveragePool": lambda node, x: x.mean(dim=(2, 3), keepdim=True),
    "Reshape": _reshape,
    "Pad": _pad,
    "Flatten": _flatten,
    "Identity": lambda node, x: x,
}
