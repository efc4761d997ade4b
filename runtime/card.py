"""The model card: the one fact that travels from training to the phone.

Training writes it into the checkpoint, export copies it into the ONNX file and beside it as
``card.json``, and the runtime reads it and nothing else. Labels and every preprocessing step live
here, so a deployed model is fed exactly as it was trained.

    card = ModelCard.from_json(Path("card.json").read_text())
    card.labels[3], card.crop_size, card.mean
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from flower_edge.common.errors import CardError

from .card_fields import MAX_SIDE, PARSERS, REQUIRED

SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "flower_edge.card"
"""The key of the card's JSON in an exported ONNX file's metadata_props."""
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "uint8")
OUTPUT_KINDS = ("logits", "probabilities")
MAX_CLASSES = 100_000
MAX_LABEL_CHARS = 256
MAX_CARD_BYTES = 8 << 20


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to feed a model and read its answer, and where it came from."""

    arch: str
    labels: tuple[str, ...]
    """Human-readable name of each output index."""
    class_ids: tuple[str, ...]
    """The data's class id (its folder name) of each output index."""
    input_size: tuple[int, int, int]
    """(channels, height, width) of one image as the model takes it."""
    resize_size: int
    """The shorter side is resized to this before the centre crop."""
    crop_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = "NCHW"
    input_dtype: str = "float32"
    """float32: normalized by mean and std before the model; uint8: raw 0-255 pixels, which the
    model normalizes inside its graph (an export with --embed-preprocessing, layout NHWC)."""
    output: str = "logits"
    metrics: Mapping[str, float] = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    quantization: Mapping[str, Any] | None = None
    """What int8 quantization did (method, calibration set), or None for a float model."""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.class_ids):
            raise CardError(f"model card: {len(self.labels)} labels but {len(self.class_ids)} class ids")
        if not self.labels:
            raise CardError("model card: labels must name at least one class, found none")
        if self.input_size != (3, self.crop_size, self.crop_size):
            raise CardError(
                f"model card: input_size must be (3, crop_size, crop_size) = "
                f"(3, {self.crop_size}, {self.crop_size}), found {self.input_size}"
            )
        if not 0 < self.resize_size <= MAX_SIDE:
            raise CardError(f"model card: resize_size must be from 1 to {MAX_SIDE}, found {self.resize_size}")
        if self.crop_size > self.resize_size:
            raise CardError(
                f"model card: crop_size ({self.crop_size}) must not exceed resize_size ({self.resize_size})"
            )
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_choice("input_dtype", self.input_dtype, INPUT_DTYPES)
        _check_choice("output", self.output, OUTPUT_KINDS)
        if any(s <= 0 for s in self.std):
            raise CardError(f"model card: std must be positive, found {self.std}")
        _check_normalization(self.mean, self.std)
        for name in ("labels", "class_ids"):
            _check_names(name, getattr(self, name))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.class_ids)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("labels", "class_ids", "input_size", "mean", "std"):
            d[name] = list(d[name])
        d["metrics"] = dict(self.metrics)
        d["provenance"] = dict(self.provenance)
        if self.quantization is not None:
            d["quantization"] = dict(self.quantization)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        if not isinstance(data, Mapping):
            raise CardError(f"model card: expected a JSON object, found {type(data).__name__}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise CardError(f"model card: field 'schema_version' must be an integer, found {version!r}")
        if version > SCHEMA_VERSION:
            raise CardError(
                f"model card schema {version} is newer than this flower-edge understands "
                f"({SCHEMA_VERSION}); upgrade flower-edge"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"model card: unknown field {unknown[0]!r}")
        missing = [f.name for f in fields(cls) if f.name in REQUIRED and f.name not in data]
        if missing:
            raise CardError(f"model card: missing field {missing[0]!r}")
        kwargs = {name: PARSERS[name](name, value) for name, value in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike) -> ModelCard:
        """The card an export stored in a model's metadata (``.onnx`` or ``.ort``)."""
        from .session import open_session

        return cls.from_metadata(open_session(path).get_modelmeta().custom_metadata_map, path)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str | os.PathLike = "model") -> ModelCard:
        if ONNX_METADATA_KEY not in metadata:
            raise CardError(f"{source}: has no flower-edge model card (metadata key {ONNX_METADATA_KEY!r})")
        try:
            return cls.from_json(metadata[ONNX_METADATA_KEY])
        except CardError as e:
            raise CardError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        if len(text) > MAX_CARD_BYTES:
            raise CardError(f"model card: {len(text):,} characters is over the limit of {MAX_CARD_BYTES:,}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardError(f"model card: not valid JSON ({e.msg} at line {e.lineno})") from None
        except (ValueError, RecursionError) as e:  # a 5,000-digit number; nesting deeper than Python's stack
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
            raise CardError(f"model card: not usable JSON ({reason})") from None
        return cls.from_dict(data)


def _check_normalization(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Preprocessing computes (v / 255 - mean) / std in float32: every value must stay finite (a std
    of 1e-50 is positive, but 0 in float32, and every probability became NaN)."""
    import numpy as np

    with np.errstate(all="ignore"):
        m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        ends = (np.array([[0.0], [1.0]], np.float32) - m) / s  # (2, 3): the values of a black and a white pixel
    if not (np.all(s > 0) and np.all(np.isfinite(ends)) and np.all(np.abs(ends) < 1e6)):
        raise CardError(
            f"model card: mean {tuple(mean)} and std {tuple(std)} do not normalize pixels to finite float32 values"
        )


def _check_names(name: str, values: tuple[str, ...]) -> None:
    """Labels and class ids are data, not layout: every file that lists them one a line (labels.txt
    in a .tflite) and every terminal that prints them must show exactly one line per class."""
    from flower_edge.common.output import control_character, printable

    if len(values) > MAX_CLASSES:
        raise CardError(f"model card: {len(values):,} {name} is over the limit of {MAX_CLASSES:,}")
    for i, value in enumerate(values):
        bad = control_character(value)
        if bad is not None:
            raise CardError(
                f"model card: {name}[{i}] {printable(value)!r} holds a control character "
                f"({bad.encode('unicode_escape').decode()}); names must be one line of text"
            )
        if not value.strip() or len(value) > MAX_LABEL_CHARS:
            raise CardError(
                f"model card: {name}[{i}] must be 1 to {MAX_LABEL_CHARS} characters of text, found {len(value)}"
            )
    if len(set(values)) != len(values):
        seen: set[str] = set()
        for twice in values:
            if twice in seen:
                break
            seen.add(twice)
        raise CardError(f"model card: {name} names {printable(twice)!r} twice; each class needs its own name")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CardError(f"model card: field {name!r} must be one of {', '.join(allowed)}, found {value!r}")
