"""int8 by budget: the fastest int8 model whose top-1 answers stay within ``--max-drop`` of PyTorch's.

    plan = search(job, "model.onnx", scratch)    # job: export/job.py WriteJob
    plan.chosen                                  # Candidate(float_layers=(...), method="minmax", tune=False)
    print(search_table(plan))                    # export/plan.py: every candidate tried, agreement, latency, size

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

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import CALIB_METHODS
from .plan import Candidate, Int8Plan, Trial

if TYPE_CHECKING:
    from .job import WriteJob

LADDER = (0, 1, 2, 4, 6, 8, 16)
"""Float-layer counts tried, in order (6: EfficientNet-Lite's stem and first two blocks, the 112 x 112 part)."""
EXPLAIN_PHOTOS = 16
"""Photos for the sensitivity order (explain_int8 keeps every intermediate tensor of each)."""
LATENCY_SECONDS = 1.0
"""Batch-1 runs of each candidate, and of the float model beside it, for about this long each."""
ROUNDS = 4
"""Interleaved rounds of those runs: candidate and float model alternate."""


def search(job: WriteJob, fp32: Path, scratch: Path) -> Int8Plan:
    """Quantize ``fp32`` (the float ONNX file) as ``job.options.int8`` allows, cheapest candidate first,
    until one keeps the budget; the files are written into ``scratch``."""
    return _Search(job, fp32, scratch).run()


class _Search:
    """One search: the prepared graph, the float model's answers and latency, the candidates tried."""

    def __init__(self, job: WriteJob, fp32: Path, scratch: Path) -> None:
        import onnx

        from flower_edge.runtime.session import open_session

        from .int8_rewrites import conv_layers
        from .quantize import prepare

        self.job, self.fp32, self.scratch, self.opts = job, fp32, scratch, job.options.int8
        self.x = job.verification
        self.reference = job.reference_logits().argmax(1) if len(self.x) else None
        self.prepared = scratch / "prepared.onnx"
        job.progress("int8: preparing the float graph (onnxruntime quant_pre_process)")
        prepare(fp32, self.prepared)
        self.layers = list(conv_layers(onnx.load(str(self.prepared), load_external_data=False)))
        self.methods = [self.opts.method] if self.opts.method else list(CALIB_METHODS)
        self.float_session = open_session(fp32)
        self.float_times: list[float] = []
        self.trials: list[Trial] = []

    def run(self) -> Int8Plan:
        opts, layers = self.opts, self.layers
        # The untuned ladder runs first even with --tune: it finds what to tune.
        passed: Trial | None = None
        order: list[str] | None = None
        ladder = [tuple(layers[: opts.float_layers or 0])]
        while len(self.trials) < len(ladder) and passed is None:
            trial = self.attempt(Candidate(ladder[len(self.trials)], self.methods[0]))
            if trial.passed:
                passed = trial
            elif opts.float_layers is None and len(ladder) == 1 and self.reference is not None:
                order = sensitivity_order(self.job, self.prepared, trial.path, layers)
                for k in LADDER[1:]:  # at each count, the sensitivity order's layers, then the first ones
                    ladder += list(dict.fromkeys(tuple(names[:k]) for names in (order, layers) if k <= len(names)))
        for method in self.methods[1:] if passed is None and self.reference is not None else ():
            trial = self.attempt(Candidate(self.best().candidate.float_layers, method))
            if trial.passed:
                passed = trial
                break
        if opts.tune.when or (opts.tune.when is None and passed is None and self.reference is not None):
            passed = self.tuned(passed)
        chosen = passed or self.best()
        if order is not None and chosen.candidate.float_layers == tuple(layers[: len(chosen.candidate.float_layers)]):
            order = layers  # the first layers won: formats that need more float layers take the next ones
        floor = opts.floor
        return Int8Plan(
            chosen,
            self.trials,
            floor,
            round(100 * (1 - floor), 4),
            len(self.x),
            float(np.median(self.float_times)),
            self.prepared,
            order,
        )

    def tuned(self, passed: Trial | None) -> Trial | None:
        """Tuning wins back most flipped answers wherever it starts, so it starts from the fastest
        candidate (the first), and from the most faithful one only if that was not enough."""
        starts = [passed.candidate] if passed else [self.trials[0].candidate, self.best().candidate]
        for base in dict.fromkeys(starts):
            trial = self.attempt(Candidate(base.float_layers, base.method, tune=True), self.job.tuning())
            if trial.passed:
                return trial
        return passed

    def best(self) -> Trial:
        """The candidate that agreed best, then the fastest of those."""
        return max(self.trials, key=lambda t: (t.agreement or 0.0, -t.latency_ms))

    def attempt(self, candidate: Candidate, tuning=None) -> Trial:
        from .quantize import quantize_int8

        job, start, n = self.job, time.perf_counter(), len(self.trials) + 1
        path = self.scratch / f"candidate-{n}.onnx"
        if tuning is not None:
            job.progress(f"int8 candidate {n}: tuning {candidate.describe().removesuffix(', tuned')}")
        calibrates = tuning is None and candidate.method not in {t.candidate.method for t in self.trials}
        if calibrates:
            job.progress(f"int8: calibrating ({candidate.method}) on {len(job.calibration)} photos")
        result = quantize_int8(
            self.fp32,
            path,
            job.card,
            job.calibration,
            method=candidate.method,
            reduce_range=self.opts.reduce_range,
            float_layers=candidate.float_layers,
            source=job.calibration_source,
            tuning=tuning,
            prepared=self.prepared,
            calibration_cache=self.scratch / f"ranges-{candidate.method}.json",
            progress=job.progress if calibrates else None,
        )
        trial = self.measure(candidate, path, result, time.perf_counter() - start)
        self.trials.append(trial)
        shown = "not measured (no held-out photos)" if trial.agreement is None else f"agreement {trial.agreement:.2%}"
        job.progress(
            f"int8 candidate {n}: {candidate.describe()}: {shown} (floor {self.opts.floor:.2%}), "
            f"{trial.latency_ms:.2f} ms ({trial.speedup:.2f}x float), "
            f"{trial.size / 1e6:.2f} MB"
        )
        return trial

    def measure(self, candidate: Candidate, path: Path, result, seconds: float) -> Trial:
        """A candidate's agreement with PyTorch on the held-out photos and its latency beside the float model's."""
        from flower_edge.runtime.session import open_session

        from .formats import logits

        start = time.perf_counter()
        session = open_session(path)
        agreement = None
        if self.reference is not None:
            name = session.get_inputs()[0].name
            answers = logits(lambda batch: session.run(None, {name: batch})[0], self.x).argmax(1)
            agreement = float((answers == self.reference).mean())
        float_ms, latency = _latencies([self.float_session, session], self.x, self.job.card)
        self.float_times.append(float_ms)
        passed = agreement is None or agreement >= self.opts.floor
        spent = seconds + time.perf_counter() - start
        return Trial(candidate, agreement, latency, path.stat().st_size, passed, spent, path, result, float_ms)


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
