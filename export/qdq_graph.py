"""The int8 ONNX graph as a PyTorch module: what onnxruntime computes, with weights that can learn.

    graph = QDQGraph(onnx.load("model.int8.onnx"), float_weights)
    logits = graph(torch.from_numpy(inputs))             # what onnxruntime answers, up to rounding
    graph.write_into(proto)                              # the (tuned) int8 weights back into the file

Every QuantizeLinear is a rounding and clamping with straight-through gradients, every int8 weight
a float value rounded on the fly to the file's own per-channel steps; the scales, zero points and
graph stay exactly as onnxruntime's quantizer chose them. ``export/tune.py`` trains it.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from flower_edge.common.errors import ExportError

from .qdq_ops import OPS, attr

_INT_RANGES = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int16): (-32768, 32767),
}


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (as onnxruntime does) forward; identity backward."""
    return x + (torch.round(x) - x).detach()


def _per_axis(v, axis: int, ndim: int):
    """A per-channel vector (tensor or array) shaped to broadcast along ``axis`` of an
    ``ndim``-dimensional tensor; a scalar as it is."""
    if v.ndim == 0:
        return v
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


class QDQGraph(nn.Module):
    """A QDQ ONNX graph (onnxruntime's static quantization) evaluated by PyTorch, weights trainable.

    Each int8 weight ``w_q * s`` becomes a float parameter ``u`` in units of its step ``s``; the
    forward pass uses ``clamp(round(u)) * s``. Each int32 bias becomes a float parameter in units of
    its layer's weight steps (its own step, ``s_in * s_w``, is far finer than any rounding that
    matters), so one learning rate suits every tensor."""

    def __init__(self, proto: onnx.ModelProto, float_weights: dict[str, np.ndarray] | None = None) -> None:
        super().__init__()
        graph = proto.graph
        self.nodes = list(graph.node)
        self.input_name = graph.input[0].name
        self.output_name = graph.output[0].name
        self.consts: dict[str, torch.Tensor] = {}
        self.weights: dict[str, dict] = {}  # DequantizeLinear output -> how its int8 weight is rebuilt
        self.biases: dict[str, dict] = {}  # DequantizeLinear output -> how its int32 bias is rebuilt
        self.params = nn.ParameterDict()
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        self._check_operators()
        self._trainable(inits, float_weights or {})
        for name, value in inits.items():
            self.consts[name] = torch.from_numpy(np.array(value))
        self._plans: dict[tuple[str, str | None], list[onnx.NodeProto] | None] = {}
        self.fake_quant = self._fake_quantization(inits)

    def _check_operators(self) -> None:
        for node in self.nodes:
            unsupported = node.op_type not in OPS and node.op_type not in ("QuantizeLinear", "DequantizeLinear")
            if unsupported or node.domain not in ("", "ai.onnx"):
                raise ExportError(
                    f"int8 tuning does not support the ONNX operator {node.domain or 'ai.onnx'}.{node.op_type}"
                )

    def _trainable(self, inits: dict[str, np.ndarray], float_weights: dict[str, np.ndarray]) -> None:
        """A parameter for each int8 weight (started from the float weight when given) and each
        int32 bias, in units of its step."""
        weight_scale: dict[str, np.ndarray] = {}
        bias_scale: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
        for node in self.nodes:
            if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
                continue
            q = inits[node.input[0]]
            scale = inits[node.input[1]].astype(np.float32)
            axis = attr(node, "axis", 1)
            key = f"p{len(self.params)}"
            if q.dtype == np.int8:
                lo, hi = _weight_range(q)
                start = _widened(float_weights.get(node.input[0].removesuffix("_quantized")), q.shape)
                units = q.astype(np.float32) if start is None else start / _per_axis(scale, axis, q.ndim)
                self.params[key] = nn.Parameter(torch.from_numpy(np.ascontiguousarray(units, np.float32)))
                self.weights[node.output[0]] = dict(
                    param=key,
                    scale=torch.from_numpy(scale),
                    axis=axis,
                    lo=lo,
                    hi=hi,
                    init=node.input[0],
                    zeros=torch.zeros(scale.shape, dtype=torch.int32),
                )
                weight_scale[node.output[0]] = scale
            elif q.dtype == np.int32:
                bias_scale[node.output[0]] = (node.input[0], q, scale)
        for node in self.nodes:  # a bias is trained in units of its layer's weight steps, like the weights
            if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] in bias_scale:
                name, q, scale = bias_scale.pop(node.input[2])
                unit = weight_scale.get(node.input[1], scale)
                key = f"p{len(self.params)}"
                self.params[key] = nn.Parameter(torch.from_numpy((q * scale / unit).astype(np.float32)))
                self.biases[node.input[2]] = dict(
                    param=key, unit=torch.from_numpy(unit.astype(np.float32)), scale=torch.from_numpy(scale), init=name
                )
        if bias_scale:
            raise ExportError(f"int8 tuning: no convolution or Gemm uses the bias {next(iter(bias_scale))}")

    def _fake_quantization(self, inits: dict[str, np.ndarray]) -> dict[str, tuple[float, int, int, int]]:
        """Each activation's QuantizeLinear -> DequantizeLinear pair as one fused fake-quantization
        (PyTorch's, rounding half to even like onnxruntime, with a masked straight-through gradient):
        (scale, zero point, lowest, highest) by the QuantizeLinear's output."""
        fake_quant: dict[str, tuple[float, int, int, int]] = {}
        readers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                readers.setdefault(name, []).append(node)
        for node in self.nodes:
            if node.op_type != "QuantizeLinear":
                continue
            zero_point = inits[node.input[2]]
            if inits[node.input[1]].size != 1 or any(
                r.op_type != "DequantizeLinear" or r.input[1:3] != node.input[1:3]
                for r in readers.get(node.output[0], [])
            ):
                raise ExportError(
                    f"int8 tuning supports per-tensor QuantizeLinear -> DequantizeLinear pairs only ({node.output[0]})"
                )
            lo, hi = _INT_RANGES[zero_point.dtype]
            fake_quant[node.output[0]] = (float(inits[node.input[1]]), int(zero_point), lo, hi)
        return fake_quant

    def schedule(self, source: str, target: str | None = None) -> list[onnx.NodeProto] | None:
        """The nodes that compute ``target`` (default: the output) from ``source`` and constants
        alone, in order; None when ``target`` needs another activation too."""
        needed, keep = {target or self.output_name}, []
        for node in reversed(self.nodes):
            if node.output[0] in needed and node.output[0] != source:
                keep.append(node)
                needed.update(i for i in node.input if i)
        needed -= {source} | set(self.consts) | {n.output[0] for n in keep}
        return None if needed else keep[::-1]

    def cut(self, x: torch.Tensor, max_pixels: int) -> str:
        """The first tensor that alone feeds the rest of the graph (no skip connection crosses it)
        and whose feature map has at most ``max_pixels`` pixels: layers up to it stay as quantized,
        their output is computed once, and only the layers after it train."""
        shapes: dict[str, tuple[int, ...]] = {}
        with torch.no_grad():
            self.forward(x[:1], shapes=shapes)
        for node in self.nodes:
            name = node.output[0]
            if (
                node.op_type == "DequantizeLinear"
                and node.input[0] in self.fake_quant
                and len(shapes.get(name, ())) == 4
                and shapes[name][2] * shapes[name][3] <= max_pixels
                and self.schedule(name) is not None
            ):
                return name
        return self.input_name

    def parameter_groups(self, source: str | None = None) -> list[nn.Parameter]:
        """The parameters that the graph from ``source`` to the output uses."""
        nodes = self.schedule(source or self.input_name) or []
        used = {n.output[0] for n in nodes}
        keys = [w["param"] for out, w in {**self.weights, **self.biases}.items() if out in used]
        return [self.params[k] for k in keys]

    def forward(
        self, x: torch.Tensor, source: str | None = None, target: str | None = None, shapes: dict | None = None
    ) -> torch.Tensor:
        """The graph's output (or ``target``) given the value ``x`` of ``source`` (default: its input)."""
        source = source or self.input_name
        env: dict[str, torch.Tensor] = {source: x}
        if (source, target) not in self._plans:
            self._plans[source, target] = self.schedule(source, target)
        plan = self._plans[source, target]
        for node in plan:
            out = node.output[0]
            if out in self.weights:
                env[out] = self._weight(self.weights[out])
            elif out in self.biases:
                b = self.biases[out]
                env[out] = self.params[b["param"]] * b["unit"]
            elif node.op_type == "QuantizeLinear":
                env[out] = env[node.input[0]]  # rounded by the DequantizeLinear that reads it
            elif node.op_type == "DequantizeLinear":
                scale, zero_point, lo, hi = self.fake_quant[node.input[0]]
                env[out] = torch.fake_quantize_per_tensor_affine(env[node.input[0]], scale, zero_point, lo, hi)
            else:
                args = [env[i] if i in env else self.consts.get(i) if i else None for i in node.input]
                env[out] = OPS[node.op_type](node, *args)
            if shapes is not None:
                shapes[out] = tuple(env[out].shape)
        return env[target or self.output_name]

    def _weight(self, w: dict) -> torch.Tensor:
        units, scale = self.params[w["param"]], w["scale"]
        if scale.ndim == 0:
            return torch.clamp(round_ste(units), w["lo"], w["hi"]) * scale
        return torch.fake_quantize_per_channel_affine(
            units * _per_axis(scale, w["axis"], units.dim()), scale, w["zeros"], w["axis"], w["lo"], w["hi"]
        )

    @torch.no_grad()
    def write_into(self, proto: onnx.ModelProto) -> None:
        """Replace the int8 weights and int32 biases of ``proto`` (the graph this was built from)."""
        values: dict[str, np.ndarray] = {}
        for w in self.weights.values():
            units = self.params[w["param"]]
            values[w["init"]] = torch.clamp(torch.round(units), w["lo"], w["hi"]).numpy().astype(np.int8)
        for b in self.biases.values():
            units = torch.round(self.params[b["param"]] * b["unit"] / b["scale"]).clamp(-(2**31), 2**31 - 1)
            values[b["init"]] = units.numpy().astype(np.int32)
        for init in proto.graph.initializer:
            if init.name in values:
                init.CopyFrom(numpy_helper.from_array(values[init.name], init.name))


def _weight_range(q: np.ndarray) -> tuple[int, int]:
    """onnxruntime's symmetric int8 weights use [-127, 127] (7-bit: [-64, 64])."""
    bound = 64 if int(np.abs(q).max(initial=0)) <= 64 else 127
    return -bound, bound


def _widened(weight: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """A float weight with zeros where its int8 counterpart has more (input channels padded by
    export/quantize.py: align_input_channels)."""
    if weight is None or weight.shape == tuple(shape):
        return weight
    if weight.ndim != len(shape) or any(a > b for a, b in zip(weight.shape, shape)):
        raise ExportError(f"int8 tuning: a float weight of shape {weight.shape} for an int8 one of {tuple(shape)}")
    return np.pad(weight, [(0, b - a) for a, b in zip(weight.shape, shape)])
