"""Many training recipes in one process: valid top-1 per recipe, and of seed ensembles.

    python benchmarks/scripts/recipe_sweep.py benchmarks/scripts/recipes/gpu_sweep.json ../shared/data/flowers5 \
        --out runs/sweep --budget 450

The JSON file maps a recipe's name to TrainConfig fields (``{"finetune_blocks": 0, "epochs": 20}``);
``"seeds": N`` trains it N times and also reports the ensemble of the N models (mean of their
probabilities) with and without a horizontal-flip test-time view. Each recipe's line goes to
OUT/results.jsonl as it finishes; ``--budget`` seconds stops starting new runs, so a sweep fits a
time-limited GPU lease. Checkpoints are deleted once measured. This is how the GPU figures in
benchmarks/README.md were made (one H100, device auto).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flower_edge.train import TrainConfig, train
from flower_edge.train.checkpoint import load_model
from flower_edge.train.data import open_data
from flower_edge.train.loaders import ImageDataset
from flower_edge.train.transforms import eval_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", type=Path, help="JSON: name -> TrainConfig fields (and 'seeds')")
    parser.add_argument("data", help="flower-train's DATA")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds after which no run starts")
    parser.add_argument("--only", help="comma-separated recipe names")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    recipes = json.loads(args.recipes.read_text())
    source = open_data(args.data)
    wanted = args.only.split(",") if args.only else list(recipes)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}")
    for name in wanted:
        fields = dict(recipes[name])
        seeds = fields.pop("seeds", 1)
        probs: list[tuple[torch.Tensor, torch.Tensor]] = []
        for seed in range(fields.pop("seed", 0), 10**6):
            if len(probs) == seeds or time.time() - started > args.budget:
                break
            output = args.out / f"{name}.pth"
            result = train(TrainConfig(args.data, output=str(output), seed=seed, **fields))
            probs.append(valid_probabilities(output, source))
            output.unlink(missing_ok=True)
            curve = [round(r["valid_top1"], 4) for r in result.history]
            line = {
                "recipe": name,
                **fields,
                "seed": seed,
                "best": max(curve),
                "best_epoch": result.best_epoch,
                "last": curve[-1],
                "seconds": round(result.seconds, 1),
                "curve": curve,
            }
            if len(probs) > 1:
                line.update(ensemble(probs, labels=valid_labels(source)))
            print(json.dumps(line), flush=True)
            with open(args.out / "results.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")


@torch.no_grad()
def valid_probabilities(checkpoint: Path, source) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax of the best weights on valid: plain and horizontally flipped, each (N, classes)."""
    model, card, _ = load_model(checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    dataset = ImageDataset(source.splits["valid"], eval_transform(card))
    x = torch.stack([dataset[i][0] for i in range(len(dataset))]).to(device)  # (N, 3, H, W)
    return model(x).float().softmax(1).cpu(), model(x.flip(3)).float().softmax(1).cpu()


def valid_labels(source) -> torch.Tensor:
    return torch.tensor([s.label for s in source.splits["valid"]])


def ensemble(probs: list[tuple[torch.Tensor, torch.Tensor]], labels: torch.Tensor) -> dict[str, float]:
    plain = torch.stack([p for p, _ in probs]).mean(0)
    flipped = torch.stack([f for _, f in probs]).mean(0)
    top1 = lambda p: round((p.argmax(1) == labels).float().mean().item(), 4)  # noqa: E731
    return {"models": len(probs), "ensemble": top1(plain), "ensemble_flip": top1((plain + flipped) / 2)}


if __name__ == "__main__":
    main()
