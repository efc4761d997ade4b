"""A seed-style predictor, as the classic flower projects wrote predict.py: torch and torchvision
imported, the checkpoint loaded, the image transformed by torchvision, top-k printed.

    python benchmarks/scripts/seed_predict.py runs/flower.pth rose.jpg

The reference that ``benchmarks/scripts/flower_run_vs_seed.py`` times flower-run against.
"""

import sys

import torch
from PIL import Image
from torchvision import transforms

from flower_edge.train.checkpoint import load_model

model, card, _ = load_model(sys.argv[1])
transform = transforms.Compose(
    [
        transforms.Resize(card.resize_size),
        transforms.CenterCrop(card.crop_size),
        transforms.ToTensor(),
        transforms.Normalize(card.mean, card.std),
    ]
)
with torch.no_grad():
    probs = torch.softmax(model(transform(Image.open(sys.argv[2]).convert("RGB"))[None]), dim=1)[0]
top = probs.topk(min(5, len(probs)))
for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
    print(f"{rank}. {card.labels[i]:<30} {p:7.2%}")
