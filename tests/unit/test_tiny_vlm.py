"""The tiny random vision-language model (tests/tiny_vlm.py) in llama.cpp, in process: images reach
the model, cost a fixed number of prompt tokens each, and change what it generates."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.tiny_vlm import TOKENS_PER_IMAGE, write_tiny_vlm

xllamacpp = pytest.importorskip("xllamacpp")
Image = pytest.importorskip("PIL.Image")

PROMPT = "Describe the picture."
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    model, mmproj = write_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.mmproj.path = str(mmproj)
    params.n_parallel = 1
    params.n_ctx = 512
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    params.ctx_shift = False
    params.ui = False
    params.api_keys = ["unused"]  # keeps llama.cpp's own loopback listener closed to others
    params.verbosity = 1
    srv = xllamacpp.Server(params)
    yield srv
    del srv


def _png(color: tuple[int, int, int]) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}


RED, BLUE = _png((255, 0, 0)), _png((0, 0, 255))


def _generate(server: Any, *images: dict[str, Any]) -> tuple[str, int]:
    """Greedy text and usage.prompt_tokens of one streamed chat completion."""
    content: Any = [{"type": "text", "text": PROMPT}, *images] if images else PROMPT
    body = {"messages": [{"role": "user", "content": content}], "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0, "max_tokens": MAX_TOKENS}
    chunks: list[dict[str, Any]] = []

    def on_chunk(chunk: dict[str, Any]) -> bool:
        chunks.append(chunk)
        return False  # never stop early

    server.handle_chat_completions(body, on_chunk)
    assert not [c for c in chunks if "error" in c], chunks
    text = "".join(choice.get("delta", {}).get("content") or ""
                   for chunk in chunks for choice in chunk.get("choices", ()))
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    assert usage["completion_tokens"] == MAX_TOKENS  # the model never picks its end token
    return text, usage["prompt_tokens"]


def test_an_image_adds_its_tokens_to_the_prompt(server: Any) -> None:
    _, without = _generate(server)
    _, with_one = _generate(server, RED)
    _, with_two = _generate(server, RED, BLUE)
    assert with_one - without == TOKENS_PER_IMAGE == 16
    assert with_two - without == 2 * TOKENS_PER_IMAGE


def test_the_output_depends_on_the_image(server: Any) -> None:
    red, _ = _generate(server, RED)
    blue, _ = _generate(server, BLUE)
    again, _ = _generate(server, RED)
    assert red != blue
    assert again == red


def test_the_output_is_printable_text(server: Any) -> None:
    text, _ = _generate(server, BLUE)
    assert text and all(c == "\n" or " " <= c <= "~" for c in text), repr(text)


def test_the_files_are_small_quick_and_deterministic(tmp_path: Path) -> None:
    start = time.perf_counter()
    first = write_tiny_vlm(tmp_path / "a", seed=7)
    assert time.perf_counter() - start < 1.0
    second = write_tiny_vlm(tmp_path / "b", seed=7)
    other = write_tiny_vlm(tmp_path / "c", seed=8)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert first[0].read_bytes() != other[0].read_bytes()
    assert all(p.stat().st_size < 1_000_000 for p in first)
