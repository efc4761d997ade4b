"""The table of deployable files: one row per format, and everything else reads it.

    fmt = FORMATS["tflite-int8"]
    fmt.file                                  # 'model.int8.tflite'
    run = fmt.runner("out/model.int8.tflite", threads=2)
    logits = run(x)                           # (N, 3, H, W) float32 -> (N, classes)
    fmt.card("out/model.int8.tflite")         # the model card stored inside the file

A row names its key (the one name used by ``--format``, parity tables, flower-bench rows and JSON),
its file, the function that writes it (export/job.py: ``write(job, fmt) -> Written``), the function
that runs it, the function that reads the card back, its parity requirement (float: largest |logit
difference|; int8: top-1 agreement) and the extra that installs what it needs. The modules of those
functions import their heavy packages (torch, onnx, litert-torch, executorch) inside them, so this
table imports nothing heavy: flower-run's cold start and ``--help`` stay torch-free.

Adding a format: a row here and one module holding its ``write``, ``runner`` and ``read_card``.
Export (pipeline.py), verification, flower-bench, its cold start and flower-bundle take it from here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flower_edge.common.errors import ConfigError, ExportError
from flower_edge.runtime.card import ModelCard
from flower_edge.runtime.session import onnx_runner

from . import onnx_files, ort, pte, tflite, torchscript
from .job import WriteJob, Written

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Format:
    key: str
    file: str
    write: Callable[[WriteJob, Format], Written]
    """Writes ``job.staging / file``; returns what else it wrote (export/job.py)."""
    runner: Callable[[str | Path, int], Runner]
    """Takes (path, threads); returns a function from an input batch to logits."""
    card: Callable[[str | Path], ModelCard]
    """Takes a path: the model card stored in the file."""
    description: str
    runtime: str = "onnxruntime"
    """The runtime that runs the file here (onnxruntime, litert, executorch, torch)."""
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
    failure_hint: str = ""
    """What the one line of a failed verification adds (int8: the flags that allow more)."""

    def open(self, path: str | Path, threads: int = 2) -> Runner:
        self.check_file(path)
        return self.runner(path, threads)

    def read_card(self, path: str | Path) -> ModelCard:
        self.check_file(path)
        return self.card(path)

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
        if self.may_abort:
            from .probe import probe

            self.check_file(path)
            probe(self.key, path, timeout)

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


_ONNX_CARD = ModelCard.from_onnx
_INT8_HINT = " (int8: a larger --max-drop allows more; --tune-epochs tunes longer)"
_LITERT = dict(
    runtime="litert",
    extra="litert",
    write_needs=("torch", "litert_torch", "ai_edge_litert"),
    run_needs=("ai_edge_litert",),
    magic=(4, b"TFL3"),
    may_abort=True,
    client="mediapipe",
)
_EXECUTORCH = dict(
    runtime="executorch",
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
            torchscript.write,
            torchscript.runner,
            torchscript.read_card,
            "TorchScript, traced and frozen (servers, libtorch)",
            runtime="torch",
            atol_scale=0.1,
            run_needs=("torch",),
            magic=(0, b"PK\x03\x04"),
        ),
        Format(
            "onnx",
            "model.onnx",
            onnx_files.write_float,
            onnx_runner,
            _ONNX_CARD,
            "ONNX, float (onnxruntime, onnxruntime-web)",
            ort_copy="ort",
        ),
        Format(
            "onnx-int8",
            "model.int8.onnx",
            onnx_files.write_int8,
            onnx_runner,
            _ONNX_CARD,
            "ONNX, int8 QDQ, calibrated on photos",
            int8=True,
            failure_hint=_INT8_HINT,
            source="onnx",
            int8_of="onnx",
            ort_copy="ort-int8",
        ),
        Format(
            "onnx-preproc",
            "model.preproc.onnx",
            onnx_files.write_preprocessing,
            onnx_runner,
            _ONNX_CARD,
            "ONNX, float, taking uint8 pixels (--embed-preprocessing)",
            takes_pixels=True,
            in_all=False,
            ort_copy="ort-preproc",
        ),
        Format(
            "ort",
            "model.ort",
            ort.write,
            onnx_runner,
            _ONNX_CARD,
            "ONNX Runtime Mobile copy of model.onnx",
            source="onnx",
            magic=_ORT_MAGIC,
        ),
        Format(
            "ort-int8",
            "model.int8.ort",
            ort.write,
            onnx_runner,
            _ONNX_CARD,
            "ONNX Runtime Mobile copy of model.int8.onnx",
            int8=True,
            failure_hint=_INT8_HINT,
            source="onnx-int8",
            magic=_ORT_MAGIC,
        ),
        Format(
            "ort-preproc",
            "model.preproc.ort",
            ort.write,
            onnx_runner,
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
            tflite.write,
            tflite.runner,
            tflite.read_card,
            "LiteRT (TensorFlow Lite), float, NHWC, MediaPipe ImageClassifier metadata",
            **_LITERT,
        ),
        Format(
            "tflite-int8",
            "model.int8.tflite",
            tflite.write,
            tflite.runner,
            tflite.read_card,
            "LiteRT, int8 (PT2E static, calibrated on photos), NHWC, MediaPipe metadata",
            int8=True,
            failure_hint=_INT8_HINT,
            int8_of="tflite",
            **_LITERT,
        ),
        Format(
            "pte",
            "model.pte",
            pte.write,
            pte.runner,
            pte.read_card,
            "ExecuTorch program, XNNPACK delegate, float",
            **_EXECUTORCH,
        ),
        Format(
            "pte-int8",
            "model.int8.pte",
            pte.write,
            pte.runner,
            pte.read_card,
            "ExecuTorch, XNNPACK, int8 (PT2E static, calibrated on photos)",
            int8=True,
            failure_hint=_INT8_HINT,
            int8_of="pte",
            **_EXECUTORCH,
        ),
    )
}


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
