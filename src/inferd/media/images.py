"""Decoding untrusted image bytes into bounded RGB images, and encoding them for the engine.

Every failure becomes ``InvalidRequest(code="invalid_image")`` naming the request ``param``:
the header is checked (format, size, shape) before any pixel is decoded, and Pillow's own
exceptions are converted here so none escapes as a 500.
"""

from __future__ import annotations

import io
import threading
import warnings
from typing import Callable, TypeVar

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from inferd.errors import InvalidRequest

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MIN_SIDE_PX = 2
MAX_ASPECT_RATIO = 50
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)
PNG_COMPRESS_LEVEL = 1
ERROR_CODE = "invalid_image"

_HIGH_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
# warnings.catch_warnings swaps module-global state; serialise our uses of it (Python < 3.14).
_WARNINGS_LOCK = threading.Lock()

T = TypeVar("T")


class _Refused(Exception):
    """An image we decline, with the message the client will read."""


def load_image(data: bytes, *, max_pixels: int, param: str) -> Image.Image:
    """Decode ``data`` into an upright RGB image of at most ``max_pixels`` pixels."""
    try:
        return _load(data, max_pixels)
    except _Refused as exc:
        raise _invalid(str(exc), param) from None
    except _BOMB_ERRORS:  # Pillow's own ceiling (Image.MAX_IMAGE_PIXELS) is below ours
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        raise _invalid(_too_large_message(_declared_size(data), limit), param) from None
    except UnidentifiedImageError:
        raise _invalid(_unsupported_message(), param) from None
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        raise _invalid(
            "image data is corrupt or truncated and could not be decoded; "
            "re-encode it as PNG or JPEG and try again.", param,
        ) from None


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of ``image`` (fast compression: this is an in-process hand-off)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _load(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise _Refused("image is empty (0 bytes); " + _unsupported_message())
    image = _bomb_checked(lambda: Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS))
    _check_size(image.size, max_pixels)
    _bomb_checked(image.load)  # strict: Pillow's LOAD_TRUNCATED_IMAGES is left at False
    return _to_rgb(_upright(image))


def _bomb_checked(call: Callable[[], T]) -> T:
    """Run ``call`` with Pillow's DecompressionBombWarning raised as an error, locally."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return call()


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the pixels as stored."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
            return image  # exif_transpose would copy the pixels for nothing
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if min(width, height) < MIN_SIDE_PX:
        raise _Refused(
            f"image is too small ({width}x{height}); at least {MIN_SIDE_PX}x{MIN_SIDE_PX} pixels "
            "are needed."
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise _Refused(
            f"image aspect ratio is too extreme ({width}x{height}); the longer side may be at "
            f"most {MAX_ASPECT_RATIO} times the shorter one. Crop or pad it and try again."
        )
    if width * height > max_pixels:
        raise _Refused(_too_large_message(size, max_pixels))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_MODES:  # 16-bit grey: scale, don't clip to white
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (*BACKGROUND_RGB, 255))
        background.alpha_composite(image.convert("RGBA"))
        return background.convert("RGB")
    return image.convert("RGB")


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The size a header declares, read with Pillow's plugins but without its bomb check."""
    Image.init()
    prefix = data[:16]
    for name in ALLOWED_FORMATS:
        factory, accept = Image.OPEN.get(name, (None, None))
        try:
            if factory is not None and (accept is None or accept(prefix) is True):
                return factory(io.BytesIO(data), "").size
        except Exception:
            continue
    return None


def _too_large_message(size: tuple[int, int] | None, max_pixels: int) -> str:
    declared = f"{size[0]}x{size[1]} ({size[0] * size[1]:,} pixels)" if size else "too large"
    return (
        f"image is {declared}; the limit is {max_pixels:,} pixels. "
        "Downscale it and try again."
    )


def _unsupported_message() -> str:
    return "not a supported image (PNG, JPEG, WebP, GIF, BMP); convert it and try again."


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=ERROR_CODE)
