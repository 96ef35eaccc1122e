"""Decoding untrusted images: accepted formats, refusals (with param and code), RGB output."""

from __future__ import annotations

import io
import resource
import time
import warnings

import pytest
from PIL import Image, ImageFile

from inferd.errors import InvalidRequest
from inferd.media.images import MAX_ASPECT_RATIO, encode_png, load_image
from tests import media_samples as samples

PARAM = "messages[0].content[1].image_url"
LIMIT = 4_000_000


def load(data: bytes, max_pixels: int = LIMIT) -> Image.Image:
    return load_image(data, max_pixels=max_pixels, param=PARAM)


def refused(data: bytes, max_pixels: int = LIMIT) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        load(data, max_pixels)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, PARAM, "invalid_image")
    assert error.body()["error"]["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(("fmt", "mode"), [
    ("PNG", "RGB"), ("PNG", "P"), ("PNG", "L"), ("PNG", "1"), ("PNG", "LA"), ("JPEG", "RGB"),
    ("JPEG", "L"), ("JPEG", "CMYK"), ("WEBP", "RGB"), ("WEBP", "RGBA"), ("GIF", "P"),
    ("BMP", "RGB"), ("BMP", "P"),
])
def test_common_formats_and_modes_decode_to_rgb(fmt: str, mode: str) -> None:
    image = load(samples.image_as(fmt, 12, 10, color=(0, 128, 255), mode=mode))
    assert (image.mode, image.size) == ("RGB", (12, 10))


def test_colours_survive() -> None:
    assert load(samples.png(4, 4, (10, 200, 30))).getpixel((1, 1)) == (10, 200, 30)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    assert load(samples.gray16_png(value=0x8000)).getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("data", [
    b"", b"hello, world", b"%PDF-1.7\n" + bytes(64), samples.image_as("TIFF"),
    samples.image_as("PPM"), samples.corrupt_video(),
])
def test_non_images_and_other_formats_are_refused(data: bytes) -> None:
    assert "not a supported image (PNG, JPEG, WebP, GIF, BMP)" in refused(data).message


def test_bomb_is_refused_quickly_without_allocating() -> None:
    data = samples.png_bomb(50_000, 50_000)
    assert len(data) < 200
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    message = refused(data).message
    assert time.monotonic() - started < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200_000  # KiB
    assert "50000x50000" in message and "limit" in message


def test_over_max_pixels_names_dimensions_and_limit() -> None:
    message = refused(samples.png_bomb(3000, 2000), max_pixels=1_000_000).message
    assert "3000x2000" in message and "1,000,000" in message


def test_pillow_bomb_warning_range_is_refused_and_warnings_stay_global_default() -> None:
    filters_before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # even a caller that ignores warnings gets the 400
        message = refused(samples.png_bomb(10_000, 10_000), max_pixels=10**9).message
    assert "10000x10000" in message
    assert warnings.filters == filters_before


def test_truncated_jpeg_is_refused() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert "corrupt or truncated" in refused(samples.truncated_jpeg()).message


def test_corrupt_png_body_is_refused() -> None:
    data = bytearray(samples.image_as("PNG", 64, 64, mode="RGB"))
    data[40:60] = bytes(20)
    refused(bytes(data))


def test_one_pixel_is_too_small_and_two_by_two_is_fine() -> None:
    assert refused(samples.one_pixel_png()).message.startswith("image is too small (1x1)")
    assert load(samples.png(2, 2)).size == (2, 2)


def test_extreme_aspect_ratio_is_refused_either_way() -> None:
    assert load(samples.png(2 * MAX_ASPECT_RATIO, 2)).size == (100, 2)
    assert "aspect ratio" in refused(samples.png(2 * MAX_ASPECT_RATIO + 1, 2)).message
    assert "aspect ratio" in refused(samples.png(3, 3 * MAX_ASPECT_RATIO + 1)).message


@pytest.mark.parametrize(("orientation", "size"), [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)),
                                                   (8, (20, 40))])
def test_exif_orientation_is_applied(orientation: int, size: tuple[int, int]) -> None:
    assert load(samples.jpeg_with_orientation(40, 20, orientation)).size == size


def test_transparency_is_composited_over_white() -> None:
    assert load(samples.rgba_png(alpha=0)).getpixel((0, 0)) == (255, 255, 255)
    assert load(samples.rgba_png(alpha=255)).getpixel((0, 0)) == (255, 0, 0)
    red, green, blue = load(samples.rgba_png(color=(255, 0, 0), alpha=128)).getpixel((0, 0))
    assert red == 255 and 120 <= green == blue <= 135


def test_encode_png_round_trips() -> None:
    image = load(samples.jpeg(6, 4, (0, 0, 255)))
    data = encode_png(image)
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as again:
        assert (again.format, again.size, again.mode) == ("PNG", (6, 4), "RGB")
