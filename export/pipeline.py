"""flower-export's one library call: checkpoint in, verified model files out.

    result = export(ExportConfig("runs/flower.pth", format="all", quantize=True))
    print(parity_table(result.parity))

Every file is written into a hidden staging folder inside the output folder, verified against the
PyTorch model, and only then renamed into place: a failed check leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.errors import ExportError
from flower_edge.runtime.files import atomic_write, remove_stale
from flower_edge.runtime.image import normalize, pixels, preprocess

from .config import ExportConfig
from .formats import Format, WriteJob, logits
from .images import ImageSets, choose_images, read_photos
from .verify import Parity, compare, parity_table, torch_logits

CARD, LABELS, REPORT = "card.json", "labels.json", "export.json"
STAGING = ".flower-export-"
"""The hidden staging folder's prefix, followed by the exporting process's id."""


@dataclass
class ExportResult:
    output: Path
    files: list[Path]
    parity: list[Parity]
    card: ModelCard
    int8_card: ModelCard | None
    images: ImageSets | None
    seconds: float
    formats: list[str] = field(default_factory=list)
    """The keys of the formats written (export/formats.py)."""
    skipped: list[str] = field(default_factory=list)
    """One line per broken calibration or verification photo."""
    explain: list = field(default_factory=list)
    """With ``explain``: the int8 error of every layer (export/explain.py LayerError rows)."""

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
            "formats": self.formats,
            "files": {p.name: p.stat().st_size for p in self.files},
            "parity": [r.to_dict() for r in self.parity],
            "quantization": dict(self.int8_card.quantization) if self.int8_card else None,
            "verification_images": len(self.images.verification) if self.images else 0,
            "verification_source": self.images.verification_source if self.images else None,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
            "explain": [r.to_dict() for r in self.explain],
        }


def export(config: ExportConfig, progress: Callable[[str], None] = lambda message: None) -> ExportResult:
    from flower_edge.train.checkpoint import load_model

    start = time.perf_counter()
    formats, notes = config.formats()
    for note in notes:
        progress(note)
    model, card, ckpt = load_model(config.checkpoint)
    card = replace(card, provenance={**card.provenance, "exported_from": Path(config.checkpoint).name,
                                     "export_date": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    output = Path(config.output) if config.output else Path(config.checkpoint).resolve().parent
    _check_writable(output)
    for stale in remove_stale(output, STAGING) + remove_stale(output, f".{REPORT}."):
        progress(f"removed {stale.name}, left in {output} by an export that was killed")

    int8 = any(f.int8 for f in formats)
    images = choose_images(config, ckpt["config"].data, ckpt["config"].valid_fraction) if int8 or config.verify else None
    skipped: list[str] = []
    calibration, tuning, verification, verification_pixels = [], [], np.zeros((0,)), []
    if images:
        progress(f"reading {len(images.calibration) if int8 else 0} calibration, "
                 f"{len(images.tuning) if int8 else 0} tuning and {len(images.verification)} verification photos")
        if int8:  # the calibration photos are the tuning pool's first ones: read each once
            pool = list(dict.fromkeys(images.calibration + images.tuning))
            arrays, broken = read_photos(pool, lambda img: preprocess(img, card), keep_paths=True)
            skipped += broken
            calibration = [arrays[p] for p in images.calibration if p in arrays]
            tuning = [arrays[p] for p in images.tuning if p in arrays]
        verification_pixels, broken = read_photos(images.verification, lambda img: pixels(img, card))
        skipped += broken
        if config.verify and not verification_pixels:
            raise ExportError(f"{images.verification_source}: none of its photos could be read")
        verification = np.stack([normalize(p, card) for p in verification_pixels]) if verification_pixels else verification

    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=output))
    try:
        job = WriteJob(model, card, config, staging, calibration, tuning, images, progress)
        written = _write_all(job, formats)
        parity: list[Parity] = []
        if config.verify:
            parity = _verify(config, model, staging, formats, verification, np.stack(verification_pixels), progress)
            failed = {r.name for r in parity if not r.passed}
            if failed:
                hint = ""
                if failed & {"onnx-int8", "ort-int8"}:
                    hint = (" (int8 under --min-agreement: --tune makes it answer like the float model"
                            if not config.tune else " (int8 under --min-agreement even tuned: try more --tune-epochs")
                    hint += ", or lower --min-agreement)"
                elif failed & {f.key for f in formats if f.int8}:
                    hint = " (int8 under --min-agreement: lower it, or use onnx-int8 with --tune)"
                raise ExportError(f"verification failed{hint}; no file was written\n" + parity_table(parity))
        final = []
        for name in written:
            os.replace(staging / name, output / name)
            final.append(output / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    quantized = job.int8
    result = ExportResult(output, final, parity, card, quantized.card if quantized else None, images,
                          time.perf_counter() - start, [f.key for f in formats], skipped,
                          (quantized.explain or []) if quantized else [])
    report = {"config": config.to_dict(), **result.to_dict()}
    atomic_write(output / REPORT, lambda f: f.write(json.dumps(report, indent=2).encode()))
    result.files.append(output / REPORT)
    return result


def _write_all(job: WriteJob, formats: list[Format]) -> list[str]:
    """Each format's file into the staging folder, in the table's order (sources first)."""
    written: list[str] = []
    for fmt in formats:
        written += [fmt.file, *fmt.function("write")(job, fmt)]
    (job.staging / CARD).write_text(job.card.to_json())
    (job.staging / LABELS).write_text(json.dumps(list(job.card.labels), indent=2, ensure_ascii=False))
    return list(dict.fromkeys(written + [CARD, LABELS]))


def _verify(config: ExportConfig, model, staging: Path, formats: list[Format], x: np.ndarray,
            raw: np.ndarray, progress: Callable[[str], None]) -> list[Parity]:
    """Every written format run by its own runtime on the verification photos, against PyTorch."""
    reference = torch_logits(model, x)
    rows = []
    for fmt in formats:
        progress(f"verifying {fmt.key} on {len(x)} photos")
        out = logits(fmt.open(staging / fmt.file), raw if fmt.takes_pixels else x)
        if fmt.int8:
            rows.append(compare(fmt.key, reference, out, min_agreement=config.min_agreement))
        else:
            rows.append(compare(fmt.key, reference, out, atol=config.atol * fmt.atol_scale))
    return rows


def _check_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{output}: cannot create the output folder ({e.strerror})") from None
    if not output.is_dir():
        raise ExportError(f"{output}: is not a folder")
    if not os.access(output, os.W_OK | os.X_OK):
        raise ExportError(f"{output}: the output folder is not writable")
