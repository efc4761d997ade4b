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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from flower_edge.common.errors import ExportError, OutputError
from flower_edge.common.files import disk_space_checked
from flower_edge.common.output import check_output_file, check_output_folder, json_text
from flower_edge.common.processes import exclusive, interrupts_deferred, remove_stale
from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.image import normalize, pixels, preprocess
from flower_edge.runtime.predict import log_softmax

from . import golden, mediapipe_check
from .config import CheckOptions, ExportConfig
from .formats import FORMATS, Format, logits
from .images import ImageSets, choose_images, read_photos
from .job import WriteJob, Written
from .manifest import CARD, LABELS, is_export_folder, listed_files, read_manifest, sha256
from .manifest import MANIFEST as REPORT
from .verify import Parity, compare, parity_table

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


def export(config: ExportConfig, progress: Callable[[str], None] = lambda message: None) -> ExportResult:
    from flower_edge.train.checkpoint import load_model

    start = time.perf_counter()
    formats, notes = config.formats()
    for note in notes:
        progress(note)
    if config.verify_on == "arm64":  # before any work: the line that says what to install
        from . import arm64

        problem = arm64.missing()
        if problem:
            raise ExportError(problem)
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
    reads = _reads(config, ckpt["config"].data)
    # The default folder is the checkpoint's own, where flower-train wrote: files go in beside it,
    # and no file there that an earlier export did not write is ever replaced (_check_targets).
    check_output_folder(
        output,
        "--output",
        reads,
        marker=is_export_folder,
        tool="flower-export",
        force=config.force or config.output is None,
        leftovers=(STAGING, f".{REPORT}."),
    )
    _check_writable(output)
    earlier = read_manifest(output)
    _check_targets(
        output, [f.file for f in formats] + [CARD, LABELS, golden.GOLDEN, REPORT], earlier, config.force, reads
    )
    with exclusive(output / REPORT, "flower-export"):  # one export at a time into a folder
        for stale in remove_stale(output, STAGING) + remove_stale(output, f".{REPORT}."):
            progress(f"removed {stale.name}, left in {output} by an export that was killed")

        int8 = any(f.int8 for f in formats)
        trained = ckpt["config"]
        images = (
            choose_images(config, trained.data, trained.valid_fraction, trained.follow_symlinks, int8=int8)
            if int8 or config.verify
            else None
        )
        skipped: list[str] = []
        calibration, verification, verification_pixels = [], np.zeros((0,), np.float32), []
        if images:
            if int8:  # tuning photos are read only if the int8 search tunes (export/search.py)
                calibration, broken = read_photos(
                    images.calibration,
                    lambda img: preprocess(img, card),
                    progress=progress,
                    what="reading calibration photos",
                )
                skipped += broken
            verification_pixels, broken = read_photos(
                images.verification,
                lambda img: pixels(img, card),
                progress=progress,
                what="reading verification photos",
            )
            skipped += broken
            if config.verify and not verification_pixels:
                raise ExportError(f"{images.verification_source}: none of its photos could be read")
            verification = (
                np.stack([normalize(p, card) for p in verification_pixels]) if verification_pixels else verification
            )

        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=output))
        try:
            with disk_space_checked(staging, report_as=output):
                job = WriteJob(
                    model, card, config.write_options(), staging, calibration, images, progress, verification
                )
                files, reports = _write_all(job, formats)
            skipped += job.skipped
            parity: list[Parity] = []
            failed: set[str] = set()
            if config.verify:
                check, raw = config.check_options(), np.stack(verification_pixels)
                parity, outputs = _verify(job, formats, raw, check, progress)
                if config.verify_on == "arm64":
                    parity += _verify_arm64(job, formats, raw, outputs, check, config.arm64_photos, progress)
                failed = {r.format for r in parity if not r.passed}
                if failed >= {f.key for f in formats}:  # nothing passed: nothing is written
                    raise ExportError("verification failed; no file was written\n" + parity_table(parity))
            written = list(dict.fromkeys(name for key, names in files.items() if key not in failed for name in names))
            quantized = reports.get("onnx-int8") if "onnx-int8" not in failed else None
            result = ExportResult(
                output,
                [output / name for name in written],
                parity,
                card,
                quantized.card if quantized else None,
                images,
                time.perf_counter() - start,
                [f.key for f in formats if f.key not in failed],
                skipped,
                list(quantized.explain) if quantized else [],
                sha256={name: sha256(staging / name) for name in written},
                search=job.searched,
                not_written=[f.key for f in formats if f.key in failed],
            )
            report = {"config": config.to_dict(), **result.to_dict(staging)}
            with disk_space_checked(staging, report_as=output):
                (staging / REPORT).write_text(json_text(report))
            _check_targets(output, written, earlier, config.force, reads)  # the writers' extra files too
            with interrupts_deferred():
                for name in _commit(staging, output, [*written, REPORT], listed_files(earlier)):
                    progress(f"removed {name}: the earlier export in {output} wrote it, this one did not")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        result.files.append(output / REPORT)
        return result


def _reads(config: ExportConfig, train_data: str) -> list[tuple[str, str]]:
    """What an export reads, which no path it writes may be or hold: the checkpoint and the photos."""
    reads = [("the checkpoint", config.checkpoint)]
    if config.calib_data:
        reads.append(("--calib-data", config.calib_data))
    if config.verify_data:
        reads.append(("--verify-data", config.verify_data))
    if not config.calib_data and train_data not in ("synthetic", "flowers102") and Path(train_data).is_dir():
        reads.append(("the training data", train_data))
    return reads


def _check_targets(output: Path, names: list[str], earlier: dict | None, force: bool, reads) -> None:
    """Every file an export puts into ``output``: never an input, and never a file there that the
    earlier export's record does not list (a user's own file, the checkpoint) unless --force."""
    ours = set(listed_files(earlier)) | ({REPORT} if earlier is not None else set())
    for name in names:
        target = check_output_file(output / name, "--output", reads)
        if not force and (target.exists() or target.is_symlink()) and name not in ours:
            raise OutputError(
                f"--output {output}: {name} is there and no earlier export wrote it (it is not in "
                f"{REPORT}); move it, choose another folder, or pass --force to replace it"
            )


def _commit(staging: Path, output: Path, names: list[str], earlier: list[str]) -> list[str]:
    """Move the verified files from ``staging`` into ``output``, the record last, in place of the
    earlier export's files: those this export does not write are removed, so the folder holds one
    export. Renames only (no space needed); a failure puts every earlier file back. Returns the
    names of the earlier files removed."""
    aside = staging / ".earlier"
    aside.mkdir()
    removed = [n for n in earlier if n not in names and (output / n).is_file()]
    moved_aside, moved_in = [], []
    try:
        for name in [*names, *removed]:
            if (output / name).exists() or (output / name).is_symlink():
                os.replace(output / name, aside / name)
                moved_aside.append(name)
        for name in names:
            os.replace(staging / name, output / name)
            moved_in.append(name)
    except BaseException:
        for name in moved_in:
            os.replace(output / name, staging / name)
        for name in moved_aside:
            os.replace(aside / name, output / name)
        raise
    return removed


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


def _verify(
    job: WriteJob, formats: list[Format], raw: np.ndarray, check: CheckOptions, progress: Callable[[str], None]
) -> tuple[list[Parity], dict[str, np.ndarray]]:
    """Every written format run by its own runtime on the verification photos, against PyTorch; the
    .tflite files also through MediaPipe's ImageClassifier on the whole photos, when it is installed.
    The rows, and each format's outputs."""
    x = job.verification
    reference = job.reference_logits()
    rows, outputs = [], {}
    for fmt in formats:
        progress(f"verifying {fmt.key} on {len(x)} photos")
        path = job.staging / fmt.file
        fmt.probe(path)  # a runtime that can abort on a bad file reads it in a child first
        out = outputs[fmt.key] = logits(fmt.open(path), raw if fmt.takes_pixels else x)
        # A file that gives probabilities is read as log-probabilities: PyTorch's log-softmax beside it.
        expected = log_softmax(reference) if fmt.read_card(path).output == "probabilities" else reference
        rows.append(check.compare(fmt.key, fmt, expected, out))
        if fmt.client == "mediapipe" and job.images and mediapipe_check.available():
            rows.append(_verify_mediapipe(fmt, path, raw, reference, check.floor, progress))
    return rows, outputs


def _verify_arm64(
    job: WriteJob,
    formats: list[Format],
    raw: np.ndarray,
    outputs: dict[str, np.ndarray],
    check: CheckOptions,
    photos: int,
    progress: Callable[[str], None],
) -> list[Parity]:
    """The phone files run on arm64 kernels (export/arm64.py) on the first verification photos,
    each against PyTorch as on this machine, with its agreement with this machine's run."""
    from . import arm64

    n = min(len(job.verification), photos)
    files, left = {}, []
    for fmt in formats:
        path = job.staging / fmt.file
        if arm64.kind(fmt) is None:
            left.append(fmt.key)
            continue
        card = fmt.read_card(path)
        files[fmt.key] = {
            "path": str(path),
            "kind": arm64.kind(fmt),
            "layout": card.layout,
            "output": card.output,
            "takes_pixels": fmt.takes_pixels,
        }
    if left:
        progress(f"arm64: {', '.join(left)} not run there (no runtime of theirs in the emulated Python)")
    if not files:
        return []
    env = arm64.Arm64Env.ensure(progress)
    progress(f"arm64: running {', '.join(files)} on {n} photos, emulated ({arm64.CPU})")
    out = env.run(files, job.verification[:n], raw[:n], progress)
    reference = job.reference_logits()[:n]
    return [
        arm64.parity(
            key,
            reference,
            out[key],
            outputs[key][:n],
            files[key]["output"] == "probabilities",
            FORMATS[key],
            check,
        )
        for key in files
    ]


def _verify_mediapipe(
    fmt: Format, path: Path, raw: np.ndarray, reference: np.ndarray, floor: float, progress: Callable[[str], None]
) -> Parity:
    """MediaPipe's ImageClassifier (normalize by the file's metadata, infer, rank, name the classes
    from its labels) on the card's pixels of each verification photo, as an app hands it a photo it
    resized by the card (MediaPipe's own resize is then none): its scores against PyTorch's, held to
    the int8 floor. This proves MediaPipe reads the file as its runtime does; how MediaPipe's own
    resize of a whole photo with the card's region changes answers depends on the photos, and
    benchmarks/scripts/mediapipe_crop.py measures it (Flowers102: 99.51% for both files). A gate on
    that would fail files that answer correctly: the synthetic quick start's int8 file flipped 2 of
    120 such photos while agreeing on all 120 of the card's."""
    progress(f"verifying {fmt.key} through MediaPipe's ImageClassifier on {len(raw)} photos")
    scores = mediapipe_check.classify(path, fmt.read_card(path), raw, crop=False)
    return compare(
        f"{fmt.key} (MediaPipe)",
        log_softmax(reference),
        np.log(np.maximum(scores, 1e-38)),
        min_agreement=floor,
    )


def _check_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{output}: cannot create the output folder ({e.strerror})") from None
    if not output.is_dir():
        raise ExportError(f"{output}: is not a folder")
    if not os.access(output, os.W_OK | os.X_OK):
        raise ExportError(f"{output}: the output folder is not writable")
