"""ONNX: the checkpoint's model as a checked, cleaned-up graph with its model card inside.

    export_onnx(model, card, "model.onnx", opset=18)
    ModelCard.from_onnx("model.onnx")             # the card, read back from metadata_props

The graph comes from PyTorch's dynamo exporter, which folds BatchNorm into the convolutions and
TF-style padding into their pads and runs onnxscript's optimizer over the result. The batch axis
is dynamic; the image side is fixed by the card.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import onnx
import torch
from torch import nn

from flower_edge.common.files import atomic_write
from flower_edge.runtime.card import ONNX_METADATA_KEY, ModelCard

INPUT_NAME, OUTPUT_NAME = "image", "logits"


class EmbeddedPreprocessing(nn.Module):
    """Raw pixels in, logits out: (B, H, W, 3) uint8 RGB, already resized and cropped."""

    def __init__(self, model: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.model = model
        # x / 255 - mean) / std == (x - 255 mean) / (255 std): one subtraction, one division
        self.register_buffer("mean", torch.tensor(card.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(card.std).view(1, 3, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float()  # (B, H, W, 3) -> (B, 3, H, W)
        return self.model((x - self.mean) / self.std)


def embedded_card(card: ModelCard) -> ModelCard:
    from dataclasses import replace

    return replace(card, layout="NHWC", input_dtype="uint8")


def export_onnx(
    model: nn.Module, card: ModelCard, path: str | os.PathLike, opset: int, embed_preprocessing: bool = False
) -> ModelCard:
    """Write ``model`` as ONNX at ``path``; returns the card stored in it."""
    model = model.eval()
    c, h, w = card.input_size
    if embed_preprocessing:
        model, card = EmbeddedPreprocessing(model, card).eval(), embedded_card(card)
        example = torch.zeros(2, h, w, c, dtype=torch.uint8)
    else:
        example = torch.zeros(2, c, h, w)
    batch = torch.export.Dim("batch")
    # The exporter prints its progress and warns about things that do not concern a frozen
    # inference graph; a failure still raises.
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            optimize=True,
            verify=False,
        )
    proto = program.model_proto
    set_card(proto, card)
    onnx.checker.check_model(proto, full_check=True)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))
    return card


def set_card(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Store ``card`` in ``proto.metadata_props`` (replacing an older one)."""
    props = {p.key: p.value for p in proto.metadata_props}
    props[ONNX_METADATA_KEY] = card.to_json()
    onnx.helper.set_model_props(proto, props)
