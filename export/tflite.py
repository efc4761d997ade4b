"""LiteRT (TensorFlow Lite): model.tflite and model.int8.tflite, written by Google's converter.

    flower-export runs/flower.pth --format tflite,tflite-int8       # needs the [litert] extra
    run = runner("model.int8.tflite", threads=2); logits = run(x)   # x: (N, 3, H, W) float32
    read_card("model.tflite")

``litert-torch`` converts the PyTorch model (``torch.export`` underneath); the int8 file is
quantized with its PT2E quantizer (static, per-channel int8 weights, int8 activations), calibrated
on the photos the ONNX int8 file uses, with the stem and the classifier float as there
(export/pt2e.py), so input and output are float (NCHW, batch 1, like the card's ``input_size``).
:func:`runner` also takes files whose input or output is int8, with the scale and zero point in
the tensor details.

The card and the labels travel inside the file as MediaPipe packs associated files: a zip archive
appended after the flatbuffer (``card.json``, ``labels.txt``), which interpreters ignore and any zip
reader opens.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from dataclasses import replace

import numpy as np

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.errors import CardError, ExportError
from flower_edge.runtime.files import native_stderr_silenced

CARD_FILE, LABELS_FILE = "card.json", "labels.txt"


def write(job, fmt) -> list[str]:
    """The format table's writer (export/formats.py)."""
    import torch

    with native_stderr_silenced():  # the converter's C++ start-up notices (absl, oneDNN)
        import litert_torch

    card, model = job.card, job.model.eval()
    example = (torch.zeros(1, *card.input_size),)
    options = {}
    if fmt.int8:
        from litert_torch.quantize import pt2e_quantizer as pq
        from litert_torch.quantize.quant_config import QuantConfig

        from .pt2e import calibrated_within_budget, quantization_card

        def quantizer():
            return pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))

        model, chosen, layers, trials = calibrated_within_budget(job, model, example, quantizer, fmt.key,
                                                                 fold_quantize=False)
        options["quant_config"] = QuantConfig(pt2e_quantizer=chosen)
        card = replace(card, quantization=quantization_card("litert-torch", "PT2EQuantizer", len(job.calibration),
                                                            job.calibration_source, job.int8_plan(), layers, trials))
    job.progress(f"{fmt.key}: converting with litert-torch")
    path = job.staging / fmt.file
    with contextlib.redirect_stdout(io.StringIO()), native_stderr_silenced():  # it prints each step
        try:
            litert_torch.convert(model, example, **options).export(str(path))
        except Exception as e:  # the converter raises many kinds; the line says which step failed
            raise ExportError(f"{fmt.key}: litert-torch could not convert the model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300] if str(e) else ''})") from e
    attach_card(path, card)
    return []


def attach_card(path: str | os.PathLike, card: ModelCard) -> None:
    with zipfile.ZipFile(path, "a") as archive:  # appends an archive after the flatbuffer
        archive.writestr(CARD_FILE, card.to_json())
        archive.writestr(LABELS_FILE, "\n".join(card.labels) + "\n")


def read_card(path: str | os.PathLike) -> ModelCard:
    try:
        with zipfile.ZipFile(path) as archive:
            return ModelCard.from_json(archive.read(CARD_FILE).decode())
    except (zipfile.BadZipFile, KeyError):
        raise CardError(f"{path}: has no flower-edge model card ({CARD_FILE} is not attached)") from None


def runner(path: str | os.PathLike, threads: int | None = None):
    """A function from a float batch (N, 3, H, W) to float logits, one image per invoke."""
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        rows = []
        for image in x:
            interpreter.set_tensor(source["index"], _to_input(image[None], source))
            interpreter.invoke()
            rows.append(_from_output(interpreter.get_tensor(target["index"]), target))
        return np.concatenate(rows)

    return run


def _to_input(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
