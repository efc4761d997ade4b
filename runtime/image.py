"""The one image loader and the one preprocessing definition of flower-edge.

Training evaluates through these functions and the runtime predicts through them, so the two can
never drift apart. Only Pillow and numpy: no torch.

    img = load_image("flower.jpg")            # RGB, EXIF orientation applied, size capped
    x = preprocess(img, card)                 # (3, crop, crop) float32, normalized
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from flower_edge.common.errors import ImageError

from .card import ModelCard

MAX_PIXELS = 64_000_000
"""Images larger than this are refused before they are decoded (decompression bombs)."""

MAX_ASPECT = 20
"""Longest side over shortest side. Resizing scales the shorter side up to the model's size, so a
1 x 8,000 strip would become 224 x 1.8 million pixels (1.7 GB); a 20:1 panorama stays under 5 MP."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, data: bytes | None = None) -> Image.Image:
    """Decode an image file into an 8-bit RGB image the way a person would see it.

    EXIF orientation is applied; grayscale, palette, transparent, CMYK and 16-bit images are
    converted. Raises ImageError, with the path and the reason, for anything that is not a
    readable image. ``data``, when given, is the file's content, read elsewhere (``path`` then
    only names it).
    """
    path = Path(path)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{path}: {w}x{h} pixels is over the limit of {max_pixels:,} (decompression bomb guard)"
                )
            check_aspect(w, h, path)
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied (not readable by this user)") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        what = "empty file" if (len(data) if data is not None else _size(path)) == 0 else "not an image Pillow can read"
        raise ImageError(f"{path}: {what}") from None
    except OSError as e:
        if e.errno and e.strerror:  # the file system's word: a name too long, an I/O error
            raise ImageError(f"{path}: {e.strerror}") from None
        raise ImageError(f"{path}: cannot decode image ({e})") from None
    except (ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot decode image ({e})") from None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def check_aspect(w: int, h: int, source: str | os.PathLike = "image") -> None:
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(
            f"{source}: {w}x{h} pixels is narrower than the limit of {MAX_ASPECT}:1 "
            "(resizing it would blow the long side up)"
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16-bit and float grayscale scaled, transparency on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16- and 32-bit grayscale: Pillow's own convert clips instead of scaling.
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels are shown on white, as a photo viewer would.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_shorter(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (torchvision's rule)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), _RESAMPLE[interpolation])


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    top = round((h - size) / 2.0)
    left = round((w - size) / 2.0)
    return img.crop((left, top, left + size, top + size))


def normalize(rgb: np.ndarray, card: ModelCard) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W), scaled to [0, 1] then normalized by the card.

    Each channel is a lookup in a 256-entry table of ``(v / 255 - mean) / std`` computed in float32:
    the same numbers as the arithmetic on every pixel, several times faster.
    """
    table = _normalize_table(tuple(card.mean), tuple(card.std))  # (3, 256)
    rgb = np.asarray(rgb, dtype=np.uint8)
    out = np.empty((3, *rgb.shape[:2]), np.float32)
    for c in range(3):
        np.take(table[c], rgb[..., c], out=out[c])
    return out


@functools.lru_cache(maxsize=16)
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)  # (1, 256)
    table = (values - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
    table.flags.writeable = False
    return table


def pixels(img: Image.Image, card: ModelCard) -> np.ndarray:
    """An RGB image resized and centre-cropped as the card says: uint8 (crop, crop, 3)."""
    check_aspect(*img.size)
    img = resize_shorter(img, card.resize_size, card.interpolation)
    img = center_crop(img, card.crop_size)
    return np.asarray(img, dtype=np.uint8)


def preprocess(img: Image.Image, card: ModelCard) -> np.ndarray:
    """An RGB image -> the model's input for one image: (3, crop, crop) float32, normalized; or,
    for a model that normalizes inside its graph (``card.input_dtype == "uint8"``), the raw
    (crop, crop, 3) uint8 pixels."""
    rgb = pixels(img, card)
    return rgb if card.input_dtype == "uint8" else normalize(rgb, card)
