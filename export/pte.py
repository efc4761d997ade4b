"""ExecuTorch: model.pte and model.int8.pte, lowered to the XNNPACK delegate.

    flower-export runs/flower.pth --format pte,pte-int8             # needs the [executorch] extra
    run = runner("model.int8.pte"); logits = run(x)                 # x: (N, 3, H, W) float32
    read_card("model.pte")

The program is ``torch.export`` -> ``to_edge_transform_and_lower`` with ``XnnpackPartitioner`` ->
``to_executorch``; the int8 one is quantized first with the XNNPACK quantizer (PT2E static,
per-channel symmetric int8 weights, int8 activations), calibrated on the photos the ONNX int8 file
uses. Input and output stay float (the quantize and dequantize steps are inside). Input is NCHW,
batch 1. The card travels inside as a constant method, ``flower_edge_card``, returning the card's
JSON as uint8 bytes: an app reads it with ``module.execute("flower_edge_card")``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from flower_edge.common.errors import CardError, ExportError
from flower_edge.common.files import atomic_write
from flower_edge.common.processes import native_stderr_silenced
from flower_edge.runtime.card import ModelCard

from .job import Written

if TYPE_CHECKING:
    from .formats import Format
    from .job import WriteJob

CARD_METHOD = "flower_edge_card"


def write(job: WriteJob, fmt: Format) -> Written:
    """The format table's writer (export/formats.py)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    card, model = job.card, job.model.eval()
    example = (torch.zeros(1, *card.input_size),)
    if fmt.int8:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        from .pt2e import calibrated_within_budget, quantization_record

        def quantizer():
            return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))

        model, _, layers, trials = calibrated_within_budget(job, model, example, quantizer, fmt.key)
        card = replace(card, quantization=quantization_record("executorch", "XNNPACKQuantizer", job, layers, trials))
    job.progress(f"{fmt.key}: lowering to XNNPACK")
    card_bytes = torch.tensor(list(card.to_json().encode()), dtype=torch.uint8)
    try:
        program = to_edge_transform_and_lower(
            torch.export.export(model, example),
            partitioner=[XnnpackPartitioner()],
            constant_methods={CARD_METHOD: card_bytes},
        ).to_executorch()
    except Exception as e:  # exir raises many kinds; the line says which step failed
        raise ExportError(
            f"{fmt.key}: ExecuTorch could not lower the model ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300] if str(e) else ''})"
        ) from e
    atomic_write(job.staging / fmt.file, lambda f: f.write(program.buffer))
    return Written()


def _program(path: str | os.PathLike):
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's import-time notice
    from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path))


def read_card(path: str | os.PathLike) -> ModelCard:
    program = _program(path)
    if CARD_METHOD not in program.method_names:
        raise CardError(f"{path}: has no flower-edge model card (no {CARD_METHOD} method)")
    with native_stderr_silenced():
        data = program.load_method(CARD_METHOD).execute([])[0]
    return ModelCard.from_json(bytes(data.numpy().astype(np.uint8).tolist()).decode())


def runner(path: str | os.PathLike, threads: int | None = None):
    """A function from a float batch (N, 3, H, W) to logits, one image per call (XNNPACK picks
    its own thread count)."""
    import torch

    program = _program(path)
    with native_stderr_silenced():
        method = program.load_method("forward")

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [method.execute([torch.from_numpy(np.ascontiguousarray(image[None]))])[0].numpy() for image in x]
        )

    return run
