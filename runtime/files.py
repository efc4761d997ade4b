"""Atomic file writes: a reader sees the old file or the new one, never half of one; and a way to
keep native libraries' own stderr lines out of the tools' one-line output."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from glob import escape as glob_escape
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


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str):
    """Hold ``path``'s lock file (``.NAME.lock`` beside it) for the block: a second run writing the
    same file fails at once instead of both reporting success while one result is lost. The lock is
    the kernel's (flock), so a killed run never leaves it held."""
    import fcntl

    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            from .errors import OutputError

            raise OutputError(f"{path}: another {what} is writing it now; wait for it or choose another name") from None
        try:  # the holder before us may have removed the file after we opened it: lock the one in place
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C waits until the block ends, then raises KeyboardInterrupt: a write and the record
    that it happened are never cut apart (torch.save interrupted mid-write raised a RuntimeError
    from its zip writer instead). Only the main thread receives signals; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def remove_stale(folder: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove what a killed run left in ``folder``: files or folders named ``PREFIX<pid>...`` whose
    process is gone (a SIGKILL skips every cleanup). Those of live processes are left alone, so two
    runs can share a folder. Returns what was removed."""
    removed = []
    for entry in Path(folder).glob(glob_escape(prefix) + "*"):
        pid = re.match(r"(\d+)[.-]", entry.name[len(prefix) :])
        if pid is None or _alive(int(pid.group(1))):
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # not ours to remove after all (permissions): leave it
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def native_stderr_silenced():
    """Native libraries that print to file descriptor 2 past Python (XNNPACK's cpuinfo lines when
    ExecuTorch loads a method, LiteRT's delegate notice) are silenced while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
