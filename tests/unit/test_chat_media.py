"""MediaPreparer: media parts become engine-ready PNG image parts (real decoding, data: URLs only)."""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from inferd.chat.media import MediaPreparer
from inferd.errors import InvalidRequest
from inferd.library import ModelSpec
from inferd.settings import Settings

from .. import media_samples as samples


def spec(**fields: object) -> ModelSpec:
    return ModelSpec(id="m", engine="llamacpp", context_length=256, parallel=1, filename="m.gguf",
                     input_modalities=("text", "image", "video"), **fields)  # type: ignore[arg-type]


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def prepare(model: ModelSpec, *parts: dict, settings: Settings | None = None):
    messages = [{"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]
    return asyncio.run(MediaPreparer(settings or Settings()).prepare(model, messages))


def decoded(part: dict) -> Image.Image:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_images_become_rgb_pngs_in_place() -> None:
    jpeg = {"type": "image_url", "image_url": {"url": data_url(samples.jpeg_with_orientation(40, 20, 6), "image/jpeg")}}
    prepared = prepare(spec(), jpeg, {"type": "text", "text": "end"})
    parts = prepared.messages[0]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text"]
    assert sum(p["type"] == "image_url" for p in parts) == 1 and not prepared.frames_per_video
    image = decoded(parts[1])
    assert image.mode == "RGB" and image.size == (20, 40)  # EXIF orientation applied


def test_video_frames_in_order_with_timestamps_when_the_family_expects_them() -> None:
    clip = {"type": "video_url", "video_url": {"url": data_url(samples.video(10, 10), "video/mp4"), "max_frames": 3}}
    parts = prepare(spec(video_timestamps=True, video_fps=10), clip).messages[0]["content"][1:]
    assert [p["type"] for p in parts] == ["text", "image_url"] * 3
    stamps = [float(p["text"].strip("[]s")) for p in parts[::2]]
    assert stamps == sorted(stamps) and stamps[-1] > 0.5  # spread across the whole second
    colours = [samples.frame_index(decoded(p).convert("RGB")) for p in parts[1::2]]
    assert colours == sorted(colours) and len(set(colours)) == 3


def test_frame_plan_request_then_model_within_the_server_maximum() -> None:
    preparer = MediaPreparer(Settings(max_video_frames=5))
    model = spec(video_fps=2.0, video_max_frames=4)
    assert preparer.frame_plan(model, {}) == (2.0, 4)
    assert preparer.frame_plan(model, {"fps": 0.5, "max_frames": 2}) == (0.5, 2)
    assert preparer.frame_plan(model, {"max_frames": 500}) == (2.0, 5)


def test_text_only_messages_pass_untouched() -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "user", "content": [{"type": "text", "text": "x"}]}]
    assert asyncio.run(MediaPreparer(Settings()).prepare(spec(), messages)).messages == messages


def test_image_count_is_capped() -> None:
    part = {"type": "image_url", "image_url": {"url": data_url(samples.png(4, 4), "image/png")}}
    with pytest.raises(InvalidRequest) as caught:
        prepare(spec(), part, part, part, settings=Settings(max_images=2))
    assert caught.value.code == "too_many_images" and caught.value.param == "messages"
