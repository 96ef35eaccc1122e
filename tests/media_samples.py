"""Test media made in memory: small images and videos, and hostile ones (bombs, truncations).

Pure functions returning bytes, shared by the unit tests and the end-to-end tests. Videos are
MPEG-4 Part 2 in MP4 (FFmpeg's own encoder, present in every PyAV wheel); frame ``i`` is a
solid ``frame_color(i)`` so a test can tell which frames were sampled (``frame_index``).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from fractions import Fraction

import av
from PIL import Image

RGB = tuple[int, int, int]
_LEVELS = (20, 60, 100, 140, 180, 220)  # 40 apart: survives lossy coding and chroma subsampling


def png(width: int = 8, height: int = 8, color: RGB = (255, 0, 0)) -> bytes:
    return _save(Image.new("RGB", (width, height), color), "PNG")


def jpeg(width: int = 8, height: int = 8, color: RGB = (255, 0, 0)) -> bytes:
    return _save(Image.new("RGB", (width, height), color), "JPEG", quality=95)


def image_as(fmt: str, width: int = 8, height: int = 8, color: RGB = (0, 128, 255),
             mode: str = "RGB") -> bytes:
    """Any Pillow-writable format and mode, e.g. ``image_as("TIFF")``, ``image_as("PNG", mode="P")``."""
    return _save(Image.new("RGB", (width, height), color).convert(mode), fmt)


def jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    """A ``width`` x ``height`` JPEG whose EXIF says to rotate it (6/8 swap the sides)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.new("RGB", (width, height), (0, 0, 255))
    return _save(image, "JPEG", exif=exif.tobytes())


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` with a tiny IDAT (~100 bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 1024)  # not enough rows: never decoded if refused early
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    """The first half of a noisy 64x48 JPEG (noise so that the cut lands in scan data)."""
    noise = random.Random(0).randbytes(64 * 48 * 3)
    data = _save(Image.frombytes("RGB", (64, 48), noise), "JPEG")
    return data[: len(data) // 2]


def one_pixel_png() -> bytes:
    return png(1, 1)


def rgba_png(width: int = 4, height: int = 4, color: RGB = (255, 0, 0), alpha: int = 0) -> bytes:
    return _save(Image.new("RGBA", (width, height), (*color, alpha)), "PNG")


def frame_color(index: int) -> RGB:
    """The solid colour of frame ``index`` in ``video()`` (216 distinct colours, then repeats)."""
    return (_LEVELS[index % 6], _LEVELS[index // 6 % 6], _LEVELS[index // 36 % 6])


def frame_index(image: Image.Image) -> int:
    """Which ``frame_color`` the centre pixel of a decoded frame is closest to (mod 216)."""
    pixel = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    digits = [min(range(6), key=lambda i: abs(_LEVELS[i] - channel)) for channel in pixel]
    return digits[0] + 6 * digits[1] + 36 * digits[2]


def video(frames: int, fps: int, size: tuple[int, int] = (64, 48), *, container: str = "mp4",
          codec: str = "mpeg4", options: dict[str, str] | None = None) -> bytes:
    """A ``frames``-frame video at ``fps``; frame ``i`` is solid ``frame_color(i)``."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, options=options or {}) as output:
        stream = output.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        output.start_encoding()
        for index in range(frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, frame_color(index)))
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def video_without_duration(frames: int, fps: int) -> bytes:
    """A WebM with no duration in its header, like a browser's MediaRecorder writes."""
    return video(frames, fps, container="webm", codec="libvpx", options={"live": "1"})


def zero_frame_video() -> bytes:
    """An AVI with a declared 64x48 MPEG-4 video stream and no frames (MP4 drops such tracks)."""
    return video(0, 5, container="avi")


def corrupt_video() -> bytes:
    """Random bytes: no container can be found in them."""
    return random.Random(1).randbytes(8192)


def damaged_video() -> bytes:
    """A real MP4 whose middle (frame data) is zeroed: the container opens, decoding fails."""
    data = bytearray(video(30, 10))
    middle = len(data) // 2
    data[middle - 300 : middle + 300] = bytes(600)
    return bytes(data)


def truncated_video() -> bytes:
    """The first half of a real MP4 (its index, written last, is missing)."""
    data = video(30, 10)
    return data[: len(data) // 2]


def audio_only(container: str = "wav") -> bytes:
    """One tenth of a second of silence: ``"wav"`` (PCM) or ``"mp4"`` (AAC, a video container)."""
    codec = "pcm_s16le" if container == "wav" else "aac"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=16_000)
        sample_format = "s16" if codec == "pcm_s16le" else "fltp"
        samples = av.AudioFrame(format=sample_format, layout="mono", samples=1600)
        for plane in samples.planes:
            plane.update(bytes(plane.buffer_size))
        samples.sample_rate = 16_000
        output.mux(stream.encode(samples))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def long_declared_video(hours: float = 5.0) -> bytes:
    """Two frames, the second ``hours`` after the first: a tiny file declaring a long duration."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index, pts in enumerate((0, int(hours * 3600))):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), frame_color(index)))
            frame.pts, frame.time_base = pts, Fraction(1)
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def gray16_png(width: int = 4, height: int = 4, value: int = 0x8000) -> bytes:
    """A 16-bit greyscale PNG of one ``value`` (0..65535)."""
    pixels = value.to_bytes(2, "little") * (width * height)
    return _save(Image.frombytes("I;16", (width, height), pixels), "PNG")
