"""recipe_sweep's ensemble arithmetic: mean probabilities, then top-1, with and without flips."""

import torch

from benchmarks.scripts.recipe_sweep import ensemble


def test_ensemble_averages_probabilities_before_taking_top1():
    labels = torch.tensor([0, 1, 1])
    # Model A is sure and right on photo 0, unsure and wrong on 1 and 2; B is the other way round on 2.
    a = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45]])
    b = torch.tensor([[0.4, 0.6], [0.7, 0.3], [0.1, 0.9]])
    flipped = torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    result = ensemble([(a, a), (b, b)], labels)
    # mean: [0.65, 0.35] right, [0.65, 0.35] wrong, [0.325, 0.675] right
    assert result == {"models": 2, "ensemble": round(2 / 3, 4), "ensemble_flip": round(2 / 3, 4)}
    # Flipped views that are sure of class 1 on photo 1 turn it right.
    assert ensemble([(a, flipped), (b, flipped)], labels)["ensemble_flip"] == 1.0
