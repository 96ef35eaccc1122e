"""Each flavour writes the OpenAI extras the way its server takes them (bodies only: no server here)."""

from __future__ import annotations

import math

import pytest

from inferd.engines.base import Constraint, GenerationRequest, Sampling
from inferd.engines.flavours import FLAVOURS
from inferd.engines.http import deltas
from inferd.library import EXTRA_PARAMETERS

TOOLS = ({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},)
SAMPLING = Sampling(0.7, 1.0, 0, 0.0, 1.0, 16, seed=7, presence_penalty=0.5, frequency_penalty=-0.25,
                    logit_bias=((11, -100.0), (42, 5.0)), ignore_eos=True)
REQUEST = GenerationRequest(messages=[{"role": "user", "content": "hi"}], sampling=SAMPLING, stop=("END", "\n\n"),
                            logprobs=3, constraint=Constraint(grammar='root ::= "x"', json_schema={"const": "x"}),
                            template_tools=TOOLS, chat_template_kwargs={"enable_thinking": False})


def body(flavour: str, request: GenerationRequest = REQUEST) -> dict:
    return FLAVOURS[flavour]().body(request, None if flavour == "llamacpp" else "m", 4096)


def test_llamacpp_takes_its_own_names() -> None:
    b = body("llamacpp")
    assert b["stop"] == ["END", "\n\n"] and b["seed"] == 7 and b["ignore_eos"] is True
    assert b["presence_penalty"] == 0.5 and b["frequency_penalty"] == -0.25
    assert b["repeat_last_n"] == 4096  # the penalties need their window even at repeat_penalty 1
    assert b["logit_bias"] == [[11, False], [42, 5.0]]  # -100 bans outright
    assert b["n_probs"] == 3 and b["post_sampling_probs"] is True and "logprobs" not in b
    assert b["grammar"] == 'root ::= "x"' and "tools" not in b and "response_format" not in b
    assert b["chat_template_kwargs"] == {"enable_thinking": False, "tools": list(TOOLS)}  # rendered, not parsed
    assert "cache_prompt" not in b


def test_llamacpp_asks_for_one_alternative_when_top_logprobs_is_zero() -> None:
    from dataclasses import replace
    assert body("llamacpp", replace(REQUEST, logprobs=0))["n_probs"] == 1


def test_vllm_and_sglang() -> None:
    vllm, sglang = body("vllm"), body("sglang")
    for b in (vllm, sglang):
        assert b["stop"] == ["END", "\n\n"] and b["seed"] == 7 and b["ignore_eos"] is True
        assert b["logprobs"] is True and b["top_logprobs"] == 3
        assert b["logit_bias"] == {"11": -100.0, "42": 5.0}
        assert b["chat_template_kwargs"]["tools"] == list(TOOLS) and "tools" not in b
    assert vllm["structured_outputs"] == {"grammar": 'root ::= "x"'}
    assert sglang["ebnf"] == 'root ::= "x"' and "structured_outputs" not in sglang


@pytest.mark.parametrize("flavour", ["openai", "inferd"])
def test_native_flavours_forward_the_client_fields(flavour: str) -> None:
    from dataclasses import replace
    native = {"tools": list(TOOLS), "tool_choice": "required", "response_format": {"type": "json_object"}}
    b = body(flavour, replace(REQUEST, native=native, constraint=None, template_tools=()))
    assert b["tools"] == list(TOOLS) and b["tool_choice"] == "required" and b["response_format"] == native[
        "response_format"]
    assert b["stop"] == ["END", "\n\n"] and b["seed"] == 7 and b["logprobs"] is True and b["top_logprobs"] == 3
    assert ("ignore_eos" in b) == (flavour == "inferd")  # not an OpenAI field


def test_what_each_flavour_can_send() -> None:
    everything = set(EXTRA_PARAMETERS)
    for name in ("llamacpp", "vllm", "sglang", "inferd"):
        assert everything <= set(FLAVOURS[name].sends), name
    assert everything - set(FLAVOURS["openai"].sends) == {"ignore_eos"}
    assert FLAVOURS["openai"].native and FLAVOURS["inferd"].native and not FLAVOURS["llamacpp"].native


async def _chunks(items):
    for item in items:
        yield item


@pytest.mark.anyio
async def test_llamacpp_probabilities_become_logprobs() -> None:
    chunk = {"choices": [{"delta": {"content": "Hi"}, "logprobs": {"content": [
        {"id": 1, "token": "Hi", "bytes": [72, 105], "prob": 0.5,
         "top_probs": [{"id": 1, "token": "Hi", "bytes": [72, 105], "prob": 0.5},
                       {"id": 2, "token": "Yo", "bytes": [89, 111], "prob": 0.25}]}]}}]}
    end = {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    got = [d async for d in deltas(_chunks([chunk, end]), FLAVOURS["llamacpp"](), 1)]
    token = got[0].logprobs[0]
    assert token.token == "Hi" and math.isclose(token.logprob, math.log(0.5))
    assert token.top == (("Hi", math.log(0.5), (72, 105)),)  # trimmed to top_logprobs
    assert got[-1].finish_reason == "stop" and got[-1].usage.completion_tokens == 1


@pytest.mark.anyio
async def test_native_tool_call_deltas_pass_through() -> None:
    chunk = {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                    "function": {"name": "f", "arguments": "{\"a\""}}]}}]}
    end = {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}
    got = [d async for d in deltas(_chunks([chunk, end]), FLAVOURS["openai"]())]
    assert got[0].tool_calls[0].name == "f" and got[0].tool_calls[0].arguments == '{"a"'
    assert got[-1].finish_reason == "tool_calls"


def test_an_extra_the_model_does_not_list_is_ignored_and_named(tmp_path) -> None:
    from inferd.chat.params import honoured_parameters, ignored_parameters
    from inferd.library import load_library
    path = tmp_path / "lib.toml"
    path.write_text('[[models]]\nid = "m"\nfile = "m.gguf"\ncontext_length = 256\n'
                    'supported_parameters = ["temperature", "max_tokens", "stream", "stop"]\n')
    spec = load_library(path).get("m")
    given = {"stop": ("x",), "seed": 3, "tools": [], "n": 2}
    assert ignored_parameters(spec, given, ()) == ["seed", "tools", "n"]
    assert honoured_parameters(spec, given) == {"stop": ("x",)}


def test_the_library_refuses_to_list_what_a_flavour_cannot_send(tmp_path) -> None:
    from inferd.library import load_library
    path = tmp_path / "lib.toml"
    path.write_text('[[models]]\nid = "m"\ncontext_length = 256\nengine = "openai"\n'
                    'supported_parameters = ["temperature", "ignore_eos"]\n[models.upstream]\nurl = "http://127.0.0.1:9/v1"\n')
    with pytest.raises(ValueError, match="cannot send \\['ignore_eos'\\]"):
        load_library(path)
