"""Parity: every exported file against the PyTorch model it came from, on real photos.

    run = FORMATS["onnx"].open("model.onnx")                       # export/formats.py
    rows = [compare("onnx", torch_logits(model, x), logits(run, x), atol=1e-4)]
    print(parity_table(rows))

Float formats must match the logits within ``atol`` and agree on every top-1; int8 must agree on
at least ``min_agreement`` of the top-1 answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

BATCH = 32


@dataclass(frozen=True)
class Parity:
    name: str
    images: int
    max_abs_diff: float
    """Largest |logit difference| from PyTorch over every image and class."""
    top1_agreement: float
    top5_overlap: float
    """Mean share of PyTorch's top-5 (top-k for fewer classes) that the format also ranks top-5."""
    requirement: str
    passed: bool
    host_agreement: float | None = None
    """For a row run on another machine (``onnx-int8 (arm64)``): top-1 agreement with the build
    machine's run of the same file."""

    @property
    def format(self) -> str:
        """The format key of the row (``tflite`` of ``tflite (MediaPipe)``): the file it passes or fails."""
        return self.name.split(" ")[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + BATCH])).numpy() for i in range(0, len(x), BATCH)])


def compare(
    name: str,
    reference: np.ndarray,
    logits: np.ndarray,
    *,
    atol: float | None = None,
    min_agreement: float | None = None,
) -> Parity:
    """Parity of ``logits`` with ``reference`` (both (N, classes)) against one requirement."""
    assert reference.shape == logits.shape, (reference.shape, logits.shape)
    k = min(5, reference.shape[1])
    diff = float(np.abs(reference - logits).max()) if reference.size else 0.0
    agreement = float((reference.argmax(1) == logits.argmax(1)).mean())
    top_ref, top_out = np.argsort(-reference, 1)[:, :k], np.argsort(-logits, 1)[:, :k]
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out)]))
    if atol is not None:
        passed = diff <= atol and agreement == 1.0
        requirement = f"|diff| <= {atol:g}, top-1 100%"
    else:
        min_agreement = 0.0 if min_agreement is None else min_agreement
        passed = agreement >= min_agreement
        requirement = f"top-1 >= {100 * min_agreement:.4g}%"  # 99.8%, not a rounded 100%
    return Parity(name, len(reference), diff, agreement, overlap, requirement, bool(passed and np.isfinite(diff)))


def parity_table(rows: list[Parity]) -> str:
    lines = [f"{'format':<24} {'images':>6} {'max |diff|':>11} {'top-1 agree':>11} {'top-5 overlap':>13}  requirement"]
    for r in rows:
        verdict = "ok" if r.passed else "FAILED"
        host = "" if r.host_agreement is None else f" (top-1 as on this machine: {r.host_agreement:.2%})"
        lines.append(
            f"{r.name:<24} {r.images:>6} {r.max_abs_diff:>11.2e} {r.top1_agreement:>11.2%} "
            f"{r.top5_overlap:>13.2%}  {r.requirement}: {verdict}{host}"
        )
    return "\n".join(lines)
