"""A model file opened and run once on a blank image, in a process of its own (``Format.probe``).

    python -m flower_edge.export.probe pte-int8 model.int8.pte      # exit 0: the runtime can run it

ExecuTorch aborts the process (SIGABRT) on some malformed files, where Python cannot catch it: the
parent runs this first and reads a crash as "the file is broken", not as its own death.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from flower_edge.common.errors import ExportError


def probe(key: str, path: str | Path, timeout: float = 300) -> None:
    """Run :func:`main` on ``path`` in a child process: a crash or a failure is one ExportError."""
    try:
        done = subprocess.run(command(key, path), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{path}: {key} did not answer within {timeout:.0f} s") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ExportError(f"{path}: the {key} runtime crashed reading this file ({name}); the file is broken")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise ExportError(
            f"{path}: the {key} runtime cannot run this file ({lines[-1][:300] if lines else f'exit {done.returncode}'})"
        )


def command(key: str, path: str | Path) -> list[str]:
    """The child process: this module on ``path``."""
    return [sys.executable, "-m", "flower_edge.export.probe", key, str(path)]


def main(key: str, path: str) -> None:
    from flower_edge.export.formats import FORMATS

    fmt = FORMATS[key]
    card = fmt.read_card(path)
    c, h, w = card.input_size
    blank = np.zeros((1, h, w, c), np.uint8) if fmt.takes_pixels else np.zeros((1, c, h, w), np.float32)
    out = fmt.open(path, threads=1)(blank)
    if out.shape != (1, card.num_classes):
        sys.exit(f"it gives outputs of shape {tuple(out.shape)}, not (1, {card.num_classes})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
