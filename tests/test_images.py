"""Decoding: every mode to correct RGB, EXIF orientation, reduced decoding, hostile input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from clipsearch import images
from tests import imagegen


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def rgb(decoded: images.Decoded) -> np.ndarray:
    assert decoded.image.mode == "RGB"
    return np.asarray(decoded.image, dtype="int16")


def test_exif_orientation_is_applied_to_pixels_and_size() -> None:
    base = imagegen.photo(3, (64, 32))
    stored = images.decode(imagegen.with_orientation(base, 1)).image  # the pixels as the JPEG holds them
    T = Image.Transpose
    for orientation, op in [(2, T.FLIP_LEFT_RIGHT), (3, T.ROTATE_180), (4, T.FLIP_TOP_BOTTOM), (5, T.TRANSPOSE),
                            (6, T.ROTATE_270), (7, T.TRANSVERSE), (8, T.ROTATE_90)]:
        data = imagegen.with_orientation(base, orientation)
        decoded = images.decode(data)
        expect = stored.transpose(op)
        assert (decoded.width, decoded.height) == expect.size == images.probe(data)
        assert np.array_equal(rgb(decoded), np.asarray(expect, dtype="int16")), orientation


def test_cmyk_becomes_the_right_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan ink
    out = rgb(images.decode(encode(cmyk, "TIFF")))
    assert out[8, 8].tolist() == [0, 255, 255]


def test_alpha_is_composited_over_white_not_black() -> None:
    im = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    im.putpixel((0, 0), (0, 0, 255, 255))
    out = rgb(images.decode(encode(im, "PNG")))
    assert out[4, 4].tolist() == [255, 255, 255]
    assert out[0, 0].tolist() == [0, 0, 255]
    la = Image.new("LA", (4, 4), (0, 128))  # half-transparent black
    assert abs(rgb(images.decode(encode(la, "PNG")))[1, 1] - 127).max() <= 1


def test_palette_with_transparency() -> None:
    im = Image.new("P", (4, 4), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    out = rgb(images.decode(encode(im, "PNG", transparency=1)))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert rgb(images.decode(encode(im, "GIF")))[0, 0].tolist() == [0, 255, 0]


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    arr = np.full((4, 4), 32768, dtype="uint16")
    out = rgb(images.decode(encode(Image.fromarray(arr), "PNG")))
    assert abs(int(out[0, 0, 0]) - 128) <= 1


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert rgb(images.decode(data))[0, 0].tolist() == [255, 0, 0]


def test_embedded_colour_profile_goes_through_the_transform() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = imagegen.photo(4, (32, 32))
    plain = rgb(images.decode(encode(im, "PNG")))
    tagged = rgb(images.decode(encode(im, "PNG", icc_profile=srgb)))
    assert np.abs(plain - tagged).max() <= 2  # sRGB -> sRGB is (nearly) the identity
    broken = rgb(images.decode(encode(im, "PNG", icc_profile=b"not a profile")))
    assert np.array_equal(plain, broken)  # an unreadable profile is ignored, not fatal


def test_reduced_decode_covers_the_model_input() -> None:
    big = imagegen.photo(5, (2000, 1500))
    for data in (imagegen.jpeg_bytes(big), encode(big, "PNG")):
        decoded = images.decode(data, min_side=224)
        assert min(decoded.image.size) >= 224
        assert min(decoded.image.size) < 1500 // 2 + 1  # it was reduced
        assert (decoded.width, decoded.height) == (2000, 1500)


@pytest.mark.parametrize("data,message", [
    (b"", "not a recognised image format"),
    (b"GIF89a" + b"\x00" * 10, "no pixels|not a recognised|truncated|cannot"),
    (imagegen.png_bomb(), "decompression bomb"),
    (imagegen.jpeg_bytes(imagegen.photo(1, (400, 300)))[:3000], "truncated"),
])
def test_hostile_input_raises_image_error(data: bytes, message: str) -> None:
    with pytest.raises(images.ImageError, match=message):
        images.decode(data, min_side=64)


def test_pixel_cap_is_configurable() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(images.ImageError, match="over the limit"):
        images.decode(data, max_pixels=9999)
    assert images.decode(data, max_pixels=10000).image.size == (100, 100)
