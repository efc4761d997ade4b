"""Which formats an export writes: --format's keys, "all", --quantize, --ort and --embed-preprocessing,
read against the format table (export/formats.py) and what this machine has installed.

    formats, notes = select("all", quantize=True)      # the rows, sources first; a note per skipped one
"""

from __future__ import annotations

import importlib.util

from flower_edge.common.errors import ConfigError

from .formats import FORMATS, Format


def parse_keys(text: str) -> tuple[str, ...]:
    """'onnx, tflite' -> ('onnx', 'tflite'); unknown names fail with the list of known ones."""
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k != "all" and k not in FORMATS]
    if unknown or not keys:
        raise ConfigError(f"--format takes a comma-separated list of {', '.join(FORMATS)} or all, found {text!r}")
    return keys


def select(
    text: str, *, quantize: bool = False, ort: bool = True, preprocessing: bool = False
) -> tuple[list[Format], list[str]]:
    """The formats to write, in the table's order (sources first), and one note per format that
    ``all`` left out because its extra is missing. A format named on its own whose extra is missing
    fails with the line that names the extra."""
    keys = parse_keys(text)
    named = {k for k in keys if k != "all"}
    chosen = set(named)
    notes = []
    if "all" in keys:
        for f in FORMATS.values():
            if f.in_all and f.key not in named:
                if f.missing() is None:
                    chosen.add(f.key)
                else:
                    notes.append(f"skipped {f.key}: {f.missing()}")
    if quantize:
        chosen |= {f.key for f in FORMATS.values() if f.int8_of in chosen}
    if preprocessing:
        chosen.add("onnx-preproc")
    copies = {f.ort_copy for f in FORMATS.values() if f.ort_copy}
    if ort:
        chosen |= {FORMATS[k].ort_copy for k in list(chosen) if FORMATS[k].ort_copy}
    else:
        chosen -= copies - named
    while True:  # a format's source is written first
        sources = {FORMATS[k].source for k in chosen if FORMATS[k].source} - chosen
        if not sources:
            break
        chosen |= sources
    for key in sorted(chosen, key=list(FORMATS).index):
        problem = FORMATS[key].missing()
        if problem:
            raise ConfigError(problem)
    without = [
        k
        for k in sorted(chosen, key=list(FORMATS).index)
        if FORMATS[k].client and importlib.util.find_spec(FORMATS[k].client) is None
    ]
    if without:
        client = FORMATS[without[0]].client
        notes.append(
            f"{', '.join(without)}: no TFLite metadata and no {client} check, so MediaPipe's ImageClassifier "
            f"will not load the files; they need {client}, from the [{client}] extra: "
            f"pip install 'flower-edge[{client}]'"
        )
    return [f for f in FORMATS.values() if f.key in chosen], notes
