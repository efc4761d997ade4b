"""Procedural flower photos: an offline data set that needs no download.

    python -m flower_edge.train.synthetic out_dir/      # writes out_dir/train|valid|test/<id>/*.png

Five kinds of flower that differ in petal count, petal shape and colour, drawn in varied poses,
scales and positions, on backgrounds of grass, soil and sky with leaves and noise. Colours overlap
between kinds on purpose, so mean colour alone does not tell them apart: a model has to see shape.
Everything is a function of (seed, split, class, index): the same call draws the same pixels.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

VERSION = 1
SIZE = 128
SPLIT_SIZES = {"train": 80, "valid": 24, "test": 24}
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class FlowerKind:
    name: str
    petals: tuple[int, int]
    """Inclusive range of the petal count."""
    shape: str
    width: float
    """Petal width relative to its length."""
    center: float
    """Centre disc radius relative to the flower radius."""
    hue: float
    """Typical petal hue in [0, 1); each photo strays from it, and sometimes far."""


KINDS = (
    FlowerKind("star daisy", (13, 17), "ellipse", 0.22, 0.22, 0.15),
    FlowerKind("wild rose", (5, 5), "round", 0.95, 0.16, 0.95),
    FlowerKind("tri tulip", (3, 3), "pointed", 0.85, 0.10, 0.0),
    FlowerKind("sunburst", (22, 28), "pointed", 0.28, 0.42, 0.12),
    FlowerKind("heart clover", (4, 4), "heart", 0.9, 0.12, 0.8),
)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def _petal_outline(shape: str, length: float, width: float, n: int = 24) -> np.ndarray:
    """Points of one petal lying along +x from the origin, (2n, 2)."""
    t = np.linspace(0.0, 1.0, n)
    if shape == "ellipse":
        w = np.sin(np.pi * t)
    elif shape == "round":
        w = np.sin(np.pi * t) ** 0.5 * (0.6 + 0.4 * t)
    elif shape == "pointed":
        w = np.sin(np.pi * np.minimum(t * 1.4, 1.0) / 1.0) ** 0.7 * (1 - t) ** 0.6 * 1.6
    elif shape == "heart":
        w = np.sin(np.pi * t) ** 0.4 * (0.5 + 0.5 * t)
    else:
        raise ValueError(shape)
    x = t * length
    y = w * width * length / 2
    if shape == "heart":
        # A notch at the tip: pull the outline's end back towards the centre line.
        x = x - 0.25 * length * np.clip((t - 0.75) / 0.25, 0, 1) ** 2 * (1 - np.abs(w) * 0.0)
    upper = np.stack([x, y], 1)
    lower = np.stack([x, -y], 1)[::-1]
    if shape == "heart":
        notch = np.array([[length * 0.78, 0.0]])
        return np.concatenate([upper, notch, lower])
    return np.concatenate([upper, lower])


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    palettes = [
        ((40, 90, 30), (110, 160, 60)),
        ((90, 70, 45), (150, 120, 80)),
        ((120, 160, 220), (200, 220, 240)),
        ((30, 50, 25), (70, 110, 50)),
        ((150, 150, 140), (210, 205, 190)),
    ]
    top, bottom = palettes[rng.integers(len(palettes))]
    top = np.clip(np.array(top) + rng.normal(0, 20, 3), 0, 255)
    bottom = np.clip(np.array(bottom) + rng.normal(0, 20, 3), 0, 255)
    ramp = np.linspace(0, 1, size)[:, None, None]
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    arr = top * (1 - ramp) + bottom * ramp + np.zeros((size, size, 3))
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 12)):  # leaves and blobs
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(size * 0.03, size * 0.15, 2)
        g = rng.uniform(0.5, 1.3)
        color = tuple(int(c) for c in np.clip(np.array((60, 120, 50)) * g + rng.normal(0, 25, 3), 0, 255))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=color)
    return img.filter(ImageFilter.GaussianBlur(size / 60))


def render(kind_index: int, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """One photo of a flower of KINDS[kind_index]."""
    kind = KINDS[kind_index]
    big = size * _SUPERSAMPLE
    img = _background(rng, big)
    draw = ImageDraw.Draw(img)

    radius = big * rng.uniform(0.22, 0.42)
    cx = big / 2 + rng.uniform(-0.15, 0.15) * big
    cy = big / 2 + rng.uniform(-0.15, 0.15) * big
    # Stem and a leaf, drawn first so the flower covers them.
    stem_color = tuple(int(c) for c in rng.uniform((20, 80, 20), (70, 140, 60)))
    draw.line([(cx, cy), (cx + rng.uniform(-0.2, 0.2) * big, big)], fill=stem_color, width=max(2, big // 60))

    hue = kind.hue + rng.normal(0, 0.05) if rng.random() < 0.6 else rng.random()
    petal = np.array(_hsv(hue % 1.0, rng.uniform(0.35, 0.95), rng.uniform(0.7, 1.0)))
    shade = np.clip(petal * rng.uniform(0.55, 0.8), 0, 255)
    n = int(rng.integers(kind.petals[0], kind.petals[1] + 1))
    spin = rng.uniform(0, 2 * math.pi)
    tilt = rng.uniform(0.55, 1.0)  # seen from an angle: squash one axis
    tilt_angle = rng.uniform(0, math.pi)
    outline = _petal_outline(kind.shape, radius, kind.width * rng.uniform(0.85, 1.15))
    inner = _petal_outline(kind.shape, radius * 0.55, kind.width * 0.7)

    def place(points: np.ndarray, angle: float) -> list[tuple[float, float]]:
        c, s = math.cos(angle), math.sin(angle)
        p = points @ np.array([[c, s], [-s, c]])
        ct, st = math.cos(tilt_angle), math.sin(tilt_angle)
        rot = np.array([[ct, st], [-st, ct]])
        p = (p @ rot) * np.array([1.0, tilt]) @ rot.T
        return [(cx + x, cy + y) for x, y in p]

    for i in range(n):
        angle = spin + 2 * math.pi * i / n + rng.normal(0, 0.06)
        jitter = np.clip(petal + rng.normal(0, 12, 3), 0, 255).astype(int)
        draw.polygon(
            place(outline * rng.uniform(0.9, 1.08), angle), fill=tuple(jitter), outline=tuple(int(c) for c in shade)
        )
        draw.polygon(place(inner, angle), fill=tuple(int(c) for c in (petal + shade) / 2))

    r = radius * kind.center * rng.uniform(0.85, 1.15)
    center_color = _hsv(rng.uniform(0.08, 0.16), rng.uniform(0.6, 1.0), rng.uniform(0.25, 0.95))
    draw.ellipse([cx - r, cy - r * tilt, cx + r, cy + r * tilt], fill=center_color)
    for _ in range(int(r)):  # seeds in the disc
        a, d = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.random()) * 0.9
        x, y = cx + d * math.cos(a), cy + d * math.sin(a) * tilt
        dot = tuple(int(c * 0.6) for c in center_color)
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=dot)

    img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * rng.uniform(0.75, 1.2) + rng.normal(0, rng.uniform(2, 8), arr.shape)  # light, sensor noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def image_rng(seed: int, split: str, kind_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, ("train", "valid", "test").index(split), kind_index, index])


def generate(root: Path, sizes: dict[str, int] = SPLIT_SIZES, seed: int = 0, size: int = SIZE) -> Path:
    """Write the data set in the classic layout, with cat_to_name.json; returns root."""
    root = Path(root)
    for split, count in sizes.items():
        for k in range(len(KINDS)):
            folder = root / split / str(k + 1)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                render(k, image_rng(seed, split, k, i), size).save(folder / f"{split}_{k + 1}_{i:04d}.png")
    names = {str(k + 1): kind.name for k, kind in enumerate(KINDS)}
    (root / "cat_to_name.json").write_text(json.dumps(names, indent=1))
    return root


def ensure_synthetic(cache: Path) -> Path:
    """The default synthetic set, generated once; a half-written one is never used."""
    root = Path(cache) / f"v{VERSION}-{SIZE}px"
    if (root / "cat_to_name.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    generate(tmp)
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first
        if not (root / "cat_to_name.json").is_file():
            raise
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m flower_edge.train.synthetic OUT_DIR")
    print(generate(Path(sys.argv[1])))
