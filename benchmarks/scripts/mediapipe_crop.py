"""MediaPipe's ImageClassifier on the .tflite files against flower-run, cropping two ways.

    flower-export runs/f102/flower.pth --format all --quantize --verify-size 0 -o runs/f102/all
    python benchmarks/scripts/mediapipe_crop.py runs/f102/all ../shared/data/flowers102/valid --json crop.json

MediaPipe resizes its region of interest to the model's input, the whole photo unless told
otherwise, where the card resizes the shorter side and crops the centre. For each .tflite file:
MediaPipe's top-1 with the whole photo; with the card's crop as region of interest
(export/mediapipe_check.py region), MediaPipe resampling it; and with the photo first resized by
the app (shorter side to resize_size) and the same region, which MediaPipe then takes pixel for
pixel: resized by Pillow as the card says, by OpenCV's area averaging (what Android's and iOS's
high-quality scalers approximate), and by OpenCV's plain bilinear (no antialiasing). Each against
flower-run's top-1 with the float model.onnx on the same photos. Needs the [mediapipe] extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2  # installed with mediapipe
import numpy as np

from flower_edge.export.mediapipe_check import classify
from flower_edge.export.tflite import read_card
from flower_edge.runtime.image import load_image, resize_shorter
from flower_edge.runtime.predict import Classifier
from flower_edge.train.photos import find_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", type=Path, help="a flower-export folder with model.onnx and the .tflite files")
    parser.add_argument("photos", type=Path, help="a folder of photos (class folders or loose)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    paths = find_images(args.photos)
    flower_run = Classifier(args.export / "model.onnx")
    expected = np.array([r.top_k[0].index for r in flower_run.predict_many(paths, k=1)])
    images = [load_image(p) for p in paths]
    photos = [np.asarray(image) for image in images]
    figures = {"photos": len(paths), "reference": "flower-run, model.onnx"}
    ways = ("whole photo", "ROI", "Pillow + ROI", "area + ROI", "bilinear + ROI")
    print(
        f"{'file':<20} "
        + " ".join(f"{w:>14}" for w in ways)
        + f"   top-1 agreement with flower-run, {len(paths)} photos"
    )
    for name in ("model.tflite", "model.int8.tflite"):
        path = args.export / name
        if not path.is_file():
            continue
        card = read_card(path)
        pillow = [np.asarray(resize_shorter(image, card.resize_size, card.interpolation)) for image in images]
        area, linear = (
            [cv2.resize(p, q.shape[1::-1], interpolation=i) for p, q in zip(photos, pillow)]
            for i in (cv2.INTER_AREA, cv2.INTER_LINEAR)
        )
        row = {
            how: float((classify(path, card, given, crop=crop).argmax(1) == expected).mean())
            for how, given, crop in zip(ways, (photos, photos, pillow, area, linear), (False, True, True, True, True))
        }
        figures[name] = row
        print(f"{name:<20} " + " ".join(f"{row[w]:>14.2%}" for w in ways))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
