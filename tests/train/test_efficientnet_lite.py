"""Our EfficientNet-Lite0 against the package author's reference implementation and weights."""

import pytest
import torch

from flower_edge.runtime import ModelCard, load_image, preprocess
from flower_edge.train.backbones import load_lite0_reference_state
from flower_edge.train.efficientnet_lite import convert_lukemelas_state_dict
from flower_edge.train.model import build_model

pytestmark = pytest.mark.real

CARD = ModelCard(arch="efficientnet_lite0", labels=("x",), class_ids=("1",), input_size=(3, 224, 224),
                 resize_size=256, crop_size=224, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.fixture(scope="module")
def models():
    from efficientnet_lite_pytorch import EfficientNet

    state = load_lite0_reference_state()
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state)
    ours = build_model("efficientnet_lite0", 1000, hidden=(), weights="imagenet")
    ours.head[-1].load_state_dict(convert_lukemelas_state_dict(state)[1])
    return reference.eval(), ours.eval()


def skimage_photo(name):
    from PIL import Image
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


@pytest.mark.parametrize("name, imagenet_class", [("chelsea", 285), ("coffee", 967)])
def test_imagenet_top1_on_scikit_image_photos(models, name, imagenet_class):
    reference, ours = models
    x = torch.from_numpy(preprocess(skimage_photo(name), CARD))[None]
    with torch.no_grad():
        theirs, mine = reference(x), ours(x)
    assert mine.argmax().item() == imagenet_class
    assert theirs.argmax().item() == imagenet_class
    assert (mine - theirs).abs().max().item() <= 1e-4


def test_same_logits_as_reference_on_flower_photos(models, flowers5):
    reference, ours = models
    photos = sorted((flowers5 / "valid").rglob("*.jpg"))[::50][:8]
    x = torch.stack([torch.from_numpy(preprocess(load_image(p), CARD)) for p in photos])
    with torch.no_grad():
        diff = (ours(x) - reference(x)).abs().max().item()
    assert diff <= 1e-4


def test_lite0_has_the_published_size():
    model = build_model("efficientnet_lite0", 1000, hidden=())
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
