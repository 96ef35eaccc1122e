"""Sampling frames from untrusted video bytes, within bounds of size, time and work.

``sample_frames`` is synchronous and CPU-bound: callers run it in a worker thread. It decodes
sequentially and keeps only the frames it returns. Every failure becomes
``InvalidRequest(code="invalid_video")`` naming the request ``param``.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

import av
from PIL import Image

from inferd.errors import InvalidRequest

# Demuxers only (FFmpeg names); playlist formats such as HLS or concat could open other URLs.
ALLOWED_CONTAINERS = "mov,matroska,avi,mpegts,mpeg"
ALLOWED_CODECS = frozenset({
    "h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg1video", "mpeg2video", "mjpeg", "h263",
    "prores",
})
MAX_DURATION_S = 4 * 3600.0
MAX_DECODED_FRAMES = 100_000
DECODE_THREADS = 2  # per request; many requests may decode at once
TIME_EPSILON_S = 1e-6
ERROR_CODE = "invalid_video"
_TOO_SLOW = "video took too long to decode; send a shorter or smaller video and try again."
_UNREADABLE = (
    "video data is corrupt, truncated or not in a supported format (MP4, MOV, WebM, MKV, AVI, "
    "MPEG); re-encode it (e.g. H.264 in MP4) and try again."
)

T = TypeVar("T")


@dataclass(frozen=True)
class Frame:
    image: Image.Image
    timestamp: float  # seconds from the first frame


class _Refused(Exception):
    """A video we decline, with the message the client will read."""


def sample_frames(data: bytes, *, fps: float, max_frames: int, max_pixels: int,
                  time_limit: float, param: str) -> list[Frame]:
    """Up to ``max_frames`` RGB frames, ``fps`` per second of video or spread over all of it."""
    deadline = time.monotonic() + time_limit
    try:
        with _open(data, time_limit) as container:
            return _sample(container, fps, max_frames, max_pixels, deadline)
    except _Refused as exc:
        raise InvalidRequest(str(exc), param=param, code=ERROR_CODE) from None
    except Exception:  # av.FFmpegError and friends, from open, demux or decode
        message = _TOO_SLOW if time.monotonic() > deadline else _UNREADABLE
        raise InvalidRequest(message, param=param, code=ERROR_CODE) from None


def frame_count_for(duration: float, fps: float, max_frames: int) -> int:
    """How many frames to sample from ``duration`` seconds: ``fps`` per second, capped."""
    if duration <= 0:
        return 1
    return max(1, min(max_frames, math.ceil(duration * fps - TIME_EPSILON_S)))


def target_times(duration: float, fps: float, max_frames: int) -> list[float]:
    """Timestamps to sample: every ``1/fps`` s, or the centres of ``max_frames`` equal segments."""
    count = frame_count_for(duration, fps, max_frames)
    if duration * fps <= max_frames + TIME_EPSILON_S:
        return [index / fps for index in range(count)]
    segment = duration / count
    return [(index + 0.5) * segment for index in range(count)]


def pick_at_targets(frames: Iterable[tuple[float, T]], targets: list[float]) -> list[tuple[float, T]]:
    """For each target, the first frame at or after it (the last frame for targets past the end)."""
    picked: list[tuple[float, T]] = []
    last: tuple[float, T] | None = None
    index = 0
    for item in frames:
        last = item
        if item[0] + TIME_EPSILON_S < targets[index]:
            continue
        picked.append(item)
        while index < len(targets) and targets[index] <= item[0] + TIME_EPSILON_S:
            index += 1
        if index == len(targets):
            return picked
    if last is not None and (not picked or picked[-1] is not last):
        picked.append(last)
    return picked


def pick_without_duration(frames: Iterable[tuple[float, T]], fps: float,
                          max_frames: int) -> list[tuple[float, T]]:
    """Like ``pick_at_targets`` every ``1/fps`` s; the step doubles whenever too many are kept."""
    step = 1 / fps
    kept: list[tuple[int, int, tuple[float, T]]] = []  # (first, last) target index covered
    next_target = 0
    for item in frames:
        if item[0] + TIME_EPSILON_S < next_target * step:
            continue
        covered = math.floor((item[0] + TIME_EPSILON_S) / step)
        kept.append((next_target, covered, item))
        next_target = covered + 1
        while len(kept) > max_frames:
            step *= 2
            kept = [(math.ceil(a / 2), b // 2, it) for a, b, it in kept if math.ceil(a / 2) <= b // 2]
            next_target = math.ceil(next_target / 2)
    return [item for _, _, item in kept]


def _open(data: bytes, time_limit: float) -> av.container.InputContainer:
    options = {"format_whitelist": ALLOWED_CONTAINERS}
    try:
        return av.open(io.BytesIO(data), "r", options=options, timeout=time_limit)
    except av.ArgumentError:  # what FFmpeg answers for a demuxer outside the allow-list
        raise _Refused(
            "not a supported video container (MP4, MOV, WebM, MKV, AVI, MPEG); re-encode it "
            "(e.g. H.264 in MP4) and try again."
        ) from None


def _sample(container: av.container.InputContainer, fps: float, max_frames: int,
            max_pixels: int, deadline: float) -> list[Frame]:
    stream = _video_stream(container, max_pixels)
    duration = _declared_duration(container, stream)
    frames = _decoded(container, stream, max_pixels, deadline)
    if duration is None:
        picked = pick_without_duration(frames, fps, max_frames)
    else:
        picked = pick_at_targets(frames, target_times(duration, fps, max_frames))
    if not picked:
        raise _Refused("video has no frames; send a video with at least one frame.")
    return [Frame(_to_image(frame), timestamp) for timestamp, frame in picked]


def _video_stream(container: av.container.InputContainer, max_pixels: int) -> av.VideoStream:
    if not container.streams.video:
        raise _Refused("file has no video stream (audio only?); send a video with a picture.")
    stream = container.streams.video[0]
    codec = stream.codec_context.codec.canonical_name
    if codec not in ALLOWED_CODECS:
        raise _Refused(
            f"video codec {codec!r} is not supported; re-encode it (e.g. H.264, VP9, AV1) and "
            "try again."
        )
    _check_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels)
    stream.thread_type = "AUTO"
    stream.thread_count = DECODE_THREADS
    return stream


def _declared_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        return None
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise _Refused(
            f"video is too long ({seconds / 3600:.1f} hours); the limit is "
            f"{MAX_DURATION_S / 3600:g} hours. Trim it and try again."
        )
    return max(seconds, 0.0)


def _decoded(container: av.container.InputContainer, stream: av.VideoStream, max_pixels: int,
             deadline: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decoded frames with their time from the first one; enforces the clock and the caps."""
    origin: float | None = None
    count = 0
    for packet in container.demux(stream):
        _check_clock(deadline)
        for frame in packet.decode():
            _check_clock(deadline)
            count += 1
            if count > MAX_DECODED_FRAMES:
                raise _Refused(
                    f"video has more than {MAX_DECODED_FRAMES:,} frames; shorten it or lower "
                    "its frame rate and try again."
                )
            _check_pixels(frame.width, frame.height, max_pixels)
            seconds = _frame_seconds(frame, count, stream)
            origin = seconds if origin is None else origin
            yield seconds - origin, frame


def _frame_seconds(frame: av.VideoFrame, count: int, stream: av.VideoStream) -> float:
    if frame.time is not None:
        return float(frame.time)
    rate = stream.average_rate or stream.guessed_rate or 1  # no timestamps: assume even spacing
    return (count - 1) / float(rate)


def _check_clock(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise _Refused(_TOO_SLOW)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise _Refused(
            f"video frames are {width}x{height} ({width * height:,} pixels); the limit is "
            f"{max_pixels:,} pixels. Downscale it and try again."
        )


def _to_image(frame: av.VideoFrame) -> Image.Image:
    image = frame.to_image()  # RGB
    return image if image.mode == "RGB" else image.convert("RGB")
