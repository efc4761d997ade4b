"""flower-export's one library call: checkpoint in, verified model files out.

    result = export(ExportConfig("runs/flower.pth", format="all", quantize=True))
    print(parity_table(result.parity))

Every file is written into a hidden staging folder inside the output folder, verified against the
PyTorch model, and only then renamed into place: a failed check leaves nothing behind
(export/folder.py). One pass: the formats and the model, the photos, the files, their checks,
the record.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from flower_edge.common.errors import ExportError
from flower_edge.common.files import disk_space_checked
from flower_edge.common.output import json_text
from flower_edge.common.processes import exclusive, interrupts_deferred, remove_stale
from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.image import normalize, pixels, preprocess

from . import folder, golden
from .config import ExportConfig
from .folder import STAGING
from .formats import FORMATS, Format
from .images import ImageSets, choose_images, read_photos
from .job import WriteJob, Written
from .manifest import CARD, LABELS, listed_files, sha256
from .manifest import MANIFEST as REPORT
from .verify import Parity, parity_table, verify_all, verify_arm64


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
    search: object | None = None
    """export/search.py Int8Plan: the int8 candidates tried and the one chosen."""
    not_written: list[str] = field(default_factory=list)
    """Formats that failed verification, left out while the others were written."""

    sha256: dict[str, str] = field(default_factory=dict)
    """The SHA-256 of each file written, by name: export.json's record of what belongs together."""

    def to_dict(self, folder: Path | None = None) -> dict:
        """As export.json records it; ``folder``: where the files are now (the staging folder)."""
        return {
            "output": str(self.output),
            "formats": self.formats,
            "files": {p.name: ((folder or p.parent) / p.name).stat().st_size for p in self.files},
            "sha256": self.sha256,
            "parity": [r.to_dict() for r in self.parity],
            "quantization": dict(self.int8_card.quantization) if self.int8_card else None,
            "verification_images": len(self.images.verification) if self.images else 0,
            "verification_source": self.images.verification_source if self.images else None,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 1),
            "explain": [r.to_dict() for r in self.explain],
            "int8_search": self.search.to_dict() if self.search else None,
            "not_written": self.not_written,
        }

    @property
    def ok(self) -> bool:
        """Every format asked for was written (and passed verification)."""
        return not self.not_written

    def failure(self) -> str:
        """One line naming what was not written and why, for the CLI's exit."""
        rows = {r.format: r for r in self.parity if not r.passed}
        why = "; ".join(
            f"{rows[k].name}: top-1 agreement {rows[k].top1_agreement:.2%}, max |diff| {rows[k].max_abs_diff:.2g}, "
            f"needs {rows[k].requirement}"
            for k in self.not_written
        )
        hint = next((FORMATS[k].failure_hint for k in self.not_written if FORMATS[k].failure_hint), "")
        return f"verification failed, not written: {why}{hint}; the other files were written"


@dataclass
class _Photos:
    """The photos an export reads, once: normalized for the writers, raw pixels for the checks."""

    images: ImageSets | None = None
    calibration: list[np.ndarray] = field(default_factory=list)
    verification: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    raw: list[np.ndarray] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def export(config: ExportConfig, progress: Callable[[str], None] = lambda message: None) -> ExportResult:
    from flower_edge.train.checkpoint import load_model

    start = time.perf_counter()
    formats = _formats(config, progress)
    model, card, ckpt = load_model(config.checkpoint)
    card = replace(
        card,
        provenance={
            **card.provenance,
            "exported_from": Path(config.checkpoint).name,
            "export_date": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    output = Path(config.output) if config.output else Path(config.checkpoint).resolve().parent
    reads = folder.reads(config, ckpt["config"].data)
    names = [f.file for f in formats] + [CARD, LABELS, golden.GOLDEN, REPORT]
    earlier = folder.claim(output, names, config, reads)
    with exclusive(output / REPORT, "flower-export"):  # one export at a time into a folder
        for stale in remove_stale(output, STAGING) + remove_stale(output, f".{REPORT}."):
            progress(f"removed {stale.name}, left in {output} by an export that was killed")
        photos = _photos(config, ckpt["config"], card, formats, progress)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=output))
        try:
            with disk_space_checked(staging, report_as=output):
                job = WriteJob(
                    model,
                    card,
                    config.write_options(),
                    staging,
                    photos.calibration,
                    photos.images,
                    progress,
                    photos.verification,
                )
                files, reports = _write_all(job, formats)
            parity = _check(config, job, formats, photos, progress)
            result = _result(config, job, formats, files, reports, parity, photos, start, output)
            with disk_space_checked(staging, report_as=output):
                (staging / REPORT).write_text(json_text({"config": config.to_dict(), **result.to_dict(staging)}))
            written = [p.name for p in result.files]
            folder.check_targets(output, written, earlier, config.force, reads)  # the writers' extra files too
            with interrupts_deferred():
                for name in folder.commit(staging, output, [*written, REPORT], listed_files(earlier)):
                    progress(f"removed {name}: the earlier export in {output} wrote it, this one did not")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        result.files.append(output / REPORT)
        return result


def _formats(config: ExportConfig, progress: Callable[[str], None]) -> list[Format]:
    """The formats to write, a line for each that --format all left out; before any work, the line
    that says what to install for --verify-on arm64."""
    formats, notes = config.formats()
    for note in notes:
        progress(note)
    if config.verify_on == "arm64":
        from . import arm64

        problem = arm64.missing()
        if problem:
            raise ExportError(problem)
    return formats


def _photos(config: ExportConfig, trained, card: ModelCard, formats: list[Format], progress) -> _Photos:
    """The calibration photos (for int8 formats) and the verification photos, read once; tuning
    photos are read only if the int8 search tunes (export/search.py)."""
    int8 = any(f.int8 for f in formats)
    if not (int8 or config.verify):
        return _Photos()
    images = choose_images(config, trained.data, trained.valid_fraction, trained.follow_symlinks, int8=int8)
    photos = _Photos(images)
    if int8:
        photos.calibration, broken = read_photos(
            images.calibration, lambda img: preprocess(img, card), progress=progress, what="reading calibration photos"
        )
        photos.skipped += broken
    photos.raw, broken = read_photos(
        images.verification, lambda img: pixels(img, card), progress=progress, what="reading verification photos"
    )
    photos.skipped += broken
    if config.verify and not photos.raw:
        raise ExportError(f"{images.verification_source}: none of its photos could be read")
    if photos.raw:
        photos.verification = np.stack([normalize(p, card) for p in photos.raw])
    return photos


def _check(config: ExportConfig, job: WriteJob, formats: list[Format], photos: _Photos, progress) -> list[Parity]:
    """Every file against PyTorch (export/verify.py), on arm64 too with --verify-on; nothing passed:
    nothing is written."""
    if not config.verify:
        return []
    check, raw = config.check_options(), np.stack(photos.raw)
    parity, outputs = verify_all(job, formats, raw, check, progress)
    if config.verify_on == "arm64":
        parity += verify_arm64(job, formats, raw, outputs, check, config.arm64_photos, progress)
    if {r.format for r in parity if not r.passed} >= {f.key for f in formats}:
        raise ExportError("verification failed; no file was written\n" + parity_table(parity))
    return parity


def _result(
    config: ExportConfig,
    job: WriteJob,
    formats: list[Format],
    files: dict[str, list[str]],
    reports: dict[str, Written],
    parity: list[Parity],
    photos: _Photos,
    start: float,
    output: Path,
) -> ExportResult:
    """What the export wrote (the files of every format that passed) and measured."""
    failed = {r.format for r in parity if not r.passed}
    written = list(dict.fromkeys(name for key, names in files.items() if key not in failed for name in names))
    quantized = reports.get("onnx-int8") if "onnx-int8" not in failed else None
    return ExportResult(
        output,
        [output / name for name in written],
        parity,
        job.card,
        quantized.card if quantized else None,
        photos.images,
        time.perf_counter() - start,
        [f.key for f in formats if f.key not in failed],
        photos.skipped + job.skipped,
        list(quantized.explain) if quantized else [],
        sha256={name: sha256(job.staging / name) for name in written},
        search=job.searched,
        not_written=[f.key for f in formats if f.key in failed],
    )


def _write_all(job: WriteJob, formats: list[Format]) -> tuple[dict[str, list[str]], dict[str, Written]]:
    """Each format's file into the staging folder, in the table's order (sources first): the files
    of each format by its key, and the card and labels under ""; and each writer's report."""
    files: dict[str, list[str]] = {}
    reports: dict[str, Written] = {}
    for fmt in formats:
        reports[fmt.key] = fmt.write(job, fmt)
        files[fmt.key] = [fmt.file, *reports[fmt.key].files]
    (job.staging / CARD).write_text(job.card.to_json())
    (job.staging / LABELS).write_text(json.dumps(list(job.card.labels), indent=2, ensure_ascii=False))
    files[""] = [CARD, LABELS]
    if golden.wanted(formats) and golden.write(job, job.staging / golden.GOLDEN):
        files[""].append(golden.GOLDEN)  # the phone app's self-check (flower-bundle)
    return files, reports
