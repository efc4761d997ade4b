"""The model card: the one fact that travels from training to the phone.

Training writes it into the checkpoint, export copies it into the ONNX file and beside it as
``card.json``, and the runtime reads it and nothing else. Labels and every preprocessing step live
here, so a deployed model is fed exactly as it was trained.

    card = ModelCard.from_json(Path("card.json").read_text())
    card.labels[3], card.crop_size, card.mean
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from .errors import CardError

SCHEMA_VERSION = 1
ONNX_METADATA_KEY = "flower_edge.card"
"""The key of the card's JSON in an exported ONNX file's metadata_props."""
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
LAYOUTS = ("NCHW", "NHWC")
INPUT_DTYPES = ("float32", "uint8")
OUTPUT_KINDS = ("logits", "probabilities")


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
            raise CardError(
                f"model card: {len(self.labels)} labels but {len(self.class_ids)} class ids"
            )
        if not self.labels:
            raise CardError("model card: labels must name at least one class, found none")
        if self.input_size != (3, self.crop_size, self.crop_size):
            raise CardError(
                f"model card: input_size must be (3, crop_size, crop_size) = "
                f"(3, {self.crop_size}, {self.crop_size}), found {self.input_size}"
            )
        if self.crop_size > self.resize_size:
            raise CardError(
                f"model card: crop_size ({self.crop_size}) must not exceed "
                f"resize_size ({self.resize_size})"
            )
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_choice("input_dtype", self.input_dtype, INPUT_DTYPES)
        _check_choice("output", self.output, OUTPUT_KINDS)
        if any(s <= 0 for s in self.std):
            raise CardError(f"model card: std must be positive, found {self.std}")

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
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelCard":
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
        missing = [f.name for f in fields(cls) if f.name in _REQUIRED and f.name not in data]
        if missing:
            raise CardError(f"model card: missing field {missing[0]!r}")
        kwargs = {name: _PARSERS[name](name, value) for name, value in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike) -> "ModelCard":
        """The card an export stored in a model's metadata (``.onnx`` or ``.ort``)."""
        from .session import open_session

        return cls.from_metadata(open_session(path).get_modelmeta().custom_metadata_map, path)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str | os.PathLike = "model") -> "ModelCard":
        if ONNX_METADATA_KEY not in metadata:
            raise CardError(f"{source}: has no flower-edge model card (metadata key {ONNX_METADATA_KEY!r})")
        return cls.from_json(metadata[ONNX_METADATA_KEY])

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardError(f"model card: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(data)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CardError(
            f"model card: field {name!r} must be one of {', '.join(allowed)}, found {value!r}"
        )


def _wrong(name: str, expected: str, value: Any) -> CardError:
    return CardError(f"model card: field {name!r} must be {expected}, found {value!r}")


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _wrong(name, "a non-empty string", value)
    return value


def _int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _wrong(name, "a positive integer", value)
    return value


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _wrong(name, "a list of strings", value)
    return tuple(value)


def _ints(n: int):
    def parse(name: str, value: Any) -> tuple[int, ...]:
        if (
            not isinstance(value, (list, tuple))
            or len(value) != n
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        ):
            raise _wrong(name, f"{n} positive integers", value)
        return tuple(value)

    return parse


def _floats(n: int):
    def parse(name: str, value: Any) -> tuple[float, ...]:
        if not isinstance(value, (list, tuple)) or len(value) != n or not all(map(_number, value)):
            raise _wrong(name, f"{n} numbers", value)
        return tuple(float(v) for v in value)

    return parse


def _number_map(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and _number(v) for k, v in value.items()
    ):
        raise _wrong(name, "an object of numbers", value)
    return dict(value)


def _string_map(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _wrong(name, "an object of strings", value)
    return dict(value)


def _optional_map(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _wrong(name, "an object or null", value)
    return dict(value)


_PARSERS = {
    "schema_version": _int,
    "arch": _str,
    "labels": _strings,
    "class_ids": _strings,
    "input_size": _ints(3),
    "resize_size": _int,
    "crop_size": _int,
    "interpolation": _str,
    "mean": _floats(3),
    "std": _floats(3),
    "layout": _str,
    "input_dtype": _str,
    "output": _str,
    "metrics": _number_map,
    "provenance": _string_map,
    "quantization": _optional_map,
}
_REQUIRED = {
    "arch", "labels", "class_ids", "input_size", "resize_size", "crop_size",
    "interpolation", "mean", "std",
}
