"""The one error hierarchy of flower-edge.

Every message says what was expected and what was found, so that a command line tool can print it
as a single line and exit with code 1.
"""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class FlowerEdgeError(Exception):
    """Base of every error flower-edge raises on purpose."""


class CardError(FlowerEdgeError):
    """A model card is missing, malformed, or newer than this version understands."""


class ImageError(FlowerEdgeError):
    """An image file could not be read or decoded."""


class DataError(FlowerEdgeError):
    """A data source is missing, empty, or not in a layout flower-edge knows."""


class CheckpointError(FlowerEdgeError):
    """A checkpoint is missing, truncated, or was not written by flower-edge."""


class ConfigError(FlowerEdgeError):
    """An option has a value flower-edge does not support."""


class ExportError(FlowerEdgeError):
    """An export failed its checks (parity, calibration data, output folder)."""


class OutputError(FlowerEdgeError):
    """An output path would replace an input, or a file or folder that the tool did not write."""


class TrainingDiverged(FlowerEdgeError):
    """The training loss stopped being a finite number (a learning rate far too high, say)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill``, a job scheduler's time limit or ``docker stop`` sends), raised in the
    main thread like Ctrl-C, so that every ``finally`` runs: staging folders, a spilled feature
    cache and temporary files are removed, and a write under way finishes first."""

    signal = 15


def message(e: BaseException) -> str:
    """An error as the user reads it: an OSError as "PATH: reason" (errno's own words, so a full
    disk reads "No space left on device" with the path), every line escaped for the terminal."""
    from .output import printable

    if isinstance(e, OSError) and e.strerror and not isinstance(e, FlowerEdgeError):
        text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    else:
        text = str(e)
    return "\n".join(printable(line) for line in text.splitlines())


@contextmanager
def one_line_errors(
    prog: str,
    debug: bool = False,
    expected: tuple[type[BaseException], ...] = (),
    interrupted: str | Callable[[], str] = "interrupted",
) -> Iterator[None]:
    """A command's failures as one line on stderr and an exit code, never a traceback (unless
    ``debug``). FlowerEdgeError, OSError and ``expected`` are the user's to fix: "PROG: error: ..."
    (further lines of the message, such as a parity table, follow it); anything else is a bug of
    ours: "PROG: internal error: ...". Ctrl-C exits 130 with ``interrupted`` (or what it returns
    then, when it is a function: what was saved depends on when the user pressed it); SIGTERM the
    same way, as ``Terminated``, with exit code 143."""
    with _sigterm_raises():
        try:
            yield
        except (FlowerEdgeError, OSError, *expected) as e:  # type: ignore[misc]  # mypy cannot unpack a tuple here
            if debug:
                raise
            first, *rest = message(e).splitlines() or [type(e).__name__]
            print("\n".join([f"{prog}: error: {first}", *rest]), file=sys.stderr)
            raise SystemExit(1) from None
        except KeyboardInterrupt as e:
            said = interrupted() if callable(interrupted) else interrupted
            if isinstance(e, Terminated):
                print(f"{prog}: {said} (SIGTERM)", file=sys.stderr)
                raise SystemExit(128 + Terminated.signal) from None
            print(f"{prog}: {said}", file=sys.stderr)
            raise SystemExit(130) from None
        except Exception as e:
            if debug:
                raise
            from .output import printable

            print(
                f"{prog}: internal error: {type(e).__name__}: {printable(str(e))} (rerun with --debug)", file=sys.stderr
            )
            raise SystemExit(1) from None


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the main thread for the block (signals reach only the main
    thread; elsewhere, and where a handler was installed by the caller, nothing changes)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def terminated(*_) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
