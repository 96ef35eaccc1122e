"""The unsupported-parameter policy in strict mode (default mode is covered in test_validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ..conftest import assert_error
from ..harness import Server, library_server


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Server]:
    toml = f'''[[models]]
id = "gemma-own-file"
file = "{models_dir / "gemma-3-270m.Q4_K_M.gguf"}"
context_length = 256
parallel = 1
supported_parameters = ["temperature", "max_tokens", "stream"]
defaults = {{ temperature = 0.0 }}
'''
    with library_server(tmp_path_factory.mktemp("strict"), models_dir, toml, {"INFERD_STRICT_PARAMS": "1"}) as srv:
        yield srv


@pytest.mark.parametrize("extra,param", [({"top_k": 5}, "top_k"), ({"reasoning_effort": "low"}, "reasoning_effort"),
                                         ({"seed": 1}, "seed"), ({"stop": "x"}, "stop"),
                                         ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                                         ({"response_format": {"type": "json_object"}}, "response_format")])
def test_strict_mode_rejects_unsupported_parameters(strict: Server, extra: dict, param: str) -> None:
    key = strict.create_key()
    response = httpx.post(strict.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "gemma-own-file", "messages": [{"role": "user", "content": "hi"}],
                                "max_tokens": 1, **extra}, timeout=60)
    error = assert_error(response, 400, "invalid_request_error", param, "unsupported_parameter")
    assert "gemma-own-file" in error["message"]
    assert strict.is_healthy()


def test_model_defaults_from_the_library_apply(strict: Server) -> None:
    """The entry's default temperature 0 makes repeated answers identical without the client asking."""
    key = strict.create_key()
    body = {"model": "gemma-own-file", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 12}
    answers = {httpx.post(strict.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json=body, timeout=60).json()["choices"][0]["message"]["content"] for _ in range(3)}
    assert len(answers) == 1


def test_without_max_tokens_generation_runs_up_to_the_context(strict: Server) -> None:
    key = strict.create_key()
    body = {"model": "gemma-own-file", "messages": [{"role": "user", "content": "Count upwards from one, forever."}]}
    reply = httpx.post(strict.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json=body, timeout=120).json()
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["total_tokens"] == 256, reply["usage"]
