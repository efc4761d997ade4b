"""The classifier: a backbone's blocks, global average pooling, and a small MLP head.

    model = build_model("efficientnet_lite0", num_classes=5, hidden=(256,), dropout=0.25)

The seed projects' head is ``Linear(2208, 256) -> ReLU -> Dropout(0.25) -> Linear(256, 102)``;
``hidden=()`` gives dropout and one linear layer, the usual EfficientNet classifier.

Training may freeze a prefix of the blocks: ``model.prefix(k)`` maps images to what the trainable
rest starts from, and ``model.forward_from(x, k)`` finishes the job, so the prefix's output can be
computed once and cached across epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .backbones import get_backbone


def make_head(in_features: int, hidden: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = h
    if not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class ModelArgs:
    """What rebuilds a FlowerNet (nanoGPT's ``model_args``). A checkpoint declares it: the arch and
    classes in its card, the head's shape beside it (``head()``), so loading needs no training option."""

    arch: str
    num_classes: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def head(self) -> dict[str, Any]:
        """What the card does not say: the head's hidden layers and dropout."""
        return {"hidden": list(self.hidden), "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelArgs:
        return cls(
            str(data["arch"]),
            int(data["num_classes"]),
            tuple(int(h) for h in data.get("hidden", ())),
            float(data.get("dropout", 0.2)),
        )


class FlowerNet(nn.Module):
    def __init__(
        self,
        features: nn.Sequential,
        num_features: int,
        num_classes: int,
        hidden: Sequence[int] = (),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.args: ModelArgs | None = None
        """Set by ``build_model``: what rebuilds this model."""
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = make_head(num_features, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, classes)
        return self.head(torch.flatten(self.pool(self.features(x)), 1))

    @property
    def num_blocks(self) -> int:
        return len(self.features)

    def prefix(self, start: int) -> nn.Module:
        """Blocks [0, start): images -> (B, C, h, w), or -> pooled (B, C) when start is the end."""
        blocks = list(self.features)[:start]
        if start == self.num_blocks:
            blocks += [self.pool, nn.Flatten(1)]
        return nn.Sequential(*blocks)

    def forward_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Run blocks [start, end), pooling and the head on what ``prefix(start)`` produced."""
        if start < self.num_blocks:
            for block in list(self.features)[start:]:
                x = block(x)
            x = torch.flatten(self.pool(x), 1)
        return self.head(x)


def build_model(
    arch: str, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.2, weights: str = "none"
) -> FlowerNet:
    spec = get_backbone(arch)
    model = FlowerNet(spec.build(weights), spec.num_features, num_classes, hidden, dropout)
    model.args = ModelArgs(arch, num_classes, tuple(hidden), dropout)
    return model
