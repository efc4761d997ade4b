"""The seed projects' prediction figure, drawn with Pillow: each image beside its top-k bars.

    flower-run model.onnx rose.jpg --plot rose-top5.png

One row per image, ROW_H pixels high and WIDTH wide; an image that could not be read gets a row
with its error instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from flower_edge.common.files import atomic_write
from flower_edge.common.output import printable

from .image import load_image
from .predict import Result

WIDTH, ROW_H, THUMB = 840, 300, 260
BAR = (31, 119, 180)


MAX_ROWS = 50
"""Images drawn: the sheet grows by ROW_H pixels per image (2,000 photos made an 840 x 600,000 PNG
and took 2 GB); the rest are counted in a last line."""
FOOTER_H = 40


def plot_results(results: Sequence[Result], path: str | os.PathLike) -> None:
    shown, rest = results[:MAX_ROWS], len(results) - MAX_ROWS
    sheet = Image.new("RGB", (WIDTH, ROW_H * max(1, len(shown)) + (FOOTER_H if rest > 0 else 0)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if rest > 0:
        draw.text(
            (20, ROW_H * len(shown) + 12),
            f"and {rest} more images (--plot draws the first {MAX_ROWS}; --json lists every answer)",
            fill=(90, 90, 90),
            font=font,
        )
    for row, result in enumerate(shown):
        top = row * ROW_H
        if row:
            draw.line([0, top, WIDTH, top], fill=(220, 220, 220))
        draw.text((20, top + 8), _short(result.image, 60), fill="black", font=font)
        if result.error is not None:
            draw.text((20, top + 40), _short(result.error, 120), fill=(200, 30, 30), font=font)
            continue
        try:
            img = load_image(result.image)
            img.thumbnail((THUMB, THUMB))
            sheet.paste(img, (20 + (THUMB - img.width) // 2, top + 28 + (THUMB - img.height) // 2))
        except Exception:  # the image was read once already; a plot never fails a prediction
            draw.rectangle([20, top + 28, 20 + THUMB, top + 28 + THUMB], outline=(200, 200, 200))
        _bars(draw, font, result, left=THUMB + 60, top=top + 28)
    atomic_write(path, lambda f: sheet.save(f, format="PNG"))


def _bars(draw: ImageDraw.ImageDraw, font, result: Result, left: int, top: int) -> None:
    label_w, right = 150, WIDTH - 70
    slot = THUMB // max(5, len(result.top_k))
    for i, t in enumerate(result.top_k):
        y = top + i * slot + slot // 4
        draw.text((left, y + 2), _short(t.label, 24), fill="black", font=font)
        x0 = left + label_w
        draw.rectangle([x0, y, x0 + max(1, int(t.prob * (right - x0))), y + slot // 2], fill=BAR)
        draw.text((x0 + int(t.prob * (right - x0)) + 6, y + 2), f"{t.prob:.1%}", fill=(60, 60, 60), font=font)


def _short(text: str, n: int) -> str:
    text = printable(text)
    return text if len(text) <= n else "..." + text[-(n - 3) :]
