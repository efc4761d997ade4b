"""What a format's writer is given (WriteJob) and what it gives back (Written).

    def write(job: WriteJob, fmt: Format) -> Written:        # a row of export/formats.py
        export_it(job.model, job.card, job.staging / fmt.file, opset=job.options.opset)
        return Written()

A writer reads the job and writes its file into the staging folder; it changes nothing else the
pipeline reads afterwards. What the int8 formats share (the photos, PyTorch's answers on them, the
int8 search's choice, the tuning photos) is computed once, on the first writer that asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flower_edge.common.errors import ExportError
from flower_edge.runtime.card import ModelCard

from .config import WriteOptions

if TYPE_CHECKING:
    from .images import ImageSets
    from .plan import Int8Plan
    from .quantize import Tuning


@dataclass(frozen=True)
class Written:
    """A writer's report."""

    files: tuple[str, ...] = ()
    """Files written beside the row's own (ONNX Runtime Mobile's operator config)."""
    card: ModelCard | None = None
    """The card stored in the file, when the export records it (the int8 ONNX file's)."""
    explain: tuple = ()
    """export/explain.py LayerError rows of the file (--explain)."""


@dataclass
class WriteJob:
    """The model, its card, the writers' options and photos, the staging folder."""

    model: Any
    """The checkpoint's torch module (FlowerNet), in eval mode."""
    card: ModelCard
    options: WriteOptions
    staging: Path
    calibration: list[np.ndarray]
    """Normalized photos (3, H, W) to calibrate int8 formats on: the same for every format."""
    images: ImageSets | None
    progress: Callable[[str], None]
    verification: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    """Normalized held-out photos (N, 3, H, W): the int8 search measures on them, then verification."""
    skipped: list[str] = field(default_factory=list)
    """One line per broken photo read by a writer (the tuning photos)."""
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def calibration_source(self) -> str:
        return self.images.calibration_source if self.images else ""

    def reference_logits(self) -> np.ndarray:
        """PyTorch's logits for the verification photos, computed once for the search and the checks."""
        if "reference" not in self._cache:
            from .verify import torch_logits

            self._cache["reference"] = torch_logits(self.model, self.verification)
        return self._cache["reference"]

    @property
    def searched(self) -> Int8Plan | None:
        """The int8 plan if an int8 format asked for one, else None."""
        return self._cache.get("plan")

    def int8_plan(self) -> Int8Plan:
        """export/search.py's choice for every int8 format, searched once (on the float ONNX file
        of this export, or one made for the search when no ONNX file is asked for)."""
        if "plan" not in self._cache:
            from .formats import FORMATS
            from .search import search

            scratch = self.staging / ".int8-search"
            scratch.mkdir(exist_ok=True)
            fp32 = self.staging / FORMATS["onnx"].file
            if not fp32.is_file():
                from .onnx_export import export_onnx

                self.progress("int8: a float ONNX graph for the search")
                fp32 = scratch / "float.onnx"
                export_onnx(self.model, self.card, fp32, self.options.opset)
            self._cache["plan"] = search(self, fp32, scratch)
        return self._cache["plan"]

    def tuning(self) -> Tuning:
        """export/quantize.py Tuning on the tuning photos, read on the first call (only a search
        that tunes needs them); one per tuning, for its own progress lines."""
        from flower_edge.runtime.image import preprocess

        from .images import read_photos
        from .quantize import Tuning, step_lines
        from .verify import torch_logits

        if "tuning" not in self._cache:  # read once; each tuning gets its own progress lines
            paths = self.images.tuning if self.images else ()
            self._cache["tuning"], broken = read_photos(
                paths,
                lambda img: preprocess(img, self.card),
                progress=self.progress,
                what="int8 tuning: reading photos",
            )
            self.skipped += broken
        photos = self._cache["tuning"]
        if not photos:
            raise ExportError("int8 tuning: no readable tuning photos")
        epochs = self.options.int8.tune.epochs
        self.progress(f"int8 tuning: {len(photos)} photos and their mirror images, {epochs} epochs")
        return Tuning(
            photos,
            lambda x: torch_logits(self.model, x),
            epochs=epochs,
            source=self.calibration_source,
            progress=step_lines(self.progress, "int8 tuning"),
            say=self.progress,
        )
