"""Media inputs of a chat: fetch, decode and normalise image_url / video_url parts.

Every image becomes an RGB PNG ``data:`` URL; a video becomes its sampled frames, in order,
as image parts (optionally each preceded by its timestamp as text). The engine only ever
sees images it can decode. All limits come from ``Settings``; every failure is a 400.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..errors import InvalidRequest
from ..library import ModelSpec
from ..media.fetch import MediaFetcher
from ..media.images import encode_png, load_image
from ..media.video import sample_frames
from ..settings import Settings

MAX_VIDEOS = 4  # video parts per request


@dataclass
class PreparedMedia:
    messages: list[dict[str, Any]]
    frames_per_video: list[int] = field(default_factory=list)


class MediaPreparer:
    def __init__(self, settings: Settings, fetcher: MediaFetcher | None = None) -> None:
        self._settings = settings
        self._fetcher = fetcher or MediaFetcher(settings)

    async def prepare(self, spec: ModelSpec, messages: list[dict[str, Any]]) -> PreparedMedia:
        """Messages with every media part replaced by engine-ready image parts."""
        self._check_counts(messages)
        prepared = PreparedMedia(messages=[])
        for i, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, list) or all(p["type"] == "text" for p in content):
                prepared.messages.append(message)
                continue
            parts: list[dict[str, Any]] = []
            for j, part in enumerate(content):
                parts += await self._part(spec, part, f"messages[{i}].content[{j}]", prepared)
            prepared.messages.append({**message, "content": parts})
        return prepared

    def _check_counts(self, messages: list[dict[str, Any]]) -> None:
        parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]]
        images = sum(p["type"] == "image_url" for p in parts)
        videos = sum(p["type"] == "video_url" for p in parts)
        if images > self._settings.max_images:
            raise InvalidRequest(f"This request has {images} images; this server accepts at most "
                                 f"{self._settings.max_images} per request (INFERD_MAX_IMAGES).",
                                 param="messages", code="too_many_images")
        if videos > MAX_VIDEOS:
            raise InvalidRequest(f"This request has {videos} videos; at most {MAX_VIDEOS} per request.",
                                 param="messages", code="too_many_videos")

    async def _part(self, spec: ModelSpec, part: dict[str, Any], path: str,
                    prepared: PreparedMedia) -> list[dict[str, Any]]:
        if part["type"] == "text":
            return [part]
        if part["type"] == "image_url":
            return [await self._image(part["image_url"], f"{path}.image_url.url")]
        frames = await self._video(spec, part["video_url"], f"{path}.video_url.url")
        prepared.frames_per_video.append(len(frames))
        return frames

    async def _image(self, source: dict[str, Any], param: str) -> dict[str, Any]:
        data = await self._fetcher.fetch(source["url"], kind="image", param=param)
        image = await asyncio.to_thread(load_image, data, max_pixels=self._settings.max_image_pixels, param=param)
        return await _image_part(image)

    async def _video(self, spec: ModelSpec, source: dict[str, Any], param: str) -> list[dict[str, Any]]:
        data = await self._fetcher.fetch(source["url"], kind="video", param=param)
        fps, max_frames = self.frame_plan(spec, source)
        frames = await asyncio.to_thread(
            sample_frames, data, fps=fps, max_frames=max_frames, max_pixels=self._settings.max_image_pixels,
            time_limit=self._settings.media_decode_timeout, param=param)
        parts: list[dict[str, Any]] = []
        for frame in frames:
            if spec.video_timestamps:
                parts.append({"type": "text", "text": f"[{frame.timestamp:.1f}s]"})
            parts.append(await _image_part(frame.image))
        return parts

    def frame_plan(self, spec: ModelSpec, source: dict[str, Any]) -> tuple[float, int]:
        """Frames per second and the frame cap: the request's, else the model's, within the server's maximum."""
        fps = float(source.get("fps") or spec.video_fps)
        max_frames = int(source.get("max_frames") or spec.video_max_frames)
        return fps, max(1, min(max_frames, self._settings.max_video_frames))


async def _image_part(image: Image.Image) -> dict[str, Any]:
    png = await asyncio.to_thread(encode_png, image)
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return {"type": "image_url", "image_url": {"url": url}}
