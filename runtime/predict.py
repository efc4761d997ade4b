"""Top-k prediction with onnxruntime: what ships to the edge (numpy, Pillow, onnxruntime; no torch).

    clf = Classifier("model.int8.onnx")
    clf.predict("rose.jpg", k=3)                     # [TopK(rank=1, index=2, label='rose', prob=0.91), ...]
    for result in clf.predict_many(["a.jpg", "broken.jpg"], k=5):
        print(result.image, result.error or result.top_k[0].label)

Everything the model needs (labels, resize, crop, mean, std, input type) comes from the model card
inside the file, so a deployed model is fed exactly as it was trained. One onnxruntime session per
Classifier, reused; ``predict`` and ``predict_many`` may be called from several threads at once.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flower_edge.common.errors import CardError, ConfigError, FlowerEdgeError, ImageError

from .card import MAX_CARD_BYTES, ModelCard
from .image import MAX_PIXELS, load_image, preprocess, to_rgb
from .session import open_session

ImageInput = str | os.PathLike | Image.Image
MAX_BATCH = 256
"""Images per onnxruntime call: memory grows with it (300 took 2.9 GB at 224 px, 100,000 was killed)."""


@dataclass(frozen=True)
class TopK:
    rank: int
    index: int
    label: str
    prob: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Result:
    """The top-k of one image, or why it could not be read."""

    image: str
    top_k: tuple[TopK, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "top_k": [t.to_dict() for t in self.top_k]}


class Classifier:
    def __init__(
        self,
        model: str | os.PathLike,
        *,
        labels: str | os.PathLike | Mapping[str, str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = Path(model)
        if not self.path.is_file():
            raise FlowerEdgeError(f"{self.path}: no such model file")
        self.session = open_session(self.path, threads)
        self.card = ModelCard.from_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()[0].shape[-1]  # (batch, classes); either may be symbolic
        if not isinstance(outputs, int):  # known only by running it: once, on a blank image
            blank = np.zeros((1, *self._input_shape()), np.uint8 if self.card.input_dtype == "uint8" else np.float32)
            outputs = self.session.run(None, {self.input_name: blank})[0].shape[-1]
        if outputs != self.card.num_classes:
            raise CardError(
                f"{self.path}: its card names {self.card.num_classes} classes but the model "
                f"gives {outputs} outputs; the card does not belong to this model"
            )
        self.labels = self.card.labels if labels is None else _override_labels(self.card, labels)

    def predict(self, image: ImageInput, k: int = 5) -> list[TopK]:
        """The top ``k`` classes of one image, most probable first. Raises ImageError."""
        x = self._input(image)[None]  # (1, ...) batch of one
        return self._top_k(self._probabilities(x)[0], k)

    def predict_many(self, images: Iterable[ImageInput], k: int = 5, batch_size: int = 16) -> list[Result]:
        """One Result per image, in order; an unreadable image gets an error and the rest go on."""
        return list(self.predict_stream(images, k, batch_size))

    def predict_stream(
        self, images: Iterable[ImageInput], k: int = 5, batch_size: int = 16, decoders: int | None = None
    ) -> Iterator[Result]:
        """:meth:`predict_many` as a stream: each batch's Results, in order, as soon as it is known.

        ``decoders`` threads (default: up to 4) decode and preprocess the next photos while
        onnxruntime runs a batch, at most two batches ahead, so memory stays flat on any number of
        images and ``images`` may be a generator that never ends."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH}, found {batch_size}")
        workers = decoders or min(4, os.cpu_count() or 1)
        source = iter(images)
        window: deque[tuple[str, Future]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:

            def fill() -> None:
                while len(window) < 2 * batch_size:
                    try:
                        image = next(source)
                    except StopIteration:
                        return
                    window.append((_name(image), pool.submit(self._decoded, image)))

            try:
                fill()
                while window:
                    batch: list[tuple[str, np.ndarray | str]] = []
                    while window and sum(not isinstance(x, str) for _, x in batch) < batch_size:
                        name, future = window.popleft()
                        batch.append((name, future.result()))
                        fill()
                    yield from self._answer(batch, k)
            finally:  # a consumer that stops early: no decoding left running behind it
                for _, future in window:
                    future.cancel()

    def predict_files(self, files: Sequence[tuple[str, bytes | None]], k: int = 5) -> list[Result]:
        """Results of one batch of photos given as (path, the file's bytes or None to read it here):
        for workers that get the files from elsewhere (Ray Data, object storage)."""
        if not 1 <= len(files) <= MAX_BATCH:
            raise ConfigError(f"a batch holds 1 to {MAX_BATCH} photos, found {len(files)}")
        return list(self._answer([(name, self._decoded(name, data)) for name, data in files], k))

    def _answer(self, batch: list[tuple[str, np.ndarray | str]], k: int) -> Iterator[Result]:
        inputs = [x for _, x in batch if not isinstance(x, str)]
        probs = iter(self._probabilities(np.stack(inputs)) if inputs else ())
        for name, x in batch:
            yield Result(name, error=x) if isinstance(x, str) else Result(name, tuple(self._top_k(next(probs), k)))

    def _decoded(self, image: ImageInput, data: bytes | None = None) -> np.ndarray | str:
        """The model's input for ``image`` (whose bytes are ``data`` when given), or why it cannot
        be read (one line)."""
        name = _name(image)
        try:
            if data is not None:
                return preprocess(load_image(image, data=data), self.card)  # type: ignore[arg-type]
            return self._input(image)
        except ImageError as e:
            return str(e)
        except OSError as e:  # whatever the file system says of this one path; the rest go on
            return f"{name}: {e.strerror or e}"

    def _input(self, image: ImageInput) -> np.ndarray:
        if not isinstance(image, Image.Image):
            return preprocess(load_image(image), self.card)
        w, h = image.size
        if w * h > MAX_PIXELS:
            raise ImageError(f"image: {w}x{h} pixels is over the limit of {MAX_PIXELS:,}")
        try:  # an in-memory image of any mode (L, RGBA, CMYK, P, I;16...) is taken as a viewer shows it
            return preprocess(to_rgb(image), self.card)
        except (OSError, ValueError) as e:
            raise ImageError(f"image: cannot use this {image.mode} image ({e})") from None

    def _input_shape(self) -> tuple[int, ...]:
        c, h, w = self.card.input_size
        return (h, w, c) if self.card.input_dtype == "uint8" else (c, h, w)  # as preprocess() gives it

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: x})[0]  # (B, classes)
        probs = out if self.card.output == "probabilities" else softmax(out)
        if not np.all(np.isfinite(probs)):  # NaN weights, say: no answer rather than a made-up one
            raise FlowerEdgeError(
                f"{self.path}: the model's outputs are not finite numbers (NaN or infinity); the model is broken"
            )
        return probs

    def _top_k(self, probs: np.ndarray, k: int) -> list[TopK]:
        k = max(1, min(k, len(probs)))
        order = np.argsort(-probs, kind="stable")[:k]
        return [TopK(rank + 1, int(i), self.labels[i], float(probs[i])) for rank, i in enumerate(order)]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, classes) logits, stable for large values."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log of :func:`softmax`, without its underflow to log(0)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _name(image: ImageInput) -> str:
    return "<image>" if isinstance(image, Image.Image) else str(image)


def _override_labels(card: ModelCard, labels: str | os.PathLike | Mapping[str, str]) -> tuple[str, ...]:
    """Names from a cat_to_name.json-style map (class id -> name); ids it lacks keep the card's."""
    if not isinstance(labels, Mapping):
        path = Path(labels)
        try:
            if path.stat().st_size > MAX_CARD_BYTES:
                raise CardError(f"--labels {path}: over the limit of {MAX_CARD_BYTES:,} bytes")
            labels = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CardError(f"--labels {path}: no such file") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise CardError(f"--labels {path}: not a JSON file ({str(e)[:200]})") from None
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            raise CardError(f'--labels {path}: expected an object of class id -> name, like {{"1": "daisy"}}')
    unknown = set(labels) - set(card.class_ids)
    if unknown == set(labels):
        raise CardError(f"--labels names none of the model's class ids ({', '.join(card.class_ids[:5])}, ...)")
    return tuple(labels.get(cid, name) for cid, name in zip(card.class_ids, card.labels))


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files, folders (recursively: their images) and glob patterns, in order, without repeats.

    A path that matches nothing stays in the list, so its error is reported like any other."""
    return list(iter_inputs(inputs))


def iter_inputs(inputs: Sequence[str]) -> Iterator[str]:
    """:func:`expand_inputs` one path at a time: a folder of a million photos starts at once.

    A folder is walked lazily, each directory's entries sorted so that the order is that of its
    sorted paths. Repeats are dropped across several INPUTs (one folder has none)."""
    import glob

    seen: set[str] | None = set() if len(inputs) > 1 else None
    for item in inputs:
        path = Path(item)
        try:
            if path.is_dir():
                found: Iterable[str] = _walk(path)
            elif not path.exists() and glob.has_magic(item):
                # a pattern that matches nothing stays, so it is reported instead of vanishing
                found = sorted(p for p in glob.glob(item, recursive=True) if _is_image(Path(p), any_suffix=True)) or [
                    item
                ]
            else:
                found = [item]
        except OSError:  # a name over the file system's limit, a folder that cannot be listed: its own error
            found = [item]
        for p in found:
            if seen is not None:
                if p in seen:
                    continue
                seen.add(p)
            yield p


def _walk(folder: Path) -> Iterator[str]:
    """The images under ``folder`` in the order of ``sorted(folder.rglob("*"))`` without listing
    it all first: a folder's entries sort as ``name/``, which is how its paths compare."""
    try:
        with os.scandir(folder) as it:
            entries = [
                (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in it
            ]  # as rglob: links to folders are not entered
    except OSError:
        return
    for key, entry in sorted(entries, key=lambda pair: pair[0]):
        path = Path(entry.path)
        if key.endswith("/"):
            yield from _walk(path)
        elif _is_image(path):
            yield str(path)


def _is_image(path: Path, any_suffix: bool = False) -> bool:
    from .image import is_image_file

    try:
        return path.is_file() and (any_suffix or is_image_file(path))
    except OSError:
        return False
