"""One cold prediction, as a fresh process: what flower-bench times for each format.

    python -m flower_edge.bench.coldstart onnx-int8 model.int8.onnx rose.jpg

Imports only what the format needs (the format table's runner: onnxruntime for ONNX files, the
LiteRT interpreter for .tflite, ExecuTorch for .pte, torch for the checkpoint and TorchScript),
reads the card from the file, predicts the top-5 of one image and prints it, then its own peak
resident memory in MB (VmHWM: the parent's wait4() figure would count the memory of the process
it was forked from).
"""

import sys
from pathlib import Path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(fmt: str, path: str, image: str) -> None:
    from flower_edge.runtime.image import load_image, pixels, preprocess

    if fmt == "torch":
        import torch

        from flower_edge.train.checkpoint import load_model

        model, card, _ = load_model(path)
        with torch.no_grad():
            logits = model(torch.from_numpy(preprocess(load_image(image), card))[None]).numpy()
    else:
        from flower_edge.export.formats import FORMATS

        row = FORMATS[fmt]
        card = row.read_card(path)
        prepare = pixels if row.takes_pixels else preprocess
        logits = row.open(path, threads=2)(prepare(load_image(image), card)[None])
    print([card.labels[i] for i in (-logits[0]).argsort()[:5]])
    print(peak_rss_mb())


if __name__ == "__main__":
    main(*sys.argv[1:4])
