"""What the int8 search (export/search.py) tried and chose: candidates, trials, the plan, its table.

plan.chosen                                  # Trial of Candidate(float_layers=(...), method="minmax", tune=False)
plan.budget()                                # what the int8 cards record
print(search_table(plan))                    # every candidate tried: agreement, latency, size
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .quantize import Int8Result


@dataclass(frozen=True)
class Candidate:
    float_layers: tuple[str, ...] = ()
    """Convolutions kept float, by layer name (export/int8_rewrites.py conv_layers)."""
    method: str = "minmax"
    tune: bool = False

    def describe(self) -> str:
        layers = f"{len(self.float_layers)} float layer{'s' if len(self.float_layers) != 1 else ''}"
        return f"{layers}, {self.method}{', tuned' if self.tune else ''}"


@dataclass
class Trial:
    candidate: Candidate
    agreement: float | None
    """Top-1 agreement with PyTorch on the held-out photos (None: there were none)."""
    latency_ms: float
    """Median batch-1 latency on this machine."""
    size: int
    """Bytes of the ONNX file."""
    passed: bool
    seconds: float
    """What trying it took: quantizing (calibrating, tuning), measuring."""
    path: Path = field(compare=False, repr=False, default=Path())
    result: Int8Result | None = field(compare=False, repr=False, default=None)
    float_latency_ms: float = 0.0
    """The float model's, measured in the same rounds as this candidate's."""

    @property
    def speedup(self) -> float:
        return self.float_latency_ms / self.latency_ms if self.latency_ms else 0.0

    def to_dict(self) -> dict:
        row = {k: getattr(self, k) for k in ("agreement", "latency_ms", "size", "passed", "seconds")}
        row["speedup"] = round(self.speedup, 3)
        return {
            **asdict(self.candidate),
            "float_layers": len(self.candidate.float_layers),
            "float_layer_names": list(self.candidate.float_layers),
            **row,
            "latency_ms": round(self.latency_ms, 3),
            "seconds": round(self.seconds, 1),
        }


@dataclass
class Int8Plan:
    """What the search chose and everything it tried."""

    chosen: Trial
    trials: list[Trial]
    floor: float
    """The least agreement the budget allows."""
    max_drop: float
    """The budget in points: 100 * (1 - floor)."""
    photos: int
    """Held-out photos the agreement was measured on."""
    float_latency_ms: float
    prepared: Path
    """The float graph every candidate was quantized from (after quant_pre_process)."""
    order: list[str] | None = None
    """The convolutions, the one whose int8 error costs most first (None: not measured yet)."""

    def float_order(self, job) -> list[str]:
        """:attr:`order`, measured now on the first (all-int8) candidate if the search stopped there."""
        if self.order is None:
            import onnx

            from .int8_rewrites import conv_layers
            from .search import sensitivity_order

            layers = list(conv_layers(onnx.load(str(self.prepared), load_external_data=False)))
            self.order = sensitivity_order(job, self.prepared, self.trials[0].path, layers)
        return self.order

    @property
    def met(self) -> bool:
        return self.chosen.passed

    def budget(self) -> dict:
        """What the card records: the budget, and what the chosen file measured against it."""
        return {
            "max_drop_points": round(self.max_drop, 4),
            "agreement_floor": self.floor,
            "agreement": self.chosen.agreement,
            "photos": self.photos,
            "met": self.met,
            "speedup": round(self.chosen.speedup, 3),
            "candidates_tried": len(self.trials),
        }

    def to_dict(self) -> dict:
        return {
            "budget": self.budget(),
            "float_latency_ms": round(self.float_latency_ms, 3),
            "chosen": self.trials.index(self.chosen),
            "candidates": [t.to_dict() for t in self.trials],
        }


def search_table(plan: Int8Plan) -> str:
    """The candidates as tried, the chosen one marked."""
    lines = [
        f"int8 candidates (budget: top-1 agreement >= {plan.floor:.2%} on {plan.photos} held-out photos, "
        f"{_flips_allowed(plan)}; float {plan.float_latency_ms:.2f} ms)",
        f"  {'#':>2} {'candidate':<34} {'agreement':>9} {'latency':>10} {'speed-up':>8} {'size':>8} {'time':>7}",
    ]
    for i, t in enumerate(plan.trials, 1):
        mark = "*" if t is plan.chosen else " "
        agreement = "-" if t.agreement is None else f"{t.agreement:.2%}"
        lines.append(
            f"{mark} {i:>2} {t.candidate.describe():<34} {agreement:>9} {t.latency_ms:>7.2f} ms "
            f"{t.speedup:>7.2f}x {t.size / 1e6:>5.2f} MB {t.seconds:>5.0f} s"
        )
    verdict = "meets the budget" if plan.met else "the best found; none met the budget"
    lines.append(f"* chosen: {plan.chosen.candidate.describe()} ({verdict})")
    return "\n".join(lines)


def _flips_allowed(plan: Int8Plan) -> str:
    """The budget in photos: on a few hundred held-out photos a budget of a few tenths of a point
    allows no flip at all, which explains a search that finds nothing on an unsure model."""
    allowed = math.floor(plan.photos * (1 - plan.floor) + 1e-9)
    return "so no photo may flip" if allowed == 0 else f"so at most {allowed} may flip"
