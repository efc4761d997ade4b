"""Tiny ONNX classifiers built in a second, for tests of the torch-free runtime: no training, no export.

    folder = write_tiny_models(tmp, card)   # model.onnx, model.int8.onnx (+ 7-bit), .ort copies, model.preproc.onnx

The graph is a small convolutional classifier (conv, ReLU6, global mean, linear) with seeded
weights, the card in its metadata as flower-export stores it; the int8 files are onnxruntime's own
static QDQ quantization of it. What flower-run does with a model (preprocess by the card, run, rank,
name) does not depend on what the weights learned; tests/export checks the real exported files.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flower_edge.runtime.card import ONNX_METADATA_KEY, ModelCard

SIDE = 64
WIDTH = 8


def tiny_card(labels: tuple[str, ...], class_ids: tuple[str, ...]) -> ModelCard:
    """A card like the tiny trained model's: 64 px, EfficientNet-Lite's normalization."""
    return ModelCard(
        arch="tiny_test_net",
        labels=labels,
        class_ids=class_ids,
        input_size=(3, SIDE, SIDE),
        resize_size=SIDE,
        crop_size=SIDE,
        interpolation="bilinear",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )


def _graph(card: ModelCard, pixels: bool, seed: int) -> onnx.GraphProto:
    rng = np.random.default_rng(seed)
    classes = card.num_classes
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (WIDTH, 3, 3, 3)).astype(np.float32), "conv.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, WIDTH).astype(np.float32), "conv.bias"),
        numpy_helper.from_array(np.float32(0.0), "zero"),
        numpy_helper.from_array(np.float32(6.0), "six"),
        numpy_helper.from_array(rng.normal(0, 1.0, (classes, WIDTH)).astype(np.float32), "head.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, classes).astype(np.float32), "head.bias"),
    ]
    nodes = []
    first = "image"
    if pixels:  # (N, H, W, 3) uint8 -> normalized (N, 3, H, W), as --embed-preprocessing writes it
        inits += [
            numpy_helper.from_array(np.array(card.mean, np.float32).reshape(1, 3, 1, 1) * 255, "mean"),
            numpy_helper.from_array(np.array(card.std, np.float32).reshape(1, 3, 1, 1) * 255, "std"),
        ]
        nodes += [
            helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Sub", ["nchw", "mean"], ["centred"]),
            helper.make_node("Div", ["centred", "std"], ["normalized"]),
        ]
        first = "normalized"
    nodes += [
        helper.make_node(
            "Conv", [first, "conv.weight", "conv.bias"], ["conv"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Clip", ["conv", "zero", "six"], ["relu6"]),
        helper.make_node("GlobalAveragePool", ["relu6"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
        helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"], name="head", transB=1),
    ]
    if pixels:
        image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", SIDE, SIDE, 3])
    else:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])
    return helper.make_graph(nodes, "tiny", [image], [logits], inits)


def write_onnx(path: Path, card: ModelCard, *, pixels: bool = False, seed: int = 0) -> Path:
    if pixels:
        card = replace(card, layout="NHWC", input_dtype="uint8")
    model = helper.make_model(_graph(card, pixels, seed), opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    set_card(model, card)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def set_card(model: onnx.ModelProto, card: ModelCard) -> None:
    helper.set_model_props(model, {ONNX_METADATA_KEY: card.to_json()})


def write_int8(source: Path, path: Path, card: ModelCard, *, reduce_range: bool = False) -> Path:
    """onnxruntime's static QDQ quantization of ``source`` (uint8 activations, int8 weights per
    channel), calibrated on seeded random photos, with an int8 card that says so."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    photos = iter(np.random.default_rng(1).uniform(-1, 1, (8, 1, 3, SIDE, SIDE)).astype(np.float32))

    class Reader(CalibrationDataReader):
        def get_next(self):
            x = next(photos, None)
            return None if x is None else {"image": x}

    quantize_static(
        str(source),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    model = onnx.load(str(path))
    set_card(model, replace(card, quantization={"format": "QDQ", "reduce_range": reduce_range}))
    onnx.save(model, str(path))
    return path


def write_ort(source: Path, path: Path) -> Path:
    """ONNX Runtime Mobile's .ort copy, made as export/ort.py makes it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return path


def write_tiny_models(folder: Path, card: ModelCard) -> Path:
    """Every file kind flower-run opens, in ``folder``, named as flower-export names them."""
    write_onnx(folder / "model.onnx", card)
    write_int8(folder / "model.onnx", folder / "model.int8.onnx", card)
    write_int8(folder / "model.onnx", folder / "model.7bit.int8.onnx", card, reduce_range=True)
    write_ort(folder / "model.onnx", folder / "model.ort")
    write_ort(folder / "model.int8.onnx", folder / "model.int8.ort")
    write_onnx(folder / "model.preproc.onnx", card, pixels=True)
    return folder
