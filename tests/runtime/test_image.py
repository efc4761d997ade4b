import numpy as np
import pytest
from PIL import Image

from flower_edge.runtime import ImageError, ModelCard, load_image, preprocess
from flower_edge.runtime.image import center_crop, resize_shorter


def card(size=32, resize=40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) -> ModelCard:
    return ModelCard(
        arch="x",
        labels=("a",),
        class_ids=("1",),
        input_size=(3, size, size),
        resize_size=resize,
        crop_size=size,
        interpolation="bilinear",
        mean=mean,
        std=std,
    )


def save(tmp_path, img: Image.Image, name: str, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_exif_orientation_is_applied(tmp_path):
    # A 40x20 image whose EXIF says "rotate 90": a viewer shows it 20 wide, 40 tall.
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, img, "rotated.jpg", exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, value, expected):
    suffix = "tif" if mode == "CMYK" else "png"
    path = save(tmp_path, Image.new(mode, (8, 8), value), f"img.{suffix}")
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.getpixel((3, 3)) == expected


def test_palette_and_transparency_are_shown_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 255, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    img = load_image(save(tmp_path, rgba, "alpha.png"))
    assert img.getpixel((5, 5)) == (255, 255, 255)
    assert img.getpixel((0, 0)) == (0, 0, 255)
    pal = Image.new("P", (8, 8), 3)
    pal.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    assert load_image(save(tmp_path, pal, "pal.png")).getpixel((1, 1)) == (10, 200, 30)


def test_broken_files_give_image_errors(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    good = save(tmp_path, Image.new("RGB", (64, 64), (1, 2, 3)), "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    for path, reason in [
        (empty, "empty file"),
        (text, "not an image"),
        (truncated, "cannot decode"),
        (tmp_path / "missing.jpg", "no such file"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(ImageError, match=reason):
            load_image(path)


def test_pixel_cap_refuses_before_decoding(tmp_path):
    path = save(tmp_path, Image.new("L", (300, 300)), "big.png")
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path, max_pixels=300 * 299)
    assert load_image(path, max_pixels=300 * 300).size == (300, 300)


def test_preprocess_shape_and_normalization():
    img = Image.new("RGB", (80, 50), (255, 128, 0))
    x = preprocess(img, card())
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 10, 10], [(1 - 0.5) / 0.25, (128 / 255 - 0.5) / 0.25, -2.0], atol=1e-6)


def test_resize_keeps_aspect_and_crop_centres():
    img = Image.new("RGB", (100, 50))
    assert resize_shorter(img, 40, "bilinear").size == (80, 40)
    assert resize_shorter(Image.new("RGB", (50, 100)), 40, "bicubic").size == (40, 80)
    marked = Image.new("L", (10, 10), 0)
    marked.putpixel((3, 3), 255)
    assert center_crop(marked, 4).getpixel((0, 0)) == 255
