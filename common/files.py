"""Atomic file writes: a reader sees the old file or the new one, never half of one.

atomic_write("model.onnx", lambda f: f.write(data))     # fsync, rename, fsync the folder
with disk_space_checked(staging): ...                   # ENOSPC becomes one OutputError line
replace_folder(staging, output)                         # a whole folder, by rename
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place.

    The bytes reach the disk (fsync) before the rename, so a crash or power cut just after it
    leaves the old file or the whole new one, never an empty file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with disk_space_checked(path), os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual mode
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); where folders cannot be opened, nothing to do."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


FULL_BELOW = 16 << 20
"""Free bytes under which a failed write is taken for a full disk (a writer fails on its next
chunk, so a few megabytes can be left)."""


@contextlib.contextmanager
def disk_space_checked(path: str | os.PathLike, report_as: str | os.PathLike | None = None):
    """A write that fails on a full disk says "PATH: No space left on device" (OSError ENOSPC),
    whatever the library that wrote raised: torch's zip writer, onnxruntime's .ort writer and the
    LiteRT converter each say it in their own words, or not at all. PATH is ``report_as`` when
    given (the output folder, not a hidden staging folder inside it)."""
    from .errors import FlowerEdgeError

    try:
        yield
    except Exception as e:
        if isinstance(e, FlowerEdgeError) and e.__cause__ is None:  # a check that failed, not a write
            raise
        if isinstance(e, OSError) and e.errno == errno.ENOSPC and e.filename and report_as is None:
            raise
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or _disk_full(path, e):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(report_as or path)) from None
        raise


def _disk_full(path: str | os.PathLike, error: BaseException) -> bool:
    text = f"{error} {error.__cause__ or ''}".lower()
    if "no space left" in text or "enospc" in text or "errno 28" in text:
        return True
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def replace_folder(staging: Path, output: Path) -> None:
    """Put the complete folder ``staging`` in the place of ``output`` by rename: the old one is moved
    aside first and removed only once the new one is in place, so a failure keeps it."""
    if not output.exists():
        os.replace(staging, output)
        return
    aside = staging.with_name(staging.name + "-old")  # named like the staging folder: a killed run's is stale
    os.replace(output, aside)
    try:
        os.replace(staging, output)
    except BaseException:
        os.replace(aside, output)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
