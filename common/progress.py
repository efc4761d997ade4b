"""Progress as lines, for output that no one watches live: a log file, CI, a notebook cell.

A terminal gets a progress bar (rich, in the CLIs); anything else gets a line when a tenth of the
work is done or ten seconds have passed, with the rate and the time left, so a long phase is never
silent and a short one prints one summary line:

    caching frozen features, view 2/6: 3200/6552 img (48%), 171 img/s, 19 s left
    caching frozen features, view 2/6: 6552 img in 38 s, 172 img/s
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressLines:
    """Counts work done and hands ``emit`` a line now and then; no torch, no terminal needed."""

    def __init__(
        self,
        description: str,
        total: int,
        emit: Callable[[str], None],
        unit: str = "img",
        every: float = 10.0,
        gap: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        done: int = 0,
    ) -> None:
        """A line at each tenth of ``total`` (but ``gap`` seconds apart at least, so a short task
        prints only its summary) and after ``every`` seconds of silence. ``done``: work finished
        before the clock starts (a warm-up step kept out of the rate)."""
        self.description, self.total, self.emit, self.unit = description, max(0, total), emit, unit
        self.every, self.gap, self.clock = every, gap, clock
        self.done = self.first = done
        self.started = self.last = clock()
        self.tenth = 0

    def advance(self, n: int = 1, **fields: float) -> None:
        self.done += n
        now = self.clock()
        tenth = self.done * 10 // self.total if self.total else 0
        if (tenth > self.tenth and now - self.last >= self.gap) or now - self.last >= self.every:
            self.tenth, self.last = tenth, now
            if self.done < self.total:
                self.emit(self._line(now, fields))

    def close(self, **fields: float) -> None:
        elapsed = self.clock() - self.started
        rate = f", {_number(self._rate(elapsed))} {self.unit}/s" if elapsed > 0 else ""
        extra = _fields(fields)
        self.emit(f"{self.description}: {self.done} {self.unit} in {elapsed:.0f} s{rate}{extra}")

    def _rate(self, elapsed: float) -> float:
        return (self.done - self.first) / elapsed if elapsed > 0 else 0.0

    def _line(self, now: float, fields: dict[str, float]) -> str:
        elapsed = now - self.started
        rate = self._rate(elapsed)
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        left = f", {(self.total - self.done) / rate:.0f} s left" if rate and self.total else ""
        return (
            f"{self.description}: {self.done}/{self.total} {self.unit}{share}, {_number(rate)} {self.unit}/s"
            f"{left}{_fields(fields)}"
        )


def _number(x: float) -> str:
    """Three significant digits at most, never an exponent: 2084, 169, 31.5, 0.52."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _fields(fields: dict[str, float]) -> str:
    return "".join(f", {k} {v:.3f}" for k, v in fields.items())
