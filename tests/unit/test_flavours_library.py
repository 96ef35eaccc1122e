"""Flavours write each server's body; the library checks engine kinds and what a flavour can send."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.engines.base import GenerationRequest, Sampling
from inferd.engines.flavours import FLAVOURS
from inferd.engines.upstream import standard_refusal
from inferd.errors import EngineFailure, InvalidRequest, Unavailable
from inferd.library import load_library

REQUEST = GenerationRequest(messages=[{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                   {"type": "text", "text": "b"}]}],
                            sampling=Sampling(0.5, 0.9, 0, 0.05, 1.2, 32), chat_template_kwargs={"enable_thinking": True})


def test_llamacpp_body_uses_its_own_names_and_the_whole_context_as_penalty_window() -> None:
    body = FLAVOURS["llamacpp"]().body(REQUEST, None, 4096)
    assert body["messages"] == [{"role": "user", "content": "ab"}]  # text parts joined for every template
    assert body["repeat_penalty"] == 1.2 and body["repeat_last_n"] == 4096 and body["n_predict"] == 32
    assert body["samplers"] == ["penalties", "temperature", "top_k", "top_p", "min_p"]
    assert body["reasoning_format"] == "none" and "model" not in body and "repetition_penalty" not in body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_vllm_and_sglang_turn_top_k_off_with_minus_one() -> None:
    for name in ("vllm", "sglang"):
        body = FLAVOURS[name]().body(REQUEST, "served-name", 4096)
        assert body["top_k"] == -1 and body["repetition_penalty"] == 1.2 and body["max_tokens"] == 32
        assert body["model"] == "served-name" and body["chat_template_kwargs"] == {"enable_thinking": True}


def test_openai_flavour_sends_only_the_core() -> None:
    body = FLAVOURS["openai"]().body(REQUEST, "gpt", 4096)
    assert {"top_k", "min_p", "repetition_penalty", "repeat_penalty"}.isdisjoint(body)
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9 and body["max_tokens"] == 32


def test_a_continuation_appends_the_unfinished_turn() -> None:
    turn = {"role": "assistant", "content": "<think>\nhm\n</think>\n\n"}
    request = GenerationRequest(messages=[{"role": "user", "content": "q"}], sampling=REQUEST.sampling,
                                continue_message=turn)
    vllm = FLAVOURS["vllm"]().body(request, "m", 4096)
    assert vllm["messages"][-1] == turn and vllm["continue_final_message"] is True
    assert vllm["add_generation_prompt"] is False
    assert FLAVOURS["llamacpp"]().body(request, None, 4096)["continue_final_message"] == "content"


def test_standard_refusals() -> None:
    refuse = standard_refusal("upstream X")
    bad = refuse(400, {"message": "too long", "code": "context_length_exceeded", "param": "messages"})
    assert isinstance(bad, InvalidRequest) and bad.code == "context_length_exceeded" and bad.param == "messages"
    assert refuse(422, {"message": "nope"}).code == "upstream_refused"
    assert isinstance(refuse(401, {"message": "key"}), EngineFailure)
    assert isinstance(refuse(500, {"message": "boom"}), EngineFailure)
    assert isinstance(refuse(503, {"message": "busy"}), Unavailable)


def _lib(tmp_path: Path, entry: str):
    path = tmp_path / "lib.toml"
    path.write_text("[[models]]\nid = \"m\"\ncontext_length = 1024\n" + entry)
    return load_library(path)


def test_an_openai_entry_defaults_to_what_its_flavour_sends(tmp_path: Path) -> None:
    spec = _lib(tmp_path, 'engine = "openai"\n[models.upstream]\nurl = "http://127.0.0.1:9/v1"\n').get("m")
    assert spec.supported_parameters == (
        "temperature", "max_tokens", "top_p", "stream", "stop", "seed", "n", "logprobs", "top_logprobs",
        "presence_penalty", "frequency_penalty", "logit_bias", "response_format", "tools", "tool_choice",
        "parallel_tool_calls", "user")  # OpenAI's own fields: no ignore_eos, top_k, ...
    assert spec.upstream is not None and spec.upstream.flavour == "openai" and spec.upstream.api_key_env is None
    vllm = _lib(tmp_path, 'engine = "openai"\n[models.upstream]\nurl = "http://x/v1"\nflavour = "vllm"\n').get("m")
    assert "top_k" in vllm.supported_parameters and "repetition_penalty" in vllm.supported_parameters


@pytest.mark.parametrize("entry,said", [
    ('engine = "tgi"\nfile = "m.gguf"\n', "unknown engine 'tgi'"),
    ('engine = "openai"\n', "needs [models.upstream] with a 'url'"),
    ('engine = "openai"\nfile = "m.gguf"\n[models.upstream]\nurl = "http://x/v1"\n', "serves no local file"),
    ('engine = "openai"\n[models.upstream]\nurl = "http://x/v1"\nflavour = "tgi"\n', "unknown upstream flavour"),
    ('engine = "openai"\nsupported_parameters = ["top_k"]\n[models.upstream]\nurl = "http://x/v1"\n',
     "cannot send ['top_k']"),
    ('engine = "openai"\n[models.upstream]\nurl = "http://x/v1"\nkey = "sk-in-the-file"\n', "[models.upstream] takes"),
    ('engine = "openai"\nreasoning = { style = "think-tags" }\n[models.upstream]\nurl = "http://x/v1"\n',
     "need an upstream that continues a turn"),
    ('file = "m.gguf"\n[models.upstream]\nurl = "http://x/v1"\n', "belongs to engine 'openai'"),
    ('engine = "vllm"\nfile = "m.gguf"\n[models.vllm]\nmodel = "hf-folder"\n', "not both"),
    ('engine = "vllm"\n', "exactly one of 'file' or 'source'"),
])
def test_bad_engine_entries_are_refused_with_a_reason(tmp_path: Path, entry: str, said: str) -> None:
    with pytest.raises(ValueError) as caught:
        _lib(tmp_path, entry)
    assert said in str(caught.value)


def test_a_vllm_entry_may_name_a_hugging_face_folder(tmp_path: Path) -> None:
    spec = _lib(tmp_path, 'engine = "vllm"\n[models.vllm]\nmodel = "qwen-hf"\ntensor_parallel_size = 2\n'
                          'extra_args = ["--enable-prefix-caching"]\n').get("m")
    assert spec.vllm is not None and spec.vllm.model == tmp_path / "qwen-hf"
    assert spec.vllm.tensor_parallel_size == 2 and spec.vllm.extra_args == ("--enable-prefix-caching",)
