"""int8 by budget: the fastest int8 model whose top-1 answers stay within ``--max-drop`` of PyTorch's.

    plan = search(job, "model.onnx", scratch)    # job: export/job.py WriteJob
    plan.chosen                                  # Candidate(float_layers=(...), method="minmax", tune=False)
    print(search_table(plan))                    # every candidate tried: agreement, latency, size

Quantizing everything is fastest, but on a model that is unsure of many photos it flips answers.
The knobs that win the answers back cost speed, and what a model needs is only known by trying,
so the search tries candidates in the order of what they cost, and stops at the first that keeps
the budget (agreement with PyTorch on held-out photos the calibration never saw: the verification
photos, whose float answers are computed once):

1. float layers, 0, 1, 2, 4, 6, 8, 16, each count two ways: the convolutions that lose most
   (export/explain.py's figures on the all-int8 candidate: where the int8 model's accumulated
   error grows most), then the first convolutions of the network. Neither order wins everywhere:
   on the flowers5 default model the first 6 agreed on 97.2% of the valid photos and the best of
   the sensitivity order on 95.3%; on Flowers102 both reached 99.76%. One calibration serves every
   candidate of a method (onnxruntime's calibration cache).
2. the other calibration methods (entropy, percentile), at the float layers that agreed best;
3. ``--tune`` (export/tune.py), only when nothing else kept the budget (minutes rather than
   seconds): of the fastest candidate, then of the one that agreed best if that was not enough.

Each candidate's latency is measured on this machine, batch 1, through the session flower-run uses
(runtime/session.py). Fixed knobs (``--float-layers``, ``--calib-method``, ``--tune/--no-tune``)
take no part in the search. The LiteRT and ExecuTorch int8 files keep the same layers float.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import CALIB_METHODS

if TYPE_CHECKING:
    from .job import WriteJob
    from .quantize import Int8Result

LADDER = (0, 1, 2, 4, 6, 8, 16)
"""Float-layer counts tried, in order (6: EfficientNet-Lite's stem and first two blocks, the 112 x 112 part)."""
EXPLAIN_PHOTOS = 16
"""Photos for the sensitivity order (explain_int8 keeps every intermediate tensor of each)."""
LATENCY_SECONDS = 1.0
"""Batch-1 runs of each candidate, and of the float model beside it, for about this long each."""
ROUNDS = 4
"""Interleaved rounds of those runs: candidate and float model alternate."""


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


def search(job: WriteJob, fp32: Path, scratch: Path) -> Int8Plan:
    """Quantize ``fp32`` (the float ONNX file) as ``job.options.int8`` allows, cheapest candidate first,
    until one keeps the budget; the files are written into ``scratch``."""
    import onnx

    from flower_edge.runtime.session import open_session

    from .formats import logits
    from .int8_rewrites import conv_layers
    from .quantize import prepare

    opts = job.options.int8
    floor = opts.floor
    x = job.verification
    reference = job.reference_logits().argmax(1) if len(x) else None
    prepared = scratch / "prepared.onnx"
    job.progress("int8: preparing the float graph (onnxruntime quant_pre_process)")
    prepare(fp32, prepared)
    layers = list(conv_layers(onnx.load(str(prepared), load_external_data=False)))
    methods = [opts.method] if opts.method else list(CALIB_METHODS)
    float_session = open_session(fp32)
    float_times: list[float] = []
    trials: list[Trial] = []

    def attempt(candidate: Candidate, tuning=None) -> Trial:
        from .quantize import quantize_int8

        start = time.perf_counter()
        n = len(trials) + 1
        path = scratch / f"candidate-{n}.onnx"
        if tuning is not None:
            job.progress(f"int8 candidate {n}: tuning {candidate.describe().removesuffix(', tuned')}")
        calibrates = tuning is None and candidate.method not in {t.candidate.method for t in trials}
        if calibrates:
            job.progress(f"int8: calibrating ({candidate.method}) on {len(job.calibration)} photos")
        result = quantize_int8(
            fp32,
            path,
            job.card,
            job.calibration,
            method=candidate.method,
            reduce_range=opts.reduce_range,
            float_layers=candidate.float_layers,
            source=job.calibration_source,
            tuning=tuning,
            prepared=prepared,
            calibration_cache=scratch / f"ranges-{candidate.method}.json",
            progress=job.progress if calibrates else None,
        )
        session = open_session(path)
        agreement = None
        if reference is not None:
            name = session.get_inputs()[0].name
            answers = logits(lambda batch: session.run(None, {name: batch})[0], x).argmax(1)
            agreement = float((answers == reference).mean())
        float_ms, latency = _latencies([float_session, session], x, job.card)
        float_times.append(float_ms)
        trial = Trial(
            candidate,
            agreement,
            latency,
            path.stat().st_size,
            agreement is None or agreement >= floor,
            time.perf_counter() - start,
            path,
            result,
            float_ms,
        )
        trials.append(trial)
        shown = "not measured (no held-out photos)" if agreement is None else f"agreement {agreement:.2%}"
        job.progress(
            f"int8 candidate {n}: {candidate.describe()}: {shown} (floor {floor:.2%}), "
            f"{trial.latency_ms:.2f} ms ({trial.speedup:.2f}x float), "
            f"{trial.size / 1e6:.2f} MB"
        )
        return trial

    def best() -> Trial:  # highest agreement, then fastest
        return max(trials, key=lambda t: (t.agreement or 0.0, -t.latency_ms))

    # The untuned ladder runs first even with --tune: it finds what to tune.
    passed: Trial | None = None
    order: list[str] | None = None
    ladder = [tuple(layers[: opts.float_layers or 0])]
    while len(trials) < len(ladder) and passed is None:
        trial = attempt(Candidate(ladder[len(trials)], methods[0]))
        if trial.passed:
            passed = trial
        elif opts.float_layers is None and len(ladder) == 1 and reference is not None:
            order = sensitivity_order(job, prepared, trial.path, layers)
            for k in LADDER[1:]:  # at each count, the sensitivity order's layers, then the first ones
                ladder += list(dict.fromkeys(tuple(names[:k]) for names in (order, layers) if k <= len(names)))
    for method in methods[1:] if passed is None and reference is not None else ():
        trial = attempt(Candidate(best().candidate.float_layers, method))
        if trial.passed:
            passed = trial
            break
    if opts.tune.when or (opts.tune.when is None and passed is None and reference is not None):
        # Tuning wins back most flipped answers wherever it starts, so it starts from the fastest
        # candidate (the first), and from the most faithful one only if that was not enough.
        starts = [passed.candidate] if passed else [trials[0].candidate, best().candidate]
        for base in dict.fromkeys(starts):
            tuned = attempt(Candidate(base.float_layers, base.method, tune=True), job.tuning())
            if tuned.passed:
                passed = tuned
                break
    chosen = passed or best()
    if order is not None and chosen.candidate.float_layers == tuple(layers[: len(chosen.candidate.float_layers)]):
        order = layers  # the first layers won: formats that need more float layers take the next ones
    return Int8Plan(
        chosen, trials, floor, round(100 * (1 - floor), 4), len(x), float(np.median(float_times)), prepared, order
    )


def sensitivity_order(job, prepared: Path, int8: Path, layers: Sequence[str]) -> list[str]:
    """The convolutions by what int8 costs at each, most first: how far export/explain.py's
    accumulated SQNR (the int8 model's tensor against the float model's) falls across the layer, on
    a few calibration photos. On the Flowers102 default model this puts the stem first; the layers
    whose own rounding or weights measure worst (local or weight SQNR) won fewer answers back."""
    from .explain import explain_int8

    photos = job.calibration[:EXPLAIN_PHOTOS]
    job.progress(f"int8: measuring each layer's int8 error on {len(photos)} calibration photos (the search's order)")
    drops: dict[str, float] = {}
    before = None
    for row in explain_int8(prepared, int8, photos):
        if row.accumulated_db is None:
            continue
        if row.layer in layers and before is not None:
            drops[row.layer] = max(drops.get(row.layer, -np.inf), before - row.accumulated_db)
        before = row.accumulated_db
    ranked = sorted(drops, key=lambda name: -drops[name])
    return ranked + [name for name in layers if name not in drops]


def _latencies(sessions: list, x: np.ndarray, card, rounds: int = ROUNDS) -> list[float]:
    """Median milliseconds of one photo (a blank one without photos) through each session, in
    interleaved rounds, so that a machine busy with something else slows them all alike."""
    one = x[:1] if len(x) else np.zeros((1, *card.input_size), np.float32)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for session, spent in zip(sessions, times):
            name = session.get_inputs()[0].name
            for _ in range(2):
                session.run(None, {name: one})
            end = time.perf_counter() + LATENCY_SECONDS / rounds
            runs = 0
            while runs < 5 or (time.perf_counter() < end and runs < 300):
                start = time.perf_counter()
                session.run(None, {name: one})
                spent.append(time.perf_counter() - start)
                runs += 1
    return [float(np.median(t) * 1000) for t in times]


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
