"""golden.json: a few verification photos with the checkpoint's answers, for checks where the files run.

    photos = golden_photos(job)          # up to COUNT, each a JPEG and PyTorch's top-5 on it

flower-bundle ships them with the phone app, which runs each through the very path of a user's
photo (decode, the card's preprocessing, the runtime, top-k) at its first start and shows whether
this device answers as the checkpoint ("5/5"). Only photos the checkpoint answers with a clear
margin are chosen (top-1 probability at least MIN_GAP above the runner-up), so that any faithful
runtime, int8 included, must give the same top-1, and a wrong one (a broken kernel, a model file
swapped for another) cannot pass by luck. The photos are stored as JPEG at 1.5 times the card's
resize size, so the check resizes as a user's photo is resized, and PyTorch's answers are computed
on the decoded JPEG itself, the very pixels the app will see.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from flower_edge.common.errors import ImageError
from flower_edge.runtime.image import load_image, preprocess, resize_shorter
from flower_edge.runtime.predict import softmax

GOLDEN = "golden.json"
COUNT = 5
MIN_GAP = 0.5
"""Least top-1 minus top-2 probability of a golden photo."""
LOOK_AT = 60
"""Verification photos tried, in their order, to find COUNT with a clear answer."""
TOP_K = 5
QUALITY = 90


def golden_photos(job) -> list[dict]:
    """Up to COUNT of ``job``'s verification photos, re-encoded, with PyTorch's top-5 on each."""
    from .verify import torch_logits

    card, chosen = job.card, []
    for path in (job.images.verification if job.images else ())[:LOOK_AT]:
        try:
            jpeg = _jpeg(Path(path), card)
            x = preprocess(Image.open(io.BytesIO(jpeg)).convert("RGB"), card)  # the pixels the app decodes
        except ImageError:
            continue
        if card.input_dtype == "uint8":
            return []  # the app feeds such a model pixels; nothing to check here that the float path does not
        probs = softmax(torch_logits(job.model, x[None]))[0]
        top = np.argsort(-probs)[:TOP_K]
        if probs[top[0]] - probs[top[1]] < MIN_GAP:
            continue
        chosen.append(
            {
                "name": f"golden-{len(chosen) + 1}.jpg",
                "source": f"{Path(path).parent.name}/{Path(path).name}",
                "jpeg": base64.b64encode(jpeg).decode("ascii"),
                "top_k": [{"index": int(i), "label": card.labels[i], "prob": round(float(probs[i]), 6)} for i in top],
            }
        )
        if len(chosen) == COUNT:
            break
    return chosen


def wanted(formats) -> bool:
    """Whether an export of ``formats`` writes golden.json: it has a file the phone app runs."""
    from flower_edge.bundle.runtimes import RUNTIMES

    return any(f.key in r.formats for f in formats for r in RUNTIMES.values())


def write(job, path: Path) -> bool:
    """golden.json at ``path`` when golden photos were found; whether it was written."""
    photos = golden_photos(job)
    if photos:
        path.write_text(
            json.dumps(
                {"expected_from": "PyTorch (the checkpoint)", "min_gap": MIN_GAP, "photos": photos},
                indent=1,
                ensure_ascii=False,
            )
        )
    return bool(photos)


def read(path: Path) -> list[dict]:
    """The photos of a golden.json, each with its JPEG bytes under "data"; [] when it is not one."""
    try:
        record = json.loads(path.read_text())
        return [
            {**p, "data": base64.b64decode(p["jpeg"], validate=True)}
            for p in record["photos"]
            if isinstance(p["name"], str)
            and p["name"].startswith("golden-")
            and p["name"].endswith(".jpg")
            and "/" not in p["name"]
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _jpeg(path: Path, card) -> bytes:
    img = load_image(path)
    img = resize_shorter(img, round(card.resize_size * 1.5), "bicubic")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()
