"""int8: onnxruntime's static QDQ quantization, calibrated on real photos, optionally tuned.

    quantize_int8("model.onnx", "model.int8.onnx", card, photos, method="minmax")
    quantize_int8(..., tuning=Tuning(photos, teacher))      # distillation into the float answers

What it does, and why (measured on the default Lite0 models, flowers5 and Flowers102 valid):
- QDQ format: what ONNX Runtime Mobile and onnxruntime-web take.
- Activations uint8 (asymmetric), weights int8 per output channel (symmetric). x86 CPUs only have
  fast kernels for uint8 x int8; int8 activations ran slower than float (0.83x).
- ``quant_pre_process`` first (shape inference and graph optimization). The exporter already
  folded BatchNorm, and ReLU6 (Clip) is absorbed into the uint8 range of the convolution's output.
- The logits stay float (``float_output``): rounded to 8 bits they tie and flip close answers.
- The convolutions named in ``float_layers`` stay float: export/search.py chooses them, the fewest
  that keep the budget. The stem reads raw pixels through few weights that largely cancel each
  other, so rounding them costs more than anywhere else (its output's SQNR: 31.9 dB from the
  weights, 40.4 dB from the input). Kept float, onnxruntime transposes its float output into the
  int8 layout, which costs what the float stem saves.
- Made for onnxruntime's fast kernels: the photo's levels land exactly on uint8 codes
  (``exact_input``), its 3 channels are padded to 4 for the symmetric convolution kernel
  (``align_input_channels``), and the final mean is a quantized ``GlobalAveragePool``
  (``global_pooling``).
- 8-bit weights by default. x86 CPUs without VNNI (AVX2) multiply uint8 by int8 with a 16-bit
  saturating instruction whose sums overflow with 8-bit weights, so flower-edge runs such models on
  onnxruntime's exact path there (runtime/session.py). ``reduce_range`` (7-bit weights) cannot
  overflow and keeps the fast kernels on such CPUs, at some cost in precision that tuning recovers.
- ``Tuning``: the quantized graph's weights are trained to reproduce the float model's logits
  (export/tune.py), with the quantizer's scales unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.errors import ExportError
from flower_edge.runtime.files import atomic_write
from flower_edge.runtime.progress import ProgressLines

from .onnx_export import INPUT_NAME, set_card

log = logging.getLogger(__name__)

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


class CardCalibrationReader(CalibrationDataReader):
    """Feeds photos to the calibrator one at a time, preprocessed exactly as the card says."""

    def __init__(
        self, inputs: Sequence[np.ndarray], input_name: str = INPUT_NAME, lines: ProgressLines | None = None
    ) -> None:
        self.inputs, self.input_name, self.lines = inputs, input_name, lines
        self._next = iter(self.inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._next, None)
        if self.lines is not None:
            if x is None:
                self.lines.close()
                self.lines = None  # one pass is reported; the calibrator may read again
            else:
                self.lines.advance()
        return None if x is None else {self.input_name: x[None]}  # (1, ...) batch of one

    def rewind(self) -> None:
        self._next = iter(self.inputs)


@dataclass(frozen=True)
class Tuning:
    """Distillation of the int8 graph into the float model's answers (see export/tune.py)."""

    photos: Sequence[np.ndarray]
    """Preprocessed photos (never a verification photo); each is also seen mirrored."""
    teacher: Callable[[np.ndarray], np.ndarray]
    """Float logits (N, classes) of a batch of photos: the PyTorch model."""
    epochs: int = 2
    lr: float = 2e-3
    source: str = ""
    progress: Callable[[int, int, float], None] = lambda step, steps, loss: None
    """Called after each training step."""
    say: Callable[[str], None] = lambda message: None
    """Told each phase before the training steps."""


@dataclass
class Int8Result:
    card: ModelCard
    explain: list | None = None
    """Per-layer error (export/explain.py) when asked for."""
    tuning: object | None = None
    """export/tune.py's TuneReport when the model was tuned."""


def quantize_int8(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    card: ModelCard,
    calibration: Sequence[np.ndarray],
    *,
    method: str = "minmax",
    reduce_range: bool = False,
    float_layers: Sequence[str] = (),
    source: str = "",
    tuning: Tuning | None = None,
    explain: Sequence[np.ndarray] = (),
    prepared: str | os.PathLike | None = None,
    calibration_cache: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> Int8Result:
    """Quantize a float ONNX model, optionally tune it; the int8 card is stored in the file too.

    ``float_layers``: the convolutions that stay float, by layer name (:func:`conv_layers`).
    ``prepared``: ``fp32_path`` already through :func:`prepare` (a search prepares once).
    ``calibration_cache``: a file for the activation ranges of ``method``: written by the first
    call, read by the next ones (onnxruntime's ``calibration_cache_path``), so a search over float
    layers calibrates once per method.
    ``explain``: photos on which to report the error of every layer (export/explain.py).
    ``progress``: told how the calibration goes (entropy and percentile take minutes)."""
    if not calibration:
        raise ExportError("no readable calibration photos")
    float_layers = list(float_layers)
    quantization = {
        "format": "QDQ",
        "activations": "uint8, per tensor, asymmetric; logits float",
        "weights": f"int8, per channel, symmetric, {7 if reduce_range else 8}-bit",
        "reduce_range": reduce_range,
        "float_layers": len(float_layers),
        "float_layer_names": float_layers,
        "calibration_method": method,
        "calibration_data": source,
        "calibration_size": len(calibration),
        "tool": "onnxruntime.quantization.quantize_static",
    }
    result = Int8Result(card)
    with tempfile.TemporaryDirectory() as tmp:
        quantized = Path(tmp) / "int8.onnx"
        if prepared is None:
            prepared = Path(tmp) / "prepared.onnx"
            prepare(fp32_path, prepared)
        layers = conv_layers(onnx.load(str(prepared), load_external_data=False))
        unknown = [name for name in float_layers if name not in layers]
        if unknown:
            raise ExportError(f"no convolution named {unknown[0]!r} in the model (float layers: {', '.join(layers)})")
        with _quiet():
            quantize_static(
                str(prepared),
                str(quantized),
                CardCalibrationReader(
                    calibration,
                    lines=ProgressLines(f"int8: calibrating ({method})", len(calibration), progress)
                    if progress
                    else None,
                ),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=METHODS[method],
                nodes_to_exclude=[layers[name] for name in float_layers],
                calibration_cache_path=str(calibration_cache) if calibration_cache else None,
            )
        proto = onnx.load(str(quantized))
        float_output(proto)
        if exact_input(proto, card):
            quantization["input"] = "pixel levels exactly on the uint8 grid (shifted half a step, stem bias corrected)"
        if align_input_channels(proto):
            quantization["input_channels"] = "padded with zero channels to a multiple of 4 (the stem's fast kernel)"
        if tuning is not None:
            report = result.tuning = _tune(proto, Path(prepared), tuning)
            quantization.update(
                {
                    "tuning": "distillation: the QDQ graph's weights trained to match the float logits "
                    "(straight-through rounding, KL at temperature 2)",
                    "tuning_data": tuning.source,
                    "tuning_size": len(tuning.photos),
                    "tuning_epochs": tuning.epochs,
                    "tuning_loss": [round(v, 5) for v in report.losses],
                    "tuning_from": report.start,
                    "tuning_trained_weights": round(report.trained_parameters / report.parameters, 3),
                }
            )
        result.card = replace(card, quantization=quantization)
        set_card(proto, result.card)
        onnx.checker.check_model(proto, full_check=True)
        atomic_write(int8_path, lambda f: f.write(proto.SerializeToString()))
        if explain:
            from .explain import explain_int8

            result.explain = explain_int8(prepared, int8_path, explain)
    return result


def prepare(fp32_path: str | os.PathLike, prepared: str | os.PathLike) -> None:
    """onnxruntime's ``quant_pre_process`` (shape inference and graph optimization) and
    :func:`global_pooling`, before quantizing."""
    with _quiet():
        quant_pre_process(str(fp32_path), str(prepared))
    proto = onnx.load(str(prepared))
    if global_pooling(proto):
        onnx.save(proto, str(prepared))


def global_pooling(proto: onnx.ModelProto) -> bool:
    """Write the mean over the feature map (``ReduceMean`` over axes 2, 3, as PyTorch exports
    ``x.mean((2, 3), keepdim=True)``) as ``GlobalAveragePool``, the same arithmetic; True when it did.

    onnxruntime's quantizer leaves ``ReduceMean`` float, so the int8 graph dequantized the last
    feature map and onnxruntime transposed it back from its NHWC int8 layout first; the quantized
    ``GlobalAveragePool`` runs in NHWC int8. Flowers102 Lite0, batch 1, 2 threads, AMD EPYC
    (VNNI): 1.21 -> 1.18 ms."""
    graph = proto.graph
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    done = False
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "ReduceMean" or len(node.input) != 2 or node.input[1] not in constants:
            continue
        axes = sorted(int(a) % 4 for a in constants[node.input[1]].reshape(-1))
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        shape = _shape(graph, node.input[0])
        if axes != [2, 3] or not keepdims or len(shape) != 4:
            continue
        graph.node.remove(node)
        graph.node.insert(
            index,
            onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=f"{node.name}_global"),
        )
        done = True
    used = {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return done


def _shape(graph: onnx.GraphProto, name: str) -> list:
    """The inferred shape of tensor ``name`` ([] when unknown)."""
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.name == name:
            return list(info.type.tensor_type.shape.dim)
    return []


def conv_layers(proto: onnx.ModelProto) -> dict[str, str]:
    """The convolutions of a graph in order, by layer name: the PyTorch module whose weight the
    node reads (``features.0.conv.weight`` -> ``features.0.conv``), to the node's name. The same
    names select float layers in the ONNX file and in the PT2E (LiteRT, ExecuTorch) ones."""
    layers = {}
    for node in proto.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1:
            layers[node.input[1].removesuffix(".weight")] = node.name
    return layers


def exact_input(proto: onnx.ModelProto, card: ModelCard) -> bool:
    """Put every photo's pixel levels exactly on the input's uint8 grid; True when it did.

    The card normalizes a pixel level ``p`` to ``(p / 255 - mean) / std``: 256 values one step
    ``1 / (255 std)`` apart. The calibrated input grid has that step, but its zero point must be an
    integer, so with mean 0.5 (the EfficientNet-Lite cards) every level falls half a step between
    two codes and is rounded up or down by its parity: noise of half a step on every pixel. Measured
    on the Flowers102 default model (PyTorch evaluation of the QDQ graph, 300 valid photos, only
    the input rounded): 0.053 of standard deviation in the top-1 minus top-2 logit margin, as much
    as the six largest activations together. Here the graph adds the missing fraction of a step
    before quantizing (``x + delta``, then codes ``p`` with zero point ``floor(255 mean)``) and the
    convolutions that read the input subtract what ``delta`` adds (``delta`` times each output
    channel's weight sum) from their biases: exact except where the padding meets the border.
    Needs one mean and one std for all channels (else the levels of the channels differ)."""
    graph = proto.graph
    name = graph.input[0].name
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == name]
    if len(quantize) != 1 or len(set(card.mean)) != 1 or len(set(card.std)) != 1:
        return False
    q = quantize[0]
    inits = {i.name: i for i in graph.initializer}
    zero_point = onnx.numpy_helper.to_array(inits[q.input[2]])
    if zero_point.dtype != np.uint8:
        return False
    step = np.float64(1.0) / (255.0 * np.float64(card.std[0]))
    level = 255.0 * np.float64(card.mean[0])  # the level that normalizes to 0
    zero = math.floor(level)
    delta = (level - zero) * step
    readers = [n for n in graph.node if q.output[0] in n.input]
    dequantized = [n.output[0] for n in readers if n.op_type == "DequantizeLinear"]
    convs = [n for n in graph.node if set(n.input) & set(dequantized)]
    if (
        len(dequantized) != len(readers)
        or not convs
        or any(n.op_type != "Conv" or n.input[0] not in dequantized or len(n.input) < 3 for n in convs)
    ):
        return False
    producer = {out: node for node in graph.node for out in node.output}
    updates = []
    for conv in convs:
        w_dq, b_dq = producer[conv.input[1]], producer[conv.input[2]]
        if w_dq.op_type != "DequantizeLinear" or b_dq.op_type != "DequantizeLinear":
            return False
        w = onnx.numpy_helper.to_array(inits[w_dq.input[0]]).astype(np.float64)
        w_scale = onnx.numpy_helper.to_array(inits[w_dq.input[1]]).astype(np.float64)
        bias = onnx.numpy_helper.to_array(inits[b_dq.input[0]]).astype(np.float64)
        bias *= onnx.numpy_helper.to_array(inits[b_dq.input[1]]).astype(np.float64)
        bias -= delta * w.reshape(len(w), -1).sum(1) * w_scale
        bias_scale = np.float32(step) * w_scale.astype(np.float32)
        codes = np.round(bias / bias_scale.astype(np.float64))
        if np.abs(codes).max() > np.iinfo(np.int32).max:
            return False
        updates += [(b_dq.input[0], codes.astype(np.int32)), (b_dq.input[1], bias_scale)]
    for key, value in updates:
        inits[key].CopyFrom(onnx.numpy_helper.from_array(value, key))
    inits[q.input[1]].CopyFrom(onnx.numpy_helper.from_array(np.array(step, np.float32), q.input[1]))
    inits[q.input[2]].CopyFrom(onnx.numpy_helper.from_array(np.array(zero, np.uint8), q.input[2]))
    if delta:
        shifted = f"{name}_shifted"
        graph.initializer.append(onnx.numpy_helper.from_array(np.array(delta, np.float32), f"{name}_shift"))
        graph.node.insert(0, onnx.helper.make_node("Add", [name, f"{name}_shift"], [shifted], name=f"{name}_shift"))
        q.input[0] = shifted
    return True


def align_input_channels(proto: onnx.ModelProto) -> bool:
    """Pad the quantized photo with zero channels to a multiple of 4, and the int8 convolution
    that reads it with zero weights for them; True when it did.

    onnxruntime's fast symmetric int8 convolution (MlasConvSym, VNNI) takes input channels in
    multiples of 4; the stem's 3 went through im2col and a generic GEMM, slower than the float
    stem. The padded channel adds nothing to any output (its weights are 0). Flowers102 Lite0,
    batch 1, 2 threads, AMD EPYC (VNNI), onnxruntime's profile: stem 0.17 -> 0.09 ms; whole model
    1.18 -> 1.13 ms."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    name = graph.input[0].name
    producer = {out: node for node in graph.node for out in node.output}
    quantize = [
        n
        for n in graph.node
        if n.op_type == "QuantizeLinear"
        and (n.input[0] == name or (n.input[0] in producer and producer[n.input[0]].input[0] == name))
    ]
    if len(quantize) != 1:
        return False  # the input is not quantized (the stem stays float)
    q = quantize[0]
    readers = [n for n in graph.node if q.output[0] in n.input]
    if len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
        return False
    convs = [n for n in graph.node if readers[0].output[0] in n.input]
    if len(convs) != 1 or convs[0].op_type != "Conv" or convs[0].input[0] != readers[0].output[0]:
        return False
    weight = producer.get(convs[0].input[1])
    if weight is None or weight.op_type != "DequantizeLinear" or weight.input[0] not in inits:
        return False
    w = onnx.numpy_helper.to_array(inits[weight.input[0]])
    extra = -w.shape[1] % 4
    if not extra or w.ndim != 4 or any(a.name == "group" and a.i != 1 for a in convs[0].attribute):
        return False
    w = np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)], axis=1)
    inits[weight.input[0]].CopyFrom(onnx.numpy_helper.from_array(w, weight.input[0]))
    pads, padded = f"{name}_channel_pads", f"{q.input[0]}_padded"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), pads))
    graph.node.insert(
        list(graph.node).index(q),
        onnx.helper.make_node("Pad", [q.input[0], pads], [padded], name=f"{name}_channel_pad", mode="constant"),
    )
    q.input[0] = padded
    return True


def float_output(proto: onnx.ModelProto) -> None:
    """Drop the QuantizeLinear/DequantizeLinear pair on the graph's output: the logits stay float.

    Rounding the logits to 256 levels over their calibrated range (steps of about 0.1) ties and
    flips close answers for no gain in speed; onnxruntime still fuses the last layer (QGemm with a
    float output)."""
    graph = proto.graph
    producer = {out: node for node in graph.node for out in node.output}
    output = graph.output[0].name
    dq = producer.get(output)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if q is None or q.op_type != "QuantizeLinear":
        return
    consumers = [n for n in graph.node for i in n.input if i in (q.output[0], dq.output[0])]
    if consumers != [dq]:
        return  # the quantized logits feed something else too; leave the graph as it is
    source = q.input[0]
    graph.node.remove(dq)
    graph.node.remove(q)
    unused = set(q.input[1:]) | set(dq.input[1:])
    unused -= {i for node in graph.node for i in node.input}
    for init in [i for i in graph.initializer if i.name in unused]:
        graph.initializer.remove(init)
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == source:
                node.output[i] = output
        for i, name in enumerate(node.input):
            if name == source:
                node.input[i] = output


def _tune(proto: onnx.ModelProto, prepared: Path, tuning: Tuning):
    from onnx import numpy_helper

    from .qdq_graph import QDQGraph
    from .tune import tune

    float_weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(prepared)).graph.initializer}
    graph = QDQGraph(proto, float_weights)
    x = np.stack(tuning.photos).astype(np.float32)
    tuning.say(f"int8 tuning: the float model's logits for {len(x)} photos and their mirror images")
    teacher = np.concatenate([tuning.teacher(x), tuning.teacher(np.ascontiguousarray(x[..., ::-1]))])
    report = tune(graph, x, teacher, epochs=tuning.epochs, lr=tuning.lr, progress=tuning.progress, say=tuning.say)
    graph.write_into(proto)
    return report


@contextlib.contextmanager
def _quiet():
    """The quantizer logs advice to the root logger and prints histogram progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def write(job, fmt) -> list[str]:
    """The format table's writer (export/formats.py): the int8 ONNX file the search chose
    (export/search.py), its card recording the choice and the budget."""
    plan = job.int8_plan()
    chosen = plan.chosen.result
    chosen.card = replace(chosen.card, quantization={**chosen.card.quantization, "budget": plan.budget()})
    proto = onnx.load(str(plan.chosen.path))
    set_card(proto, chosen.card)
    atomic_write(job.staging / fmt.file, lambda f: f.write(proto.SerializeToString()))
    if job.config.explain:
        from .explain import explain_int8

        job.progress(f"int8: each layer's error on {len(job.calibration)} calibration photos (--explain)")
        chosen.explain = explain_int8(plan.prepared, job.staging / fmt.file, job.calibration)
    job.int8 = chosen
    return []


def step_lines(progress: Callable[[str], None], what: str, seconds: float = 15.0) -> Callable[[int, int, float], None]:
    """A step callback that reports each tenth of the work, or after ``seconds`` of silence, with
    the rate and the time left; the rate leaves out the set-up before step 1 ends."""
    lines: list[ProgressLines] = []

    def report(step: int, steps: int, loss: float) -> None:
        if not lines:
            lines.append(ProgressLines(what, steps, progress, unit="step", every=seconds, done=step))
        else:
            lines[0].advance(step - lines[0].done, loss=loss)
        if step == steps:
            lines[0].close(loss=loss)

    return report
