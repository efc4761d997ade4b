"""Training curves as a PNG, drawn with Pillow (no matplotlib in the install).

    flower-train flowers/ --plot curves.png

Two panels side by side: loss and top-1 accuracy per epoch, training and validation, with the best
epoch marked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from flower_edge.common.files import atomic_write

PANEL_W, PANEL_H, MARGIN = 420, 300, 48
COLORS = {"train": (31, 119, 180), "valid": (214, 39, 40)}


def _panel(
    draw: ImageDraw.ImageDraw,
    x0: int,
    title: str,
    series: dict[str, Sequence[float]],
    epochs: Sequence[int],
    best_epoch: int,
    percent: bool,
) -> None:
    font = ImageFont.load_default()
    left, top = x0 + MARGIN, MARGIN
    right, bottom = x0 + PANEL_W - 16, PANEL_H - MARGIN
    values = [v for s in series.values() for v in s]
    lo, hi = min(values), max(values)
    if percent:
        lo, hi = max(0.0, lo - 0.05), min(1.0, hi + 0.05)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    first, last = epochs[0], max(epochs[-1], epochs[0] + 1)

    def xy(epoch: float, value: float) -> tuple[float, float]:
        return (
            left + (epoch - first) / (last - first) * (right - left),
            bottom - (value - lo) / (hi - lo) * (bottom - top),
        )

    draw.text((left, 14), title, fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    for i in range(5):  # horizontal grid with labels
        v = lo + (hi - lo) * i / 4
        _, y = xy(first, v)
        draw.line([left, y, right, y], fill=(230, 230, 230))
        draw.text((x0 + 4, y - 6), f"{v:.0%}" if percent else f"{v:.2f}", fill=(90, 90, 90), font=font)
    for e in epochs:
        x, _ = xy(e, lo)
        draw.text((x - 3, bottom + 6), str(e), fill=(90, 90, 90), font=font)
    bx, _ = xy(best_epoch, lo)
    draw.line([bx, top, bx, bottom], fill=(120, 180, 120), width=1)
    for name, ys in series.items():
        points = [xy(e, v) for e, v in zip(epochs, ys)]
        if len(points) > 1:
            draw.line(points, fill=COLORS[name], width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=COLORS[name])
    for i, name in enumerate(series):
        draw.text((right - 90, top + 8 + 14 * i), f"-- {name}", fill=COLORS[name], font=font)
    draw.text((left + (right - left) // 2 - 14, PANEL_H - 20), "epoch", fill="black", font=font)


def plot_history(history: Sequence[dict[str, float]], best_epoch: int, path: str | os.PathLike) -> Path:
    """Write the loss and accuracy curves of a training history to a PNG, atomically."""
    epochs = [int(r["epoch"]) for r in history]
    img = Image.new("RGB", (2 * PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    _panel(
        draw,
        0,
        "loss",
        {"train": [r["train_loss"] for r in history], "valid": [r["valid_loss"] for r in history]},
        epochs,
        best_epoch,
        False,
    )
    _panel(
        draw,
        PANEL_W,
        f"top-1 accuracy (best: epoch {best_epoch})",
        {"train": [r["train_top1"] for r in history], "valid": [r["valid_top1"] for r in history]},
        epochs,
        best_epoch,
        True,
    )
    return atomic_write(path, lambda f: img.save(f, format="PNG"))
