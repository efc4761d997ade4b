"""The table of deployable files: one row per format, and everything else reads it.

    fmt = FORMATS["tflite-int8"]
    fmt.file                                  # 'model.int8.tflite'
    run = fmt.runner("out/model.int8.tflite", threads=2)
    logits = run(x)                           # (N, 3, H, W) float32 -> (N, classes)
    fmt.card("out/model.int8.tflite")         # the model card stored inside the file

A row names its key (the one name used by ``--format``, parity tables, flower-bench rows and JSON),
its file, the function that writes it, the function that runs it, the function that reads the card
back, its parity requirement (float: largest |logit difference|; int8: top-1 agreement) and the
extra that installs what it needs. Functions are "module:function" strings resolved on first use,
so this module imports nothing heavy: flower-run's cold start and ``--help`` stay torch-free.

Adding a format: a row here and one module holding its ``write``, ``runner`` and ``card``.
Export (pipeline.py), verification, flower-bench, its cold start and flower-bundle take it from here.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.errors import ConfigError, ExportError

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Format:
    key: str
    file: str
    write: str
    """"module:function" taking (job, format): writes ``job.staging / file``; returns other files it wrote."""
    runner: str
    """"module:function" taking (path, threads): returns a function from an input batch to logits."""
    card: str
    """"module:function" taking a path: the model card stored in the file."""
    description: str
    int8: bool = False
    """int8 files are held to top-1 agreement; float files to the largest |logit difference|."""
    atol_scale: float = 1.0
    """The float requirement is ``atol * atol_scale`` (TorchScript runs PyTorch's own kernels: 1/10)."""
    source: str | None = None
    """A format written first, from whose file this one is made (int8 ONNX from float ONNX)."""
    int8_of: str | None = None
    """The float format whose ``--quantize`` counterpart this is."""
    extra: str = "train"
    write_needs: tuple[str, ...] = ("torch", "onnx")
    run_needs: tuple[str, ...] = ("onnxruntime",)
    takes_pixels: bool = False
    """Input is uint8 pixels (B, H, W, 3), already resized and cropped, instead of the normalized tensor."""
    in_all: bool = True
    """Part of ``--format all``; the preprocessing variants are asked for by their own flag."""
    ort_copy: str | None = None
    """The ONNX Runtime Mobile (.ort) format made from this one when ``--ort`` is on."""
    magic: tuple[int, bytes] | None = None
    """(offset, bytes) every file of this format holds: checked before a native runtime reads it."""
    client: str | None = None
    """The module (and extra) of the client apps load the file with, which writes its metadata and
    verifies it on whole photos when installed ("mediapipe")."""
    may_abort: bool = False
    """Its runtime can abort the whole process on a malformed file (ExecuTorch's SIGABRT): a file not
    proven by this run is first opened in a child process (:meth:`probe`)."""

    def function(self, role: str) -> Callable[..., Any]:
        module, name = getattr(self, role).split(":")
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
        return found

    def open(self, path: str | Path, threads: int = 2) -> Runner:
        self.check_file(path)
        return self.function("runner")(path, threads)

    def read_card(self, path: str | Path) -> ModelCard:
        self.check_file(path)
        return self.function("card")(path)

    def check_file(self, path: str | Path) -> None:
        """A file that cannot be this format (too short, wrong magic bytes) fails with one line,
        before a native runtime that might crash on it reads it."""
        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: no such model file")
        if self.magic is not None:
            offset, magic = self.magic
            with open(path, "rb") as f:
                head = f.read(offset + len(magic))
            if head[offset:] != magic:
                raise ExportError(f"{path}: not a {self.key} file ({magic.decode()} is not at byte {offset})")

    def probe(self, path: str | Path, timeout: float = 300) -> None:
        """For a runtime that can abort the process: load ``path`` and run it once on a blank input
        in a child process, so that a bad file is one line (ExportError) and not a dead process."""
        if not self.may_abort:
            return
        import signal
        import subprocess

        self.check_file(path)
        cmd = probe_command(self.key, path)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError(f"{path}: {self.key} did not answer within {timeout:.0f} s") from None
        if done.returncode < 0:
            name = signal.Signals(-done.returncode).name
            raise ExportError(f"{path}: the {self.key} runtime crashed reading this file ({name}); the file is broken")
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise ExportError(
                f"{path}: the {self.key} runtime cannot run this file "
                f"({lines[-1][:300] if lines else f'exit {done.returncode}'})"
            )

    def missing(self, purpose: str = "write") -> str | None:
        """None when this machine can write (or run) the format, else the one line that says what to install."""
        needs = self.write_needs if purpose == "write" else self.run_needs
        absent = [m for m in needs if importlib.util.find_spec(m) is None]
        if not absent:
            return None
        return (
            f"{self.key} needs {', '.join(absent)}, from the [{self.extra}] extra: "
            f"pip install 'flower-edge[{self.extra}]'"
        )


_ONNX, _TS, _TFL, _PTE = (
    "flower_edge.export.onnx_export",
    "flower_edge.export.torchscript",
    "flower_edge.export.tflite",
    "flower_edge.export.pte",
)
_ORT_RUN, _ONNX_CARD = "flower_edge.runtime.session:onnx_runner", "flower_edge.runtime.card:ModelCard.from_onnx"
_LITERT = dict(
    extra="litert",
    write_needs=("torch", "litert_torch", "ai_edge_litert"),
    run_needs=("ai_edge_litert",),
    magic=(4, b"TFL3"),
    may_abort=True,
    client="mediapipe",
)
_EXECUTORCH = dict(
    extra="executorch",
    write_needs=("torch", "executorch"),
    run_needs=("torch", "executorch"),
    magic=(4, b"ET"),
    may_abort=True,
)
_ORT_MAGIC = (4, b"ORTM")

FORMATS: dict[str, Format] = {
    f.key: f
    for f in (
        Format(
            "torchscript",
            "model.pt",
            f"{_TS}:write",
            f"{_TS}:runner",
            f"{_TS}:read_card",
            "TorchScript, traced and frozen (servers, libtorch)",
            atol_scale=0.1,
            run_needs=("torch",),
            magic=(0, b"PK\x03\x04"),
        ),
        Format(
            "onnx",
            "model.onnx",
            f"{_ONNX}:write",
            _ORT_RUN,
            _ONNX_CARD,
            "ONNX, float (onnxruntime, onnxruntime-web)",
            ort_copy="ort",
        ),
        Format(
            "onnx-int8",
            "model.int8.onnx",
            "flower_edge.export.quantize:write",
            _ORT_RUN,
            _ONNX_CARD,
            "ONNX, int8 QDQ, calibrated on photos",
            int8=True,
            source="onnx",
            int8_of="onnx",
            ort_copy="ort-int8",
        ),
        Format(
            "onnx-preproc",
            "model.preproc.onnx",
            f"{_ONNX}:write_preprocessing",
            _ORT_RUN,
            _ONNX_CARD,
            "ONNX, float, taking uint8 pixels (--embed-preprocessing)",
            takes_pixels=True,
            in_all=False,
            ort_copy="ort-preproc",
        ),
        Format(
            "ort",
            "model.ort",
            "flower_edge.export.ort:write",
            _ORT_RUN,
            _ONNX_CARD,
            "ONNX Runtime Mobile copy of model.onnx",
            source="onnx",
            magic=_ORT_MAGIC,
        ),
        Format(
            "ort-int8",
            "model.int8.ort",
            "flower_edge.export.ort:write",
            _ORT_RUN,
            _ONNX_CARD,
            "ONNX Runtime Mobile copy of model.int8.onnx",
            int8=True,
            source="onnx-int8",
            magic=_ORT_MAGIC,
        ),
        Format(
            "ort-preproc",
            "model.preproc.ort",
            "flower_edge.export.ort:write",
            _ORT_RUN,
            _ONNX_CARD,
            "ONNX Runtime Mobile copy of model.preproc.onnx",
            takes_pixels=True,
            in_all=False,
            source="onnx-preproc",
            magic=_ORT_MAGIC,
        ),
        Format(
            "tflite",
            "model.tflite",
            f"{_TFL}:write",
            f"{_TFL}:runner",
            f"{_TFL}:read_card",
            "LiteRT (TensorFlow Lite), float, NHWC, MediaPipe ImageClassifier metadata",
            **_LITERT,
        ),
        Format(
            "tflite-int8",
            "model.int8.tflite",
            f"{_TFL}:write",
            f"{_TFL}:runner",
            f"{_TFL}:read_card",
            "LiteRT, int8 (PT2E static, calibrated on photos), NHWC, MediaPipe metadata",
            int8=True,
            int8_of="tflite",
            **_LITERT,
        ),
        Format(
            "pte",
            "model.pte",
            f"{_PTE}:write",
            f"{_PTE}:runner",
            f"{_PTE}:read_card",
            "ExecuTorch program, XNNPACK delegate, float",
            **_EXECUTORCH,
        ),
        Format(
            "pte-int8",
            "model.int8.pte",
            f"{_PTE}:write",
            f"{_PTE}:runner",
            f"{_PTE}:read_card",
            "ExecuTorch, XNNPACK, int8 (PT2E static, calibrated on photos)",
            int8=True,
            int8_of="pte",
            **_EXECUTORCH,
        ),
    )
}


def probe_command(key: str, path: str | Path) -> list[str]:
    """The child process of :meth:`Format.probe`: export/probe.py on ``path``."""
    import sys

    return [sys.executable, "-m", "flower_edge.export.probe", key, str(path)]


@dataclass
class WriteJob:
    """What a writer gets: the model, its card, the export's options and photos, the staging folder."""

    model: Any
    card: ModelCard
    config: Any
    """export/config.py ExportConfig."""
    staging: Path
    calibration: list[np.ndarray]
    """Normalized photos (3, H, W) to calibrate int8 formats on: the same for every format."""
    images: Any
    """export/images.py ImageSets, or None."""
    progress: Callable[[str], None]
    verification: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    """Normalized held-out photos (N, 3, H, W): the int8 search measures on them, then verification."""
    int8: Any = None
    """export/quantize.py Int8Result, once the int8 ONNX file is written."""
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
    def searched(self):
        """The int8 plan if an int8 format asked for one, else None."""
        return self._cache.get("plan")

    def int8_plan(self):
        """export/search.py's choice for every int8 format, searched once (on the float ONNX file
        of this export, or one made for the search when no ONNX file is asked for)."""
        if "plan" not in self._cache:
            from .search import search

            scratch = self.staging / ".int8-search"
            scratch.mkdir(exist_ok=True)
            fp32 = self.staging / FORMATS["onnx"].file
            if not fp32.is_file():
                from .onnx_export import export_onnx

                self.progress("int8: a float ONNX graph for the search")
                fp32 = scratch / "float.onnx"
                export_onnx(self.model, self.card, fp32, self.config.opset)
            self._cache["plan"] = search(self, fp32, scratch)
        return self._cache["plan"]

    def tuning(self) -> Any:
        """export/quantize.py Tuning on the tuning photos, read on the first call (only a search
        that tunes needs them); one per tuning, for its own progress lines."""
        from flower_edge.runtime.image import preprocess

        from .images import read_photos
        from .quantize import Tuning, step_lines
        from .verify import torch_logits

        config = self.config
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
            from flower_edge.runtime.errors import ExportError

            raise ExportError("int8 tuning: no readable tuning photos")
        self.progress(f"int8 tuning: {len(photos)} photos and their mirror images, {config.tune_epochs} epochs")
        return Tuning(
            photos,
            lambda x: torch_logits(self.model, x),
            epochs=config.tune_epochs,
            source=self.calibration_source,
            progress=step_lines(self.progress, "int8 tuning"),
            say=self.progress,
        )


def parse_keys(text: str) -> tuple[str, ...]:
    """'onnx, tflite' -> ('onnx', 'tflite'); unknown names fail with the list of known ones."""
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k != "all" and k not in FORMATS]
    if unknown or not keys:
        raise ConfigError(f"--format takes a comma-separated list of {', '.join(FORMATS)} or all, found {text!r}")
    return keys


def select(
    text: str, *, quantize: bool = False, ort: bool = True, preprocessing: bool = False
) -> tuple[list[Format], list[str]]:
    """The formats to write, in the table's order (sources first), and one note per format that
    ``all`` left out because its extra is missing. A format named on its own whose extra is missing
    fails with the line that names the extra."""
    keys = parse_keys(text)
    named = {k for k in keys if k != "all"}
    chosen = set(named)
    notes = []
    if "all" in keys:
        for f in FORMATS.values():
            if f.in_all and f.key not in named:
                if f.missing() is None:
                    chosen.add(f.key)
                else:
                    notes.append(f"skipped {f.key}: {f.missing()}")
    if quantize:
        chosen |= {f.key for f in FORMATS.values() if f.int8_of in chosen}
    if preprocessing:
        chosen.add("onnx-preproc")
    copies = {f.ort_copy for f in FORMATS.values() if f.ort_copy}
    if ort:
        chosen |= {FORMATS[k].ort_copy for k in list(chosen) if FORMATS[k].ort_copy}
    else:
        chosen -= copies - named
    while True:  # a format's source is written first
        sources = {FORMATS[k].source for k in chosen if FORMATS[k].source} - chosen
        if not sources:
            break
        chosen |= sources
    for key in sorted(chosen, key=list(FORMATS).index):
        problem = FORMATS[key].missing()
        if problem:
            raise ConfigError(problem)
    without = [
        k
        for k in sorted(chosen, key=list(FORMATS).index)
        if FORMATS[k].client and importlib.util.find_spec(FORMATS[k].client) is None
    ]
    if without:
        client = FORMATS[without[0]].client
        notes.append(
            f"{', '.join(without)}: no TFLite metadata and no {client} check, so MediaPipe's ImageClassifier "
            f"will not load the files; they need {client}, from the [{client}] extra: "
            f"pip install 'flower-edge[{client}]'"
        )
    return [f for f in FORMATS.values() if f.key in chosen], notes


def by_file(path: str | Path) -> Format:
    """The row whose file name ``path`` has (``model.int8.tflite`` -> tflite-int8)."""
    name = Path(path).name
    for f in FORMATS.values():
        if f.file == name:
            return f
    for f in sorted(FORMATS.values(), key=lambda f: -len(f.file)):  # renamed files: by suffix
        if name.endswith(f.file.removeprefix("model")):
            return f
    raise ConfigError(f"{name}: not a file flower-export writes ({', '.join(f.file for f in FORMATS.values())})")


def logits(run: Runner, x: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])
