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
- Made for onnxruntime's fast kernels (export/int8_rewrites.py): the photo's levels land exactly on uint8 codes
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

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

from flower_edge.common.errors import ExportError
from flower_edge.common.files import atomic_write
from flower_edge.common.progress import ProgressLines
from flower_edge.runtime.card import ModelCard

from .calibration import METHODS, CardCalibrationReader, quantizer_quiet
from .int8_rewrites import align_input_channels, conv_layers, exact_input, float_output, global_pooling
from .onnx_export import set_card
from .record import QuantizationRecord, TuningRecord


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


@dataclass(frozen=True)
class Int8Result:
    card: ModelCard
    """The card stored in the file: the float card with :attr:`record` as its quantization."""
    record: QuantizationRecord
    explain: tuple = ()
    """Per-layer error (export/explain.py) when asked for."""


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

    ``float_layers``: the convolutions that stay float, by layer name (export/int8_rewrites.py
    conv_layers).
    ``prepared``: ``fp32_path`` already through :func:`prepare` (a search prepares once).
    ``calibration_cache``: a file for the activation ranges of ``method``: written by the first
    call, read by the next ones (onnxruntime's ``calibration_cache_path``), so a search over float
    layers calibrates once per method.
    ``explain``: photos on which to report the error of every layer (export/explain.py).
    ``progress``: told how the calibration goes (entropy and percentile take minutes)."""
    if not calibration:
        raise ExportError("no readable calibration photos")
    with tempfile.TemporaryDirectory() as tmp:
        if prepared is None:
            prepared = Path(tmp) / "prepared.onnx"
            prepare(fp32_path, prepared)
        nodes = _float_nodes(prepared, float_layers)
        quantized = Path(tmp) / "int8.onnx"
        _quantize(prepared, quantized, calibration, method, reduce_range, nodes, calibration_cache, progress)
        proto = onnx.load(str(quantized))
        rewrites = _rewrite(proto, card)
        tuned = _tune(proto, Path(prepared), tuning) if tuning is not None else None
        record = _record(method, reduce_range, float_layers, source, len(calibration), rewrites, tuned)
        int8_card = replace(card, quantization=record.to_dict())
        set_card(proto, int8_card)
        onnx.checker.check_model(proto, full_check=True)
        atomic_write(int8_path, lambda f: f.write(proto.SerializeToString()))
        rows: tuple = ()
        if explain:
            from .explain import explain_int8

            rows = tuple(explain_int8(prepared, int8_path, explain))
    return Int8Result(int8_card, record, rows)


def _float_nodes(prepared: str | os.PathLike, float_layers: Sequence[str]) -> list[str]:
    """The node names of the convolutions named ``float_layers``; an unknown name is one line."""
    layers = conv_layers(onnx.load(str(prepared), load_external_data=False))
    unknown = [name for name in float_layers if name not in layers]
    if unknown:
        raise ExportError(f"no convolution named {unknown[0]!r} in the model (float layers: {', '.join(layers)})")
    return [layers[name] for name in float_layers]


def _quantize(
    prepared: str | os.PathLike,
    quantized: Path,
    calibration: Sequence[np.ndarray],
    method: str,
    reduce_range: bool,
    float_nodes: list[str],
    calibration_cache: str | os.PathLike | None,
    progress: Callable[[str], None] | None,
) -> None:
    """onnxruntime's ``quantize_static`` as flower-edge uses it (see the module's docstring)."""
    lines = ProgressLines(f"int8: calibrating ({method})", len(calibration), progress) if progress else None
    with quantizer_quiet():
        quantize_static(
            str(prepared),
            str(quantized),
            CardCalibrationReader(calibration, lines=lines),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=METHODS[method],
            nodes_to_exclude=float_nodes,
            calibration_cache_path=str(calibration_cache) if calibration_cache else None,
        )


def _record(method, reduce_range, float_layers, source, photos, rewrites, tuned) -> QuantizationRecord:
    return QuantizationRecord(
        "onnxruntime.quantization.quantize_static",
        "QDQ",
        "uint8, per tensor, asymmetric; logits float",
        f"int8, per channel, symmetric, {7 if reduce_range else 8}-bit",
        tuple(float_layers),
        method,
        source,
        photos,
        reduce_range=reduce_range,
        rewrites=rewrites,
        tuning=tuned,
    )


def _rewrite(proto: onnx.ModelProto, card: ModelCard) -> dict[str, str]:
    """export/int8_rewrites.py on the quantized graph; what each that applied did, for the card."""
    float_output(proto)
    done = {}
    if exact_input(proto, card):
        done["input"] = "pixel levels exactly on the uint8 grid (shifted half a step, stem bias corrected)"
    if align_input_channels(proto):
        done["input_channels"] = "padded with zero channels to a multiple of 4 (the stem's fast kernel)"
    return done


def prepare(fp32_path: str | os.PathLike, prepared: str | os.PathLike) -> None:
    """onnxruntime's ``quant_pre_process`` (shape inference and graph optimization) and
    :func:`global_pooling`, before quantizing."""
    with quantizer_quiet():
        quant_pre_process(str(fp32_path), str(prepared))
    proto = onnx.load(str(prepared))
    if global_pooling(proto):
        onnx.save(proto, str(prepared))


def _tune(proto: onnx.ModelProto, prepared: Path, tuning: Tuning) -> TuningRecord:
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
    return TuningRecord(
        tuning.source,
        len(tuning.photos),
        tuning.epochs,
        tuple(report.losses),
        report.start,
        report.trained_parameters / report.parameters,
    )


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
