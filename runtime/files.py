"""Atomic file writes: a reader sees the old file or the new one, never half of one; and a way to
keep native libraries' own stderr lines out of the tools' one-line output."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import threading
from glob import escape as glob_escape
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        pid = re.match(r"(\d+)[.-]", entry.name[len(prefix):])
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
