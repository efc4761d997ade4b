"""The floor flower-run is measured against: a bare 10-line onnxruntime script, no card, no CLI.

python benchmarks/scripts/bare_onnxruntime.py model.int8.onnx rose.jpg
"""

import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
img = Image.open(sys.argv[2]).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
x = ((np.asarray(img, np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
p = np.exp(logits - logits.max())
p /= p.sum()
for rank, i in enumerate(np.argsort(-p)[:5], 1):
    print(rank, i, f"{p[i]:.4f}")
