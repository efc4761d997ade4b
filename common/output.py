"""What a command writes and prints, made safe in one place.

    check_output_file(args.plot, "--plot", reads=[("the model", model), *(("an input", p) for p in photos)])
    out = claim_folder(output, "--output", marker=is_bundle, reads=[("the model", found)], force=force)
    print(printable(label))                   # a newline or an ANSI escape in a name cannot drive the terminal
    print(json_text(result))                  # NaN and Infinity become null: always valid JSON

Every path a flag writes is checked against every path the run reads: an output that is an input,
lies inside an input folder, or (for a folder) contains an input is refused, whatever --force says.
A folder that exists, holds files and carries no marker of the tool that writes it is refused
unless the user passes --force; a file that exists and is not of the kind the flag writes (a photo
given as --plot) is refused. Nothing the user did not ask to replace is ever destroyed.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .errors import OutputError

Reads = Iterable[tuple[str, "str | os.PathLike"]]
"""(what it is, path) of each file or folder a run reads: ("the checkpoint", "runs/flower.pth")."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def resolved(path: str | os.PathLike) -> Path:
    """The absolute path with every symbolic link followed (what a write would really touch)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def check_output_file(
    path: str | os.PathLike,
    flag: str,
    reads: Reads = (),
    *,
    magic: bytes | None = None,
    kind: str = "",
    writes: Reads = (),
) -> Path:
    """Refuse an output file that is an input, lies inside an input folder, is a folder, is another
    of the run's outputs (``writes``), or exists and does not start with ``magic`` (a file of
    another kind than the flag writes)."""
    target = resolved(path)
    if target.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name like {Path(path) / 'out.png'}")
    identity = _identity(target)
    for what, other in writes:
        if target == resolved(other):
            raise OutputError(f"{flag} {path}: is {what}, which this run also writes; choose another file")
    for what, read in reads:
        source = resolved(read)
        if target == source or (identity is not None and identity == _identity(source)):
            raise OutputError(f"{flag} {path}: is {what} this run reads; choose another file")
        if source in target.parents and source.is_dir():
            raise OutputError(f"{flag} {path}: is inside {what} ({read}), which this run reads; write it elsewhere")
    if magic is not None and target.is_file() and not _starts_with(target, magic):
        raise OutputError(
            f"{flag} {path}: exists and is not a {kind} file; it would be replaced. Remove it or choose another name"
        )
    return target


def check_output_folder(
    folder: str | os.PathLike,
    flag: str,
    reads: Reads = (),
    *,
    marker: Callable[[Path], bool] | None = None,
    tool: str = "",
    force: bool = False,
    whole: bool = False,
    leftovers: tuple[str, ...] = (),
) -> Path:
    """Refuse an output folder that is or lies inside an input, or, when the tool replaces it
    ``whole``, contains one; and one that exists and holds files but no ``marker`` of an earlier run
    of ``tool`` (unless ``force``). Entries named with a prefix in ``leftovers`` (what a killed run
    of the tool left) do not count as the user's files."""
    target = resolved(folder)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {folder}: is a file, not a folder")
    for what, read in reads:
        source = resolved(read)
        if target == source:
            raise OutputError(f"{flag} {folder}: is {what}, which this run reads; choose another folder")
        if whole and target in source.parents:
            raise OutputError(f"{flag} {folder}: contains {what} ({read}), which this run reads; choose another folder")
        if source in target.parents and source.is_dir():
            raise OutputError(
                f"{flag} {folder}: is inside {what} ({read}), which this run reads; choose another folder"
            )
    held = target.is_dir() and any(not p.name.startswith(leftovers) for p in target.iterdir())
    if marker is not None and not force and held and not marker(target):
        does = "replace it whole" if whole else "write there anyway"
        raise OutputError(
            f"{flag} {folder}: exists and holds files that {tool} did not write; choose a new or "
            f"empty folder, or pass --force to {does}"
        )
    return target


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def read_json_marker(path: Path, *keys: str) -> dict | None:
    """The JSON object in ``path`` when it has every one of ``keys`` (a marker a tool wrote), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and all(k in data for k in keys) else None


_UNSAFE = {"Cc", "Zl", "Zp"}
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def control_character(text: str) -> str | None:
    """The first character of ``text`` that breaks line-based files or drives a terminal (control
    characters, line and paragraph separators), or None."""
    return next((c for c in text if unicodedata.category(c) in _UNSAFE), None)


def printable(text: str) -> str:
    """``text`` for a terminal: control characters, line separators and bidirectional overrides
    escaped as ``\\x1b``, ``\\n``, ``\\u202e``, so a file or class name cannot move the cursor,
    recolour the screen or forge a line."""
    if not any(unicodedata.category(c) in _UNSAFE or c in _BIDI for c in text):
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _UNSAFE or c in _BIDI else c
        for c in text
    )


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (numpy scalars too) replaced by None, recursively."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, **kwargs: Any) -> str:
    """Strict JSON (no NaN, no Infinity: what other programs can parse); non-finite numbers are null."""
    return json.dumps(finite(value), allow_nan=False, **{"indent": 2, **kwargs})
