"""What the training loop tells the outside world: messages, progress tasks, epochs, checkpoints.

    train(config, reporter=MyReporter())     # the CLI's RichReporter draws bars and lines from it

A reporter that does nothing is the default, so library callers see no output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .data import DataSource


class Reporter:
    """What the loop tells the outside world; the CLI draws progress bars from it."""

    def source(self, source: DataSource) -> None: ...

    def task(self, description: str, total: int) -> Task:
        return Task()

    def epoch(self, record: dict[str, float]) -> None: ...

    def saved(self, path: str, epoch: int) -> None:
        """The checkpoint at ``path`` now holds ``epoch`` (written whole, atomically)."""

    def message(self, text: str) -> None: ...


class Task:
    def advance(self, n: int = 1, **fields: float) -> None: ...

    def close(self) -> None: ...
