"""What flower-train shows while it works: rich progress bars on a terminal, progress lines in a
log, an epoch line each epoch (train/report.py's Reporter, drawn)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from flower_edge.common.output import printable
from flower_edge.common.progress import ProgressLines


class RichReporter:
    """Progress bars and an epoch table on stderr, so stdout stays clean for --json."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.last_saved: tuple[str, int] | None = None
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=quiet,
        )

    def source(self, source) -> None:
        sizes = ", ".join(f"{name} {len(s)}" for name, s in source.splits.items())
        self.message(f"data: {source.description} ({source.num_classes} classes; {sizes} images)")
        if source.skipped_links:
            self.message(
                f"skipped {source.skipped_links} symbolic link{'s' if source.skipped_links > 1 else ''} "
                "that point outside DATA (--follow-symlinks follows them)"
            )
        for line in source.skipped:
            self.console.print(f"skipped broken image {printable(line)}", highlight=False, markup=False, soft_wrap=True)

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def task(self, description: str, total: int):
        if self.quiet:
            return _Silent()
        if not self.console.is_terminal:  # a log file, CI, a notebook: lines, never silence
            return ProgressLines(description, total, self.message)
        progress = self.progress

        class _Bar:
            def __init__(self) -> None:
                self.id = progress.add_task(description, total=total, info="")

            def advance(self, n: int = 1, **fields: float) -> None:
                info = "  ".join(f"{k} {v:.3f}" for k, v in fields.items())
                progress.update(self.id, advance=n, info=info)

            def close(self) -> None:
                progress.remove_task(self.id)

        return _Bar()

    def epoch(self, r: dict) -> None:
        self.message(
            f"epoch {r['epoch']:>3}  train loss {r['train_loss']:.4f} acc {r['train_top1']:.2%}  "
            f"valid loss {r['valid_loss']:.4f} top-1 {r['valid_top1']:.2%} top-5 {r['valid_top5']:.2%}"
        )

    def saved(self, path: str, epoch: int) -> None:
        self.last_saved = (path, epoch)

    def interrupted(self) -> str:
        """The Ctrl-C line: what this run left on disk, and nothing it did not."""
        if self.last_saved is None:
            return "interrupted before the first epoch finished; no checkpoint was written by this run"
        path, epoch = self.last_saved
        return f"interrupted; {path} holds epoch {epoch} (--resume {path} goes on from there)"

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(printable(text), highlight=False, markup=False, soft_wrap=True)


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.0f} img/s" if task.speed else "")


class _Silent:
    def advance(self, n: int = 1, **fields: float) -> None: ...

    def close(self) -> None: ...
