"""A model file opened and run once on a blank image, in a process of its own (``Format.probe``).

    python -m flower_edge.export.probe pte-int8 model.int8.pte      # exit 0: the runtime can run it

ExecuTorch aborts the process (SIGABRT) on some malformed files, where Python cannot catch it: the
parent runs this first and reads a crash as "the file is broken", not as its own death.
"""

import sys

import numpy as np


def main(key: str, path: str) -> None:
    from flower_edge.export.formats import FORMATS

    fmt = FORMATS[key]
    card = fmt.read_card(path)
    c, h, w = card.input_size
    blank = np.zeros((1, h, w, c), np.uint8) if fmt.takes_pixels else np.zeros((1, c, h, w), np.float32)
    out = fmt.open(path, threads=1)(blank)
    if out.shape != (1, card.num_classes):
        sys.exit(f"it gives outputs of shape {tuple(out.shape)}, not (1, {card.num_classes})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
