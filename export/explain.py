"""Where int8 loses: a per-layer report of quantization error (``flower-export --quantize --explain``).

    report = explain_int8("prepared.onnx", "model.int8.onnx", photos)
    print(explain_table(report))

Built on onnxruntime's own debugging tools (``onnxruntime.quantization.qdq_loss_debug``): both models
run on the same photos with every intermediate tensor kept, and for each quantized tensor, in graph
order, the report gives two signal-to-quantization-noise ratios in dB (higher is better; each 6 dB
is one bit):

- ``local``: the tensor before against after its own QuantizeLinear/DequantizeLinear, that is, the
  error this one rounding adds;
- ``accumulated``: the float model's tensor against the int8 model's, that is, the error of
  everything up to here;

and for layers with weights, the SQNR of their int8 weights. The layers whose local figure is
lowest, or after which the accumulated figure falls most, are where int8 loses.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from .calibration import CardCalibrationReader, quantizer_quiet

MAX_PHOTOS = 32
"""Every intermediate tensor of every photo is kept in memory (about 60 MB a photo for Lite0)."""


@dataclass(frozen=True)
class LayerError:
    index: int
    """Position in graph order."""
    tensor: str
    op: str
    """The operator that produces the tensor (Conv, Add, ...)."""
    local_db: float
    accumulated_db: float | None
    weight_db: float | None
    layer: str | None = None
    """The convolution whose output this is, by layer name (export/int8_rewrites.py conv_layers)."""

    def to_dict(self) -> dict:
        return asdict(self)


def explain_int8(float_path: str | Path, int8_path: str | Path, photos: Sequence[np.ndarray]) -> list[LayerError]:
    """Per-tensor SQNR of the int8 model against the float model it was quantized from.

    ``float_path`` must be the float graph the quantizer saw (after ``quant_pre_process``), so that
    tensor names match."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        compute_weight_error,
        create_activation_matching,
        create_weight_matching,
        modify_model_output_intermediate_tensors,
    )

    photos = list(photos)[:MAX_PHOTOS]
    with tempfile.TemporaryDirectory() as tmp, quantizer_quiet():
        float_aug, int8_aug = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        modify_model_output_intermediate_tensors(str(float_path), str(float_aug))
        modify_model_output_intermediate_tensors(str(int8_path), str(int8_aug))
        float_acts = collect_activations(str(float_aug), CardCalibrationReader(photos))
        int8_acts = collect_activations(str(int8_aug), CardCalibrationReader(photos))
        matching = _narrowed(create_activation_matching(int8_acts, float_acts), "float")
        weights = compute_weight_error(_narrowed(create_weight_matching(str(float_path), str(int8_path)), "float"))

    model = onnx.load(str(float_path), load_external_data=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    order = {out: i for i, node in enumerate(model.graph.node) for out in node.output}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    rows = []
    for tensor, match in matching.items():
        node = producer.get(tensor)
        pre = match["pre_qdq"]
        if node is not None and node.op_type in ("Clip", "Relu"):
            # The quantizer drops a ReLU/ReLU6 into its output range, so the tensor before rounding is
            # the unclipped one: clip it, or the clipping would be counted as rounding error.
            lo, hi = _clip_range(node, inits)
            pre = [np.clip(t, lo, hi) for t in pre]
            node = producer.get(node.input[0], node)  # the weights are the layer's before the activation
        weight_db = None
        if node is not None and len(node.input) > 1 and node.input[1] in weights:
            weight_db = _finite(weights[node.input[1]])
        float_values = match.get("float")
        rows.append(
            LayerError(
                order.get(tensor, -1),
                tensor,
                node.op_type if node is not None else "input",
                _finite(compute_signal_to_quantization_noice_ratio(pre, match["post_qdq"])),
                _finite(compute_signal_to_quantization_noice_ratio(float_values, match["post_qdq"]))
                if float_values
                else None,
                weight_db,
                node.input[1].removesuffix(".weight")
                if node is not None and node.op_type == "Conv" and len(node.input) > 1
                else None,
            )
        )
    return sorted(rows, key=lambda r: r.index)


def _narrowed(matching: dict, reference: str) -> dict:
    """Every int8 tensor of ``matching`` cut back to the shape of its ``reference`` one: the photo's
    channels and the stem's weights for them are padded with zeros (export/int8_rewrites.py:
    align_input_channels), which are no rounding error."""

    def cut(value: np.ndarray, like: np.ndarray) -> np.ndarray:
        if value.shape == like.shape or value.ndim != like.ndim:
            return value
        return value[tuple(slice(0, n) for n in like.shape)]

    for pair in matching.values():
        target = pair.get(reference)
        if target is None:
            continue
        for key, value in list(pair.items()):
            if key != reference and value is not None:
                pair[key] = (
                    cut(value, target) if isinstance(value, np.ndarray) else [cut(v, t) for v, t in zip(value, target)]
                )
    return matching


def _clip_range(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> tuple[float | None, float | None]:
    if node.op_type == "Relu":
        return 0.0, None
    bounds = [float(inits[name]) if name in inits else None for name in list(node.input[1:3]) + [""] * 2][:2]
    lo = bounds[0] if bounds[0] is not None else next((a.f for a in node.attribute if a.name == "min"), None)
    hi = bounds[1] if bounds[1] is not None else next((a.f for a in node.attribute if a.name == "max"), None)
    return lo, hi


def explain_table(rows: Sequence[LayerError], worst: int = 8) -> str:
    """The layers in graph order, then the ``worst`` lowest local figures."""
    head = f"{'#':>4} {'op':<10} {'tensor':<40} {'local dB':>9} {'accum. dB':>9} {'weights dB':>10}"
    lines = ["int8 error by layer (SQNR in dB; higher is better, 6 dB = 1 bit)", head]

    def line(r: LayerError) -> str:
        acc = "" if r.accumulated_db is None else f"{r.accumulated_db:9.1f}"
        w = "" if r.weight_db is None else f"{r.weight_db:10.1f}"
        return f"{r.index:>4} {r.op:<10} {r.tensor[-40:]:<40} {r.local_db:9.1f} {acc:>9} {w:>10}"

    lines += [line(r) for r in rows]
    lines += ["", "lowest local SQNR (where rounding costs most):", head]
    lines += [line(r) for r in sorted(rows, key=lambda r: r.local_db)[:worst]]
    return "\n".join(lines)


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else 999.0
