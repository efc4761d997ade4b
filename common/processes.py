"""What the tools do about other processes: one writer per file, Ctrl-C at safe points, what a
killed run left behind, and native libraries' own stderr lines.

    with exclusive("runs/export.json", "flower-export"): ...   # a second run fails at once
    with interrupts_deferred(): commit()                        # Ctrl-C or SIGTERM waits for the block
    remove_stale(folder, ".flower-export-")                     # staging folders of dead processes
    with native_stderr_silenced(): import litert_torch          # fd 2 to /dev/null for the block
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import threading
from glob import escape as glob_escape
from pathlib import Path


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
    """Ctrl-C or SIGTERM waits until the block ends, then raises KeyboardInterrupt (``Terminated``
    for SIGTERM): a write and the record that it happened are never cut apart (torch.save
    interrupted mid-write raised a RuntimeError from its zip writer instead). Only the main thread
    receives signals; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from .errors import Terminated

    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda number, _: caught.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGTERM in caught:
        raise Terminated
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
