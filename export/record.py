"""What an int8 file's card says about how it was made: one typed record for every int8 format.

    record = QuantizationRecord("onnxruntime.quantization.quantize_static", "QDQ", ...)
    card = replace(card, quantization=record.to_dict())       # the card holds plain JSON

The card is the contract every reader shares (runtime/card.py), so the record is stored as the dict
it has always been: the same keys for the ONNX file (export/quantize.py) and the PT2E files
(export/pt2e.py), with the fields only one of them has left out of the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class TuningRecord:
    """Distillation of the int8 graph into the float answers (export/tune.py), as it went."""

    data: str
    photos: int
    epochs: int
    losses: tuple[float, ...]
    start: Any
    """Where the trained part of the graph starts (export/tune.py TuneReport.start)."""
    trained_weights: float
    """The fraction of the weights that were trained."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "tuning": "distillation: the QDQ graph's weights trained to match the float logits "
            "(straight-through rounding, KL at temperature 2)",
            "tuning_data": self.data,
            "tuning_size": self.photos,
            "tuning_epochs": self.epochs,
            "tuning_loss": [round(v, 5) for v in self.losses],
            "tuning_from": self.start,
            "tuning_trained_weights": round(self.trained_weights, 3),
        }


@dataclass(frozen=True)
class QuantizationRecord:
    tool: str
    format: str
    """"QDQ" (onnxruntime) or "PT2E static" (LiteRT, ExecuTorch)."""
    activations: str
    weights: str
    float_layer_names: tuple[str, ...]
    calibration_method: str
    calibration_data: str
    calibration_size: int
    reduce_range: bool | None = None
    """7-bit weights (onnxruntime only)."""
    rewrites: dict[str, str] = field(default_factory=dict)
    """The graph rewrites applied (export/int8_rewrites.py), by what they touch: "input", "input_channels"."""
    tuning: TuningRecord | str | None = None
    """How the file was tuned; a sentence where it was not (the PT2E files)."""
    budget: dict[str, Any] | None = None
    """The int8 search's budget and what the file measured against it (export/search.py)."""

    def with_budget(self, budget: dict[str, Any]) -> QuantizationRecord:
        return replace(self, budget=budget)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format,
            "activations": self.activations,
            "weights": self.weights,
            "float_layers": len(self.float_layer_names),
            "float_layer_names": list(self.float_layer_names),
            "calibration_method": self.calibration_method,
            "calibration_data": self.calibration_data,
            "calibration_size": self.calibration_size,
            "tool": self.tool,
        }
        if self.reduce_range is not None:
            d["reduce_range"] = self.reduce_range
        d.update(self.rewrites)
        if isinstance(self.tuning, TuningRecord):
            d.update(self.tuning.to_dict())
        else:
            d["tuning"] = self.tuning
        if self.budget is not None:
            d["budget"] = self.budget
        return d
