"""TorchScript: the checkpoint's model traced and frozen.

    export_torchscript(model, card, "model.pt")
    module, card = load_torchscript("model.pt")         # the card travels inside

PyTorch Mobile's lite interpreter (``optimize_for_mobile``, ``_save_for_lite_interpreter``) is
deprecated in favour of ExecuTorch, so phones get the ONNX files; ``model.pt`` is for servers
and C++ (libtorch) users.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from flower_edge.common.files import atomic_write
from flower_edge.runtime.card import ModelCard

from .job import Written

if TYPE_CHECKING:  # torch is imported when a function runs: the format table imports this module
    import torch
    from torch import nn

    from .formats import Format
    from .job import WriteJob

CARD_FILE = "card.json"


def export_torchscript(model: nn.Module, card: ModelCard, path: str | os.PathLike) -> None:
    import torch

    model = model.eval()
    example = torch.zeros(2, *card.input_size)  # (B, 3, H, W); batch 2 so no size-1 shape is baked in
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's own deprecation notice
        # Frozen (weights inlined as constants) without the passes that change numerics (folding
        # BatchNorm into the convolutions moved logits by 2e-5), so the file matches eager PyTorch
        # to 1e-5. Not optimize_for_inference(): its MKLDNN constants do not survive save and load.
        frozen = torch.jit.freeze(torch.jit.trace(model, example), optimize_numerics=False)
        atomic_write(path, lambda f: torch.jit.save(frozen, f, _extra_files={CARD_FILE: card.to_json()}))


def load_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, ModelCard]:
    import torch

    extra = {CARD_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, ModelCard.from_json(extra[CARD_FILE])


def write(job: WriteJob, fmt: Format) -> Written:
    """The format table's writer (export/formats.py)."""
    job.progress("TorchScript: tracing and freezing")
    export_torchscript(job.model, job.card, job.staging / fmt.file)
    return Written()


def runner(path: str | os.PathLike, threads: int | None = None):
    import torch

    module = load_torchscript(path)[0]
    if threads:
        torch.set_num_threads(threads)

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def read_card(path: str | os.PathLike) -> ModelCard:
    return load_torchscript(path)[1]
