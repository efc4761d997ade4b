"""flower-export's one library call: checkpoint in, verified model files out.

    result = export(ExportConfig("runs/flower.pth", format="all", quantize=True))
    print(parity_table(result.parity))

Every file is written into a hidden staging folder inside the output folder, verified against the
PyTorch model, and only then renamed into place: a failed check leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
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
from flower_edge.runtime.files import atomic_write
from flower_edge.runtime.image import normalize, pixels, preprocess
from flower_edge.runtime.progress import ProgressLines

from .config import ExportConfig
from .images import ImageSets, choose_images, read_photos
from .quantize import Int8Result
from .verify import Parity, compare, onnx_logits, parity_table, torch_logits, torchscript_logits

TORCHSCRIPT, ONNX, INT8, PREPROC = "model.pt", "model.onnx", "model.int8.onnx", "model.preproc.onnx"
CARD, LABELS, REPORT = "card.json", "labels.json", "export.json"
ORT_CONFIG = "required_operators.config"


@dataclass
class ExportResult:
    output: Path
    files: list[Path]
    parity: list[Parity]
    card: ModelCard
    int8_card: ModelCard | None
    images: ImageSets | None
    seconds: float
    skipped: list[str] = field(default_factory=list)
    """One line per broken calibration or verification photo."""
    explain: list = field(default_factory=list)
    """With ``explain``: the int8 error of every layer (export/explain.py LayerError rows)."""

    def to_dict(self) -> dict:
        return {
            "output": str(self.output),
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
    model, card, ckpt = load_model(config.checkpoint)
    card = replace(card, provenance={**card.provenance, "exported_from": Path(config.checkpoint).name,
                                     "export_date": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    output = Path(config.output) if config.output else Path(config.checkpoint).resolve().parent
    _check_writable(output)

    images = choose_images(config, ckpt["config"].data) if config.quantize or config.verify else None
    skipped: list[str] = []
    calibration, tuning, verification, verification_pixels = [], [], np.zeros((0,)), []
    if images:
        progress(f"reading {len(images.calibration) if config.quantize else 0} calibration, "
                 f"{len(images.tuning)} tuning and {len(images.verification)} verification photos")
        if config.quantize:  # the calibration photos are the tuning pool's first ones: read each once
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

    staging = Path(tempfile.mkdtemp(prefix=".flower-export-", dir=output))
    try:
        written, int8 = _write_all(config, model, card, staging, calibration, tuning, images, progress)
        parity: list[Parity] = []
        if config.verify:
            progress(f"verifying against PyTorch on {len(verification)} photos")
            parity = _verify(config, model, staging, written, verification, np.stack(verification_pixels))
            if not all(r.passed for r in parity):
                hint = ""
                if any(not r.passed and ".int8." in f".{r.name}" for r in parity):
                    hint = (" (int8 under --min-agreement: --tune makes it answer like the float model"
                            if not config.tune else " (int8 under --min-agreement even tuned: try more --tune-epochs")
                    hint += ", or lower --min-agreement)"
                raise ExportError(f"verification failed{hint}; no file was written\n" + parity_table(parity))
        final = []
        for name in written:
            os.replace(staging / name, output / name)
            final.append(output / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = ExportResult(output, final, parity, card, int8.card if int8 else None, images,
                          time.perf_counter() - start, skipped, (int8.explain or []) if int8 else [])
    report = {"config": config.to_dict(), **result.to_dict()}
    atomic_write(output / REPORT, lambda f: f.write(json.dumps(report, indent=2).encode()))
    result.files.append(output / REPORT)
    return result


def _write_all(config: ExportConfig, model, card: ModelCard, staging: Path, calibration, tuning,
               images: ImageSets | None, progress) -> tuple[list[str], Int8Result | None]:
    written: list[str] = []
    int8 = None
    if config.torchscript:
        from .torchscript import export_torchscript

        progress("TorchScript: tracing and freezing")
        export_torchscript(model, card, staging / TORCHSCRIPT)
        written.append(TORCHSCRIPT)
    if config.onnx:
        from .onnx_export import export_onnx

        progress(f"ONNX: exporting at opset {config.opset}, checking, optimizing")
        export_onnx(model, card, staging / ONNX, config.opset)
        written.append(ONNX)
        if config.embed_preprocessing:
            progress("ONNX: the variant that takes uint8 pixels")
            export_onnx(model, card, staging / PREPROC, config.opset, embed_preprocessing=True)
            written.append(PREPROC)
        if config.quantize:
            from .quantize import Tuning, quantize_int8

            progress(f"int8: calibrating ({config.calib_method}) on {len(calibration)} photos, quantizing")
            tune = None
            if config.tune:
                progress(f"int8: tuning on {len(tuning)} photos and their mirror images, {config.tune_epochs} epochs")
                tune = Tuning(tuning, lambda x: torch_logits(model, x), epochs=config.tune_epochs,
                              source=images.calibration_source if images else "",
                              progress=_every_tenth(progress, "int8 tuning"), say=progress)
            int8 = quantize_int8(staging / ONNX, staging / INT8, card, calibration,
                                 method=config.calib_method, reduce_range=config.reduce_range,
                                 float_layers=config.float_layers,
                                 source=images.calibration_source if images else "", tuning=tune,
                                 explain=calibration if config.explain else ())
            written.append(INT8)
        if config.ort_format:
            progress("ORT format copies for ONNX Runtime Mobile")
            written += _ort_copies(staging, [n for n in written if n.endswith(".onnx")])
    (staging / CARD).write_text(card.to_json())
    (staging / LABELS).write_text(json.dumps(list(card.labels), indent=2, ensure_ascii=False))
    written += [CARD, LABELS]
    return written, int8


def _every_tenth(progress: Callable[[str], None], what: str, seconds: float = 15.0) -> Callable[[int, int, float], None]:
    """A step callback that reports each tenth of the work, or after ``seconds`` of silence, with
    the rate and the time left; the rate leaves out the set-up before step 1 ends."""
    lines: list[ProgressLines] = []

    def report(step: int, steps: int, loss: float) -> None:
        if not lines:
            lines.append(ProgressLines(what, steps, progress, unit="step", every=seconds, done=step))
        else:
            lines[0].advance(step - lines[0].done, loss=loss)
        if step == steps:
            lines[0].close(loss=loss)

    return report


def _ort_copies(staging: Path, onnx_names: list[str]) -> list[str]:
    """``.ort`` copies and their ``required_operators.config``, as onnxruntime's
    convert_onnx_models_to_ort makes them (fixed optimizations, no x86-only NCHWc layout), plus
    the exact int8 arithmetic that the ONNX files get at load time: the .ort file bakes in the
    kernels chosen while it is written."""
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    made = []
    for name in onnx_names:
        target = staging / name.replace(".onnx", ".ort")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(target)
        options.add_session_config_entry("session.save_model_format", "ORT")
        options.add_session_config_entry("session.x64quantprecision", "1")
        options.add_session_config_entry("session.qdqisint8allowed", "0")
        ort.InferenceSession(str(staging / name), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["NchwcTransformer"])
        made.append(target)
    logging.disable(logging.INFO)  # it logs each file at INFO
    try:
        create_config_from_models(made, staging / ORT_CONFIG, enable_type_reduction=False)
    finally:
        logging.disable(logging.NOTSET)
    config = staging / ORT_CONFIG  # its header names the models by their staging paths
    config.write_text(config.read_text().replace(f"{staging}{os.sep}", ""))
    return [p.name for p in made] + [ORT_CONFIG]


def _verify(config: ExportConfig, model, staging: Path, written: list[str], x: np.ndarray,
            raw: np.ndarray) -> list[Parity]:
    reference = torch_logits(model, x)
    rows = []
    for name in written:
        path = staging / name
        if name == TORCHSCRIPT:
            rows.append(compare("torchscript", reference, torchscript_logits(path, x), atol=config.atol / 10))
        elif name.endswith((".onnx", ".ort")):
            is_int8, is_preproc = ".int8." in name, ".preproc." in name
            logits = onnx_logits(path, raw if is_preproc else x)
            label = name.removeprefix("model.")
            if is_int8:
                rows.append(compare(label, reference, logits, min_agreement=config.min_agreement))
            else:
                rows.append(compare(label, reference, logits, atol=config.atol))
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
