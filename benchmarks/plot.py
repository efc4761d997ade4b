"""flower-bench's picture: accuracy against batch-1 latency, one bubble per format sized by its file."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from flower_edge.common.files import atomic_write

WIDTH, HEIGHT, MARGIN = 720, 480, 70
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def plot_accuracy_latency(rows: Sequence, path: str | os.PathLike) -> None:
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, top, right, bottom = MARGIN, 40, WIDTH - 30, HEIGHT - MARGIN
    xs = [r.latency_ms_median for r in rows]
    ys = [r.top1 for r in rows]
    x_hi = max(xs) * 1.15
    y_lo, y_hi = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.03)
    if y_hi - y_lo < 1e-6:
        y_lo, y_hi = y_lo - 0.05, y_hi + 0.05

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + x / x_hi * (right - left), bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    draw.text((left, 12), "top-1 accuracy vs batch-1 latency (bubble area: file size)", fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    for i in range(5):
        v = y_lo + (y_hi - y_lo) * i / 4
        _, y = xy(0, v)
        draw.line([left, y, right, y], fill=(232, 232, 232))
        draw.text((8, y - 6), f"{v:.1%}", fill=(90, 90, 90), font=font)
        t = x_hi * i / 4
        x, _ = xy(t, y_lo)
        draw.text((x - 8, bottom + 8), f"{t:.1f}", fill=(90, 90, 90), font=font)
    draw.text(((left + right) // 2 - 40, HEIGHT - 28), "latency, ms (median)", fill="black", font=font)
    biggest = max(r.size_mb for r in rows) or 1.0
    for i, r in enumerate(rows):
        x, y = xy(r.latency_ms_median, r.top1)
        radius = 6 + 30 * math.sqrt(r.size_mb / biggest)
        color = COLORS[i % len(COLORS)]
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=color, width=2)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        draw.text((x + radius + 4, y - 6 + 12 * (i % 2)), f"{r.format} ({r.size_mb:.1f} MB)", fill=color, font=font)
    atomic_write(path, lambda f: img.save(f, format="PNG"))
