"""One cold prediction, as a fresh process: what flower-bench times for each format.

    python -m flower_edge.bench.coldstart onnx-int8 model.int8.onnx rose.jpg

Imports only what the format needs (torch for torch and torchscript, onnxruntime otherwise), loads
the model, predicts the top-5 of one image and prints it, then its own peak resident memory in MB
(VmHWM: the parent's wait4() figure would count the memory of the process it was forked from).
"""

import sys
from pathlib import Path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(fmt: str, path: str, image: str) -> None:
    if fmt in ("onnx", "onnx-int8"):
        from flower_edge.runtime.predict import Classifier

        top = Classifier(path).predict(image, k=5)
        print([t.label for t in top])
        print(peak_rss_mb())
        return
    import torch

    from flower_edge.runtime.image import load_image, preprocess

    if fmt == "torch":
        from flower_edge.train.checkpoint import load_model

        model, card, _ = load_model(path)
    else:
        from flower_edge.export.torchscript import load_torchscript

        model, card = load_torchscript(path)
    with torch.no_grad():
        logits = model(torch.from_numpy(preprocess(load_image(image), card))[None])[0]
    print([card.labels[i] for i in logits.topk(min(5, len(logits))).indices.tolist()])
    print(peak_rss_mb())


if __name__ == "__main__":
    main(*sys.argv[1:4])
