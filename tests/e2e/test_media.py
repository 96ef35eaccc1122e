"""Image and video inputs end to end: a tiny random vision model (written by tests/tiny_vlm.py)
on the real llama.cpp engine, a media server on loopback that only a test allow-list lets the
server fetch, and hostile media and URLs that must each be refused with a 400.

The server process runs with the test network guard (tests/netguard_site): any attempt of it
to connect off loopback raises, as it does in this test process."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from .. import media_samples as samples
from ..conftest import assert_error
from ..harness import Server, guarded_env, library_server
from ..media_server import MediaServer, running
from ..tiny_vlm import TOKENS_PER_IMAGE, write_tiny_vlm

VLM = "tiny-vlm"
VLM_THINKER = "tiny-vlm-thinker"  # the same model as an always-on think-tags reasoner
SERVER_MAX_FRAMES = 6
MODEL_FRAMES = 4  # the library's video_max_frames
MODEL_FPS = 2
IMAGE_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with running() as server:
        server.files.update({
            "red.png": (samples.png(32, 32, (255, 0, 0)), "image/png"),
            "bomb.png": (samples.png_bomb(), "image/png"),
            "truncated.jpg": (samples.truncated_jpeg(), "image/jpeg"),
            "one.png": (samples.one_pixel_png(), "image/png"),
            "zero.avi": (samples.zero_frame_video(), "video/x-msvideo"),
            "clip.mp4": (samples.video(20, 10), "video/mp4"),
        })
        yield server


@pytest.fixture(scope="module")
def refused_port() -> Iterator[socket.socket]:
    """A loopback port the guard must never let the server reach (nobody accepts on it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, media: MediaServer) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("vlm")
    model, mmproj = write_tiny_vlm(folder)
    toml = f'''[[models]]
id = "{VLM}"
file = "{model}"
mmproj = "{mmproj}"
context_length = 512
parallel = 2
input_modalities = ["text", "image", "video"]
defaults = {{ temperature = 0.0 }}
video_fps = {MODEL_FPS}
video_max_frames = {MODEL_FRAMES}

[[models]]
id = "{VLM_THINKER}"
file = "{model}"
mmproj = "{mmproj}"
context_length = 256
parallel = 1
input_modalities = ["text", "image"]
defaults = {{ temperature = 0.0 }}
reasoning = {{ style = "think-tags", hybrid = false, budgets = {{ minimal = 4 }} }}
'''
    env = {"INFERD_MEDIA_ALLOW_HOSTS": f"127.0.0.1:{media.port}", "INFERD_MAX_VIDEO_FRAMES": str(SERVER_MAX_FRAMES),
           "INFERD_MEDIA_IMAGE_TIMEOUT": str(IMAGE_TIMEOUT_S), "INFERD_MEDIA_MAX_BYTES": str(1024 * 1024),
           "INFERD_MAX_IMAGES": "4", **guarded_env()}
    with library_server(folder, models_dir, toml, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def key(vlm: Server) -> str:
    return vlm.create_key("media")


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


RED = data_url(samples.png(32, 32, (255, 0, 0)))
BLUE = data_url(samples.png(32, 32, (0, 0, 255)))


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def video(url: str, **options: Any) -> dict[str, Any]:
    return {"type": "video_url", "video_url": {"url": url, **options}}


def ask(srv: Server, key: str, *parts: dict[str, Any], **fields: Any) -> httpx.Response:
    content = [{"type": "text", "text": "Describe:"}, *parts]
    body = {"model": VLM, "messages": [{"role": "user", "content": content}], "max_tokens": 8, **fields}
    return httpx.post(srv.url + "/api/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"})


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def prompt_tokens(response: httpx.Response) -> int:
    return ok(response)["usage"]["prompt_tokens"]


def text_of(response: httpx.Response) -> str:
    return ok(response)["choices"][0]["message"]["content"]


def test_an_image_adds_its_tokens_to_the_prompt(vlm: Server, key: str) -> None:
    base = prompt_tokens(ask(vlm, key))
    assert prompt_tokens(ask(vlm, key, image(RED))) == base + TOKENS_PER_IMAGE
    two = ask(vlm, key, image(RED), {"type": "text", "text": "and"}, image(BLUE))
    assert prompt_tokens(two) == prompt_tokens(ask(vlm, key, {"type": "text", "text": "and"})) + 2 * TOKENS_PER_IMAGE


def test_different_images_change_the_output_and_the_same_image_does_not(vlm: Server, key: str) -> None:
    red, blue = text_of(ask(vlm, key, image(RED))), text_of(ask(vlm, key, image(BLUE)))
    assert red != blue
    assert text_of(ask(vlm, key, image(RED))) == red
    order = text_of(ask(vlm, key, image(RED), image(BLUE))), text_of(ask(vlm, key, image(BLUE), image(RED)))
    assert order[0] != order[1]


def test_images_across_messages(vlm: Server, key: str) -> None:
    messages = [{"role": "user", "content": [image(RED)]}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "and"}, image(BLUE)]}]
    response = httpx.post(vlm.url + "/api/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {key}"},
                          json={"model": VLM, "messages": messages, "max_tokens": 4})
    assert ok(response)["usage"]["prompt_tokens"] > 2 * TOKENS_PER_IMAGE


def test_an_allowed_http_image_equals_the_same_image_inline(vlm: Server, key: str, media: MediaServer) -> None:
    fetched = ask(vlm, key, image(f"http://127.0.0.1:{media.port}/files/red.png"))
    assert text_of(fetched) == text_of(ask(vlm, key, image(RED)))
    path, headers = media.requests[-1]
    assert path == "/files/red.png" and "authorization" not in headers and "cookie" not in headers


def test_other_formats_are_normalised(vlm: Server, key: str) -> None:
    jpeg = data_url(samples.jpeg(40, 30, (0, 200, 0)), "image/jpeg")
    assert prompt_tokens(ask(vlm, key, image(jpeg))) == prompt_tokens(ask(vlm, key)) + TOKENS_PER_IMAGE
    assert ok(ask(vlm, key, image(data_url(samples.rgba_png(8, 8)))))


def test_openai_client_sends_an_image(vlm: Server, key: str) -> None:
    client = openai.OpenAI(base_url=vlm.url + "/api/v1", api_key=key, max_retries=0, timeout=60)
    completion = client.chat.completions.create(model=VLM, max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": RED, "detail": "low"}}]}])
    assert completion.usage.prompt_tokens > TOKENS_PER_IMAGE


def test_a_video_yields_the_models_configured_frames(vlm: Server, key: str, media: MediaServer) -> None:
    clip = f"http://127.0.0.1:{media.port}/files/clip.mp4"  # 20 frames at 10 fps: 2 s
    base = prompt_tokens(ask(vlm, key))
    response = ask(vlm, key, video(clip))
    assert response.headers["x-inferd-video-frames"] == str(MODEL_FRAMES)  # 2 s x 2 fps = 4
    assert prompt_tokens(response) == base + MODEL_FRAMES * TOKENS_PER_IMAGE


@pytest.mark.parametrize("options,frames", [
    ({"max_frames": 2}, 2),
    ({"max_frames": 100, "fps": 10}, SERVER_MAX_FRAMES),  # 20 asked for, clamped to the server maximum
    ({"fps": 1}, 2),  # 2 s at 1 fps
    ({"fps": 10, "max_frames": 5}, 5),
])
def test_per_request_frame_overrides_are_clamped(vlm: Server, key: str, options: dict, frames: int) -> None:
    clip = data_url(samples.video(20, 10), "video/mp4")
    base = prompt_tokens(ask(vlm, key))
    response = ask(vlm, key, video(clip, **options))
    assert response.headers["x-inferd-video-frames"] == str(frames)
    assert prompt_tokens(response) == base + frames * TOKENS_PER_IMAGE


def test_a_reasoning_budget_closed_by_inferd_keeps_the_images(vlm: Server, key: str) -> None:
    """Phase 2 (after the forced close) continues with the same images in the prompt."""
    outputs = []
    for url in (RED, BLUE):
        body = ok(ask(vlm, key, image(url), model=VLM_THINKER, reasoning_effort="minimal", max_tokens=10))
        choice = body["choices"][0]
        assert choice["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 10
        assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] <= 4
        outputs.append(choice["message"]["content"])
    assert outputs[0] != outputs[1]  # the answers still see the image


def test_media_for_a_text_only_model_is_refused(http: httpx.Client) -> None:
    response = http.post("/api/v1/chat/completions", json={"model": "qwen2.5-coder-0.5b-instruct", "messages": [
        {"role": "user", "content": [image(RED)]}]})
    error = assert_error(response, 400, "invalid_request_error", "messages", "unsupported_modality")
    assert "qwen2.5-coder-0.5b-instruct" in error["message"] and "image" in error["message"]


# --- refusals: every case is a 400 within the time bound, and the server stays healthy -------

def refused(srv: Server, key: str, part: dict, param: str, code: str, bound_s: float = 15) -> dict:
    started = time.monotonic()
    error = assert_error(ask(srv, key, part), 400, "invalid_request_error", param, code)
    assert time.monotonic() - started < bound_s
    assert srv.is_healthy()
    return error


URL = "messages[0].content[1].image_url.url"


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "[::1]",
                                  "[::ffff:127.0.0.1]", "localhost", "127.0.0.2"])
def test_loopback_spellings_are_refused(vlm: Server, key: str, media: MediaServer, host: str) -> None:
    before = len(media.requests)
    error = refused(vlm, key, image(f"http://{host}:{media.port}/files/red.png"), URL, "invalid_media_url")
    assert "loopback" in error["message"] or "resolves" in error["message"]
    assert len(media.requests) == before  # refused before connecting


def test_a_redirect_to_a_refused_port_is_refused(vlm: Server, key: str, media: MediaServer,
                                                  refused_port: socket.socket) -> None:
    target = f"http://127.0.0.1:{refused_port.getsockname()[1]}/secret"
    error = refused(vlm, key, image(f"http://127.0.0.1:{media.port}/redirect-to?url={target}"), URL,
                    "invalid_media_url")
    assert "redirected" in error["message"]
    with pytest.raises(BlockingIOError):
        refused_port.accept()  # nothing ever connected to it


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1/x",
                                 "http://user:pass@127.0.0.1/x.png", "data:image/png;base64,!!!"])
def test_other_schemes_and_credentials_are_refused(vlm: Server, key: str, url: str) -> None:
    refused(vlm, key, image(url), URL, "invalid_media_url")


@pytest.mark.parametrize("route,code", [
    ("slow", "media_fetch_failed"),  # one byte a second: cut off at the image timeout
    ("endless", "media_fetch_failed"),  # no Content-Length, never ends: cut off at the size cap
    ("huge", "media_fetch_failed"),  # Content-Length: 10 GB
    ("files/bomb.png", "invalid_image"),  # declares 50,000 x 50,000
    ("files/truncated.jpg", "invalid_image"),
    ("files/one.png", "invalid_image"),  # 1x1
    ("status/404", "media_fetch_failed"),
])
def test_hostile_media_from_the_allowed_server(vlm: Server, key: str, media: MediaServer, route: str,
                                                code: str) -> None:
    refused(vlm, key, image(f"http://127.0.0.1:{media.port}/{route}"), URL, code, bound_s=IMAGE_TIMEOUT_S + 8)


@pytest.mark.parametrize("data,code", [
    (samples.zero_frame_video(), "invalid_video"),
    (samples.corrupt_video(), "invalid_video"),
    (samples.png(8, 8), "invalid_video"),
])
def test_bad_videos_are_refused(vlm: Server, key: str, data: bytes, code: str) -> None:
    refused(vlm, key, video(data_url(data, "video/mp4")), "messages[0].content[1].video_url.url", code)


def test_a_zero_frame_video_from_the_allowed_server_is_refused(vlm: Server, key: str, media: MediaServer) -> None:
    refused(vlm, key, video(f"http://127.0.0.1:{media.port}/files/zero.avi"),
            "messages[0].content[1].video_url.url", "invalid_video")


def test_too_many_images_are_refused(vlm: Server, key: str) -> None:
    assert_error(ask(vlm, key, *[image(RED)] * 5), 400, "invalid_request_error", "messages", "too_many_images")


@pytest.mark.parametrize("part,param", [
    (video(RED, fps=0), "messages[0].content[1].video_url.fps"),
    (video(RED, max_frames=0), "messages[0].content[1].video_url.max_frames"),
    (video(RED, max_frames="8"), "messages[0].content[1].video_url.max_frames"),
    ({"type": "image_url", "image_url": {"url": RED, "detail": "ultra"}}, "messages[0].content[1].image_url.detail"),
])
def test_bad_media_fields_are_refused(vlm: Server, key: str, part: dict, param: str) -> None:
    assert_error(ask(vlm, key, part), 400, "invalid_request_error", param)


def test_media_outside_user_messages_is_refused(vlm: Server, key: str) -> None:
    response = httpx.post(vlm.url + "/api/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {key}"},
                          json={"model": VLM, "max_tokens": 2, "messages": [
                              {"role": "system", "content": [image(RED)]}, {"role": "user", "content": "hi"}]})
    assert_error(response, 400, "invalid_request_error", "messages[0].content[0].type")
