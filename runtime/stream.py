"""flower-run --jsonl: answers written as they are known, and a run that resumes where it stopped.

    sink = JsonlSink("out.jsonl", reads=[("the model", "model.onnx")])
    todo = sink.resume(paths)          # or sink.create(paths): refuses a file that exists
    for result in classifier.predict_stream(todo):
        sink.write(result)             # one line, flushed: an interruption loses at most one line
    sink.close()

A resumed run reads the file in step with the inputs, so it needs no memory per answered image: the
inputs must come in the same order as the first time (they do, for the same command line), and a
file written for other inputs is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from flower_edge.common.errors import FlowerEdgeError
from flower_edge.common.output import check_output_file, printable

from .predict import Result

MAGIC = b'{"image": '


def check_not_matched(path: str, inputs) -> None:
    """Refuse a --jsonl path that a glob INPUT would match: the lazy walk could read it back as a photo."""
    import glob
    from fnmatch import fnmatch

    for pattern in inputs:
        if glob.has_magic(pattern) and not Path(pattern).exists():
            for name, form in ((path, pattern), (os.path.abspath(path), os.path.abspath(pattern))):
                if fnmatch(os.path.normpath(name), os.path.normpath(form)):
                    raise FlowerEdgeError(
                        f"--jsonl {printable(path)}: matches the input pattern "
                        f"{printable(pattern)!r}, which this run reads; write it elsewhere"
                    )


def jsonl_line(result: Result) -> str:
    return json.dumps(result.to_dict(), allow_nan=False)


class JsonlSink:
    def __init__(self, path: str | os.PathLike, reads=()) -> None:
        self.path = Path(path)
        check_output_file(path, "--jsonl", reads, magic=MAGIC, kind="flower-run --jsonl")
        self.file: TextIO | None = None
        self.skipped = self.written = 0

    def create(self, paths: Iterator[str]) -> Iterator[str]:
        if self.path.exists():
            raise FlowerEdgeError(f"--jsonl {self.path}: exists; --resume continues it, or remove it to start over")
        self.file = open(self.path, "x", encoding="utf-8")
        return paths

    def resume(self, paths: Iterator[str]) -> Iterator[str]:
        """``paths`` past those the file answers; a half-written last line (an interruption) is cut off."""
        if not self.path.exists():
            return self.create(paths)
        with open(self.path, "rb+") as f:
            data_end = f.seek(0, os.SEEK_END)
            while data_end > 0:  # back to the end of the last whole line
                f.seek(max(0, data_end - 4096))
                chunk = f.read(data_end - max(0, data_end - 4096))
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    data_end = max(0, data_end - len(chunk)) + cut + 1
                    break
                data_end = max(0, data_end - len(chunk))
            f.truncate(data_end)
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                name = _image_of(line, self.path, number)
                expected = next(paths, None)
                if expected != name:
                    there = "no more images" if expected is None else repr(printable(expected))
                    raise FlowerEdgeError(
                        f"--resume: {self.path} line {number} answers {printable(name)!r} where the "
                        f"inputs give {there}; it was written for other inputs"
                    )
                self.skipped += 1
        self.file = open(self.path, "a", encoding="utf-8")
        return paths

    def write(self, result: Result) -> None:
        assert self.file is not None, "create() or resume() first"
        self.file.write(jsonl_line(result) + "\n")
        self.file.flush()
        self.written += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _image_of(line: str, path: Path, number: int) -> str:
    try:
        record = json.loads(line)
        if isinstance(record, dict) and isinstance(record.get("image"), str):
            return record["image"]
    except ValueError:
        pass
    raise FlowerEdgeError(f"--resume: {path} line {number} is not a flower-run --jsonl answer; not continued")


class Progress:
    """Images answered and their rate on stderr, twice a second, when it is a terminal; one summary line."""

    def __init__(self, sink: JsonlSink) -> None:
        self.sink, self.errors = sink, 0
        self.started = self.shown = time.monotonic()
        self.live = sys.stderr.isatty()

    def advance(self, failed: bool) -> None:
        self.errors += failed
        now = time.monotonic()
        if self.live and now - self.shown > 0.5:
            self.shown = now
            rate = self.sink.written / max(now - self.started, 1e-9)
            print(f"\rflower-run: {self.sink.written:,} images, {rate:,.0f} img/s", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        seconds = time.monotonic() - self.started
        skipped = f", {self.sink.skipped:,} answered before" if self.sink.skipped else ""
        print(
            f"{chr(13) if self.live else ''}flower-run: {self.sink.written:,} answers written to "
            f"{printable(str(self.sink.path))} in {seconds:.1f} s ({self.errors:,} errors{skipped})",
            file=sys.stderr,
        )
