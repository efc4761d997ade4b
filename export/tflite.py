"""LiteRT (TensorFlow Lite): model.tflite and model.int8.tflite, written by Google's converter, in
the form MediaPipe Tasks' ImageClassifier loads as it is (Android, iOS, web, Python).

    flower-export runs/flower.pth --format tflite,tflite-int8       # needs the [litert] extra
    run = runner("model.int8.tflite", threads=2); scores = run(x)   # x: (N, 3, H, W) float32
    read_card("model.tflite")

``litert-torch`` converts the PyTorch model (``torch.export`` underneath); the int8 file is
quantized with its PT2E quantizer (static, per-channel int8 weights, int8 activations), calibrated
on the photos the ONNX int8 file uses, with the stem and the classifier float as there
(export/pt2e.py). Both files take one float32 photo ``1 x H x W x 3`` (RGB, normalized by the
card's mean and std, which the metadata states for MediaPipe) and give the class probabilities
(softmax in the graph): what MediaPipe shows as scores and flower-run prints. The int8 file takes
float photos too: a variant taking uint8 pixels (normalized inside the graph, before the float
stem) agreed with flower-run through MediaPipe on the same 99.51% of the Flowers102 valid photos at
the same speed (3.4-3.6 ms per photo, the whole MediaPipe pipeline, AMD EPYC), so both files keep
one form. :func:`runner` takes
the normalized ``(N, 3, H, W)`` batch every runner takes and gives log-probabilities (logits up to
a constant per photo), so parity is checked against PyTorch's log-softmax; it also reads the older
NCHW, logit files and files whose input or output is int8.

The metadata (export/tflite_metadata.py, the [mediapipe] extra) names the labels and the card; both
travel inside the file as MediaPipe packs associated files: a zip archive appended after the
flatbuffer (``card.json``, ``labels.txt``), which interpreters ignore and any zip reader opens.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from flower_edge.common.errors import CardError, ExportError
from flower_edge.common.processes import native_stderr_silenced
from flower_edge.runtime.card import ModelCard

from .job import Written
from .tflite_metadata import CARD_FILE, LABELS_FILE

if TYPE_CHECKING:
    from .formats import Format
    from .job import WriteJob


def write(job: WriteJob, fmt: Format) -> Written:
    """The format table's writer (export/formats.py)."""
    import torch

    from . import mediapipe_check, tflite_metadata

    with native_stderr_silenced():  # the converter's C++ start-up notices (absl, oneDNN)
        import litert_torch

    card, model = job.card, job.model.eval()
    options = {}
    if fmt.int8:
        from litert_torch.quantize import pt2e_quantizer as pq
        from litert_torch.quantize.quant_config import QuantConfig

        from .pt2e import calibrated_within_budget, quantization_record

        def quantizer():
            return pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))

        model, chosen, layers, trials = calibrated_within_budget(
            job, model, (torch.zeros(1, *card.input_size),), quantizer, fmt.key, fold_quantize=False
        )
        options["quant_config"] = QuantConfig(pt2e_quantizer=chosen)
        card = replace(card, quantization=quantization_record("litert-torch", "PT2EQuantizer", job, layers, trials))
    card = phone_card(card)
    c, h, w = card.input_size
    job.progress(f"{fmt.key}: converting with litert-torch")
    path = job.staging / fmt.file
    with contextlib.redirect_stdout(io.StringIO()), native_stderr_silenced():  # it prints each step
        try:
            litert_torch.convert(_phone_model(model), (torch.zeros(1, h, w, c),), **options).export(str(path))
        except Exception as e:  # the converter raises many kinds; the line says which step failed
            raise ExportError(
                f"{fmt.key}: litert-torch could not convert the model ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:300] if str(e) else ''})"
            ) from e
    if mediapipe_check.available():  # else export/formats.py select() has said so in one line
        tflite_metadata.write_metadata(path, card)
    attach_card(path, card)
    return Written()


def phone_card(card: ModelCard) -> ModelCard:
    """The card of a .tflite file: one NHWC float photo in, probabilities out."""
    return replace(card, layout="NHWC", output="probabilities")


def _phone_model(model):
    """``model`` taking (1, H, W, 3) normalized photos, as MediaPipe and Android bitmaps lay them
    out, and giving the softmax of its logits, which MediaPipe shows as the scores."""
    import torch

    class PhoneModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.model(x.permute(0, 3, 1, 2)), dim=-1)

    phone = PhoneModel()
    phone.training = False  # not .eval(): the int8 model is an exported graph, which refuses it
    return phone


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
    """A function from a normalized float batch (N, 3, H, W) to float logits (log-probabilities when
    the file gives probabilities, as the card says), one image per invoke."""
    from ai_edge_litert.interpreter import Interpreter

    card = read_card(path)
    with native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    nhwc, probabilities = card.layout == "NHWC", card.output == "probabilities"

    def run(x: np.ndarray) -> np.ndarray:
        rows = []
        for image in x:
            interpreter.set_tensor(
                source["index"], _to_input((image.transpose(1, 2, 0) if nhwc else image)[None], source)
            )
            interpreter.invoke()
            rows.append(_from_output(interpreter.get_tensor(target["index"]), target))
        out = np.concatenate(rows)
        return np.log(np.maximum(out, np.finfo(np.float32).tiny)) if probabilities else out

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
