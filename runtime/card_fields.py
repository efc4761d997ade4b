"""How each field of a model card's JSON is read: its type, its range, and the bounds that keep a
card from asking for more than a phone or a server can give (runtime/card.py uses these).

    PARSERS["resize_size"]("resize_size", 20000)    # CardError: an integer from 1 to 4096
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from flower_edge.common.errors import CardError

MAX_SIDE = 4096
"""Largest resize and crop side: a 4096 x 4096 RGB image is 50 MB; 20,000 took 2.4 GB for one photo."""
MAX_DEPTH = 8
"""Deepest nesting of objects and lists in the card (the quantization record has 2 levels)."""


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


def _side(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SIDE:
        raise _wrong(name, f"an integer from 1 to {MAX_SIDE}", value)
    return value


def _number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        return False


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
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and _number(v) for k, v in value.items()):
        raise _wrong(name, "an object of numbers", value)
    return dict(value)


def _string_map(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _wrong(name, "an object of strings", value)
    return dict(value)


def _optional_map(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not _plain(value, MAX_DEPTH):
        raise CardError(
            f"model card: field {name!r} must be an object or null of strings, finite numbers, lists "
            f"and objects, at most {MAX_DEPTH} levels deep"
        )
    return dict(value)


def _plain(value: Any, depth: int) -> bool:
    """JSON data with finite numbers, nested at most ``depth`` levels."""
    if isinstance(value, (str, bool)) or value is None:
        return True
    if isinstance(value, (int, float)):
        return _number(value)
    if depth <= 0:
        return False
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v, depth - 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v, depth - 1) for v in value)
    return False


PARSERS = {
    "schema_version": _int,
    "arch": _str,
    "labels": _strings,
    "class_ids": _strings,
    "input_size": _ints(3),
    "resize_size": _side,
    "crop_size": _side,
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
REQUIRED = {
    "arch",
    "labels",
    "class_ids",
    "input_size",
    "resize_size",
    "crop_size",
    "interpolation",
    "mean",
    "std",
}
