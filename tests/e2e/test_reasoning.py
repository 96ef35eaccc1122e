"""Reasoning controls on the real engine: the packaged Qwen model configured as a think-tags
model, with a hybrid-thinking chat template written here (it opens <think> when thinking is on)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from ..conftest import assert_error
from ..harness import Server, library_server

THINKER = "qwen-thinker"
HARMONIST = "qwen-harmonist"  # the same model behind a gpt-oss (harmony) style template
BUDGETS = {"minimal": 8, "low": 16, "medium": 24, "high": 96}
MARKER_TOKENS = 3  # "</think>" is 3 tokens for Qwen2.5's tokenizer
HYBRID_TEMPLATE = (
    "{%- for m in messages -%}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{% if enable_thinking %}<think>\n{% endif %}"
    "{%- endif -%}")
HARMONY_TEMPLATE = (
    "<|start|>system<|message|>You are a helpful assistant.\n"
    "Reasoning: {{ reasoning_effort | default('medium') }}\n\n"
    "# Valid channels: analysis, commentary, final.<|end|>"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}<|start|>assistant<|channel|>final<|message|>{{ m['content'] }}<|end|>"
    "{%- else -%}<|start|>{{ m['role'] }}<|message|>{{ m['content'] }}<|end|>{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}")
QUESTION = [{"role": "user", "content": "Is 17 a prime number? Think about it carefully."}]


def qwen_entry(models_dir: Path, model_id: str, template: str, reasoning: str, parallel: int = 1) -> str:
    """A library entry: the packaged Qwen weights behind a test's chat template and reasoning style."""
    return f'''[[models]]
id = "{model_id}"
file = "{models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"}"
context_length = 1024
parallel = {parallel}
defaults = {{ temperature = 0.0 }}
chat_template = {json.dumps(template)}
reasoning = {{ {reasoning} }}
'''


def thinker_entry(models_dir: Path, model_id: str, budgets: dict[str, int], parallel: int = 1) -> str:
    """The hybrid think-tags configuration every reasoning test (and benchmarks/reasoning_gap.py) uses."""
    listed = ", ".join(f"{k} = {v}" for k, v in budgets.items())
    return qwen_entry(models_dir, model_id, HYBRID_TEMPLATE, 'style = "think-tags", opens_in_prompt = true, '
                      f'thinking_kwarg = "enable_thinking", budgets = {{ {listed} }}', parallel)


@pytest.fixture(scope="module")
def thinker(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Server]:
    toml = (thinker_entry(models_dir, THINKER, BUDGETS, parallel=2) + "\n"
            + qwen_entry(models_dir, HARMONIST, HARMONY_TEMPLATE, 'style = "harmony"'))
    with library_server(tmp_path_factory.mktemp("thinker"), models_dir, toml) as srv:
        yield srv


@pytest.fixture(scope="module")
def key(thinker: Server) -> str:
    return thinker.create_key("reasoning")


def ask(srv: Server, key: str, **fields: Any) -> httpx.Response:
    body = {"model": THINKER, "messages": QUESTION, "max_tokens": 120, **fields}
    return httpx.post(srv.url + "/api/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {key}"})


def answer(srv: Server, key: str, **fields: Any) -> tuple[dict, dict, httpx.Response]:
    response = ask(srv, key, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["choices"][0], body["usage"], response


def test_thinking_on_gives_reasoning_and_a_clean_answer(thinker: Server, key: str) -> None:
    choice, usage, response = answer(thinker, key)  # default effort: medium
    message = choice["message"]
    assert message["reasoning_content"] and message["reasoning"] == message["reasoning_content"]
    assert message["content"].strip(), "an answer follows the (forced) close of the thinking"
    for marker in ("<think>", "</think>"):
        assert marker not in message["content"] and marker not in message["reasoning_content"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert 0 < reasoning <= BUDGETS["medium"] + MARKER_TOKENS
    assert usage["completion_tokens"] > reasoning
    assert response.headers["x-inferd-reasoning"] == "style=think-tags; thinking=on; effort=medium; budget=24"


def test_effort_budgets_hold_and_low_is_below_high(thinker: Server, key: str) -> None:
    spent = {}
    for effort in ("minimal", "high"):
        choice, usage, _ = answer(thinker, key, reasoning_effort=effort, max_tokens=200)
        spent[effort] = usage["completion_tokens_details"]["reasoning_tokens"]
        assert spent[effort] <= BUDGETS[effort] + MARKER_TOKENS
    assert 0 < spent["minimal"] < spent["high"]


def test_minimal_budget_is_closed_by_inferd_and_the_model_answers(thinker: Server, key: str) -> None:
    choice, usage, _ = answer(thinker, key, reasoning_effort="minimal")
    assert usage["completion_tokens_details"]["reasoning_tokens"] <= BUDGETS["minimal"]
    assert choice["message"]["reasoning_content"] and choice["message"]["content"].strip()
    assert usage["completion_tokens"] > BUDGETS["minimal"]  # the answer came after the forced close


def test_a_forced_close_that_runs_out_of_max_tokens_ends_with_length(thinker: Server, key: str) -> None:
    choice, usage, _ = answer(thinker, key, max_tokens=BUDGETS["medium"] + 6)
    assert choice["finish_reason"] == "length" and usage["completion_tokens"] == BUDGETS["medium"] + 6


def test_max_tokens_over_the_context_is_refused_whatever_the_budget(thinker: Server, key: str) -> None:
    for effort in ("low", "xhigh", "none"):
        response = ask(thinker, key, reasoning_effort=effort, max_tokens=2000)
        assert_error(response, 400, "invalid_request_error", "messages", "context_length_exceeded")


def test_separate_reasoning_false_keeps_the_markers_inline(thinker: Server, key: str) -> None:
    choice, usage, _ = answer(thinker, key, separate_reasoning=False, reasoning_effort="minimal")
    content = choice["message"]["content"]
    assert content.startswith("<think>\n") and "</think>" in content
    assert content.index("</think>") > len("<think>\n")  # reasoning text between the markers
    assert "reasoning_content" not in choice["message"] and "reasoning" not in choice["message"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0


@pytest.mark.parametrize("fields", [
    {"chat_template_kwargs": {"thinking": False}},
    {"chat_template_kwargs": {"enable_thinking": False}},
    {"reasoning_effort": "none"},
    {"reasoning_effort": "high", "chat_template_kwargs": {"thinking": False}},  # the switch wins
], ids=["thinking-false", "family-kwarg-false", "effort-none", "switch-beats-effort"])
def test_thinking_off_renders_no_thinking_block(thinker: Server, key: str, fields: dict) -> None:
    on_choice, on_usage, _ = answer(thinker, key, max_tokens=4)
    choice, usage, response = answer(thinker, key, max_tokens=4, **fields)
    # the template's "<think>\n" (3 tokens) is absent from the rendered prompt
    assert on_usage["prompt_tokens"] - usage["prompt_tokens"] == 3
    assert choice["message"]["reasoning_content"] is None and choice["message"]["content"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert "thinking=off" in response.headers["x-inferd-reasoning"]


def test_an_explicit_switch_on_with_effort_none_thinks_at_the_default_budget(thinker: Server, key: str) -> None:
    choice, usage, response = answer(thinker, key, reasoning_effort="none",
                                     chat_template_kwargs={"thinking": True})
    assert response.headers["x-inferd-reasoning"] == "style=think-tags; thinking=on; effort=medium; budget=24"
    assert choice["message"]["reasoning_content"]


def test_max_tokens_inside_the_thinking_returns_the_reasoning_so_far(thinker: Server, key: str) -> None:
    choice, usage, _ = answer(thinker, key, reasoning_effort="high", max_tokens=6)
    assert choice["finish_reason"] == "length"
    assert choice["message"]["reasoning_content"] and choice["message"]["content"] == ""
    assert usage["completion_tokens"] == 6 and usage["completion_tokens_details"]["reasoning_tokens"] == 6


def test_stream_sends_reasoning_before_content_under_both_names(thinker: Server, key: str) -> None:
    client = openai.OpenAI(base_url=thinker.url + "/api/v1", api_key=key, max_retries=0, timeout=120)
    kinds, reasoning, content, usage = [], "", "", None
    stream = client.chat.completions.create(model=THINKER, messages=QUESTION, max_tokens=120, stream=True,
                                            reasoning_effort="low", stream_options={"include_usage": True})
    for chunk in stream:
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta.model_dump()
        if delta.get("reasoning_content"):
            assert delta["reasoning"] == delta["reasoning_content"]
            assert not delta.get("content")
            kinds.append("reasoning")
            reasoning += delta["reasoning_content"]
        if delta.get("content"):
            kinds.append("content")
            content += delta["content"]
    assert kinds and kinds[0] == "reasoning" and "content" in kinds
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning"), "no reasoning after the first content delta"
    whole, whole_usage, _ = answer(thinker, key, reasoning_effort="low")
    assert (reasoning, content) == (whole["message"]["reasoning_content"], whole["message"]["content"])
    assert usage.completion_tokens_details.reasoning_tokens == whole_usage["completion_tokens_details"][
        "reasoning_tokens"]


def test_openai_client_reads_reasoning_content(thinker: Server, key: str) -> None:
    client = openai.OpenAI(base_url=thinker.url + "/api/v1", api_key=key, max_retries=0, timeout=120)
    completion = client.chat.completions.create(model=THINKER, messages=QUESTION, max_tokens=60,
                                                reasoning_effort="minimal", extra_body={"separate_reasoning": True})
    message = completion.choices[0].message
    assert message.model_extra["reasoning_content"] and message.content
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0


@pytest.mark.parametrize("name", ["chat_template", "tokenize", "add_generation_prompt", "messages", "tools",
                                  "bos_token", "custom"])
def test_template_kwargs_outside_the_allow_list_are_refused(thinker: Server, key: str, name: str) -> None:
    response = ask(thinker, key, chat_template_kwargs={name: "x"})
    assert_error(response, 400, "invalid_request_error", f"chat_template_kwargs.{name}", "template_kwarg_not_allowed")
    assert thinker.is_healthy()


@pytest.mark.parametrize("kwargs,param", [
    ({"thinking": True, "enable_thinking": False}, "chat_template_kwargs.thinking"),
    ({"enable_thinking": "yes"}, "chat_template_kwargs.enable_thinking"),
    ({"thinking": {"nested": True}}, "chat_template_kwargs.thinking"),
])
def test_bad_switches_are_refused(thinker: Server, key: str, kwargs: dict, param: str) -> None:
    assert_error(ask(thinker, key, chat_template_kwargs=kwargs), 400, "invalid_request_error", param)
    assert thinker.is_healthy()


def test_models_show_reasoning_and_efforts(thinker: Server, key: str) -> None:
    cards = httpx.get(thinker.url + "/api/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    card = next(c for c in cards if c["id"] == THINKER)
    assert card["reasoning"]["style"] == "think-tags" and card["reasoning"]["default_effort"] == "medium"
    assert card["reasoning"]["efforts"]["minimal"] == "8 reasoning tokens"
    assert card["reasoning"]["efforts"]["xhigh"] == "unlimited"
    assert card["reasoning"]["efforts"]["none"] == "thinking off"
    assert {"reasoning_effort", "separate_reasoning", "chat_template_kwargs"} <= set(card["supported_parameters"])


def test_packaged_models_do_not_reason(http: httpx.Client) -> None:
    for card in http.get("/api/v1/models").json()["data"]:
        assert card["reasoning"] is None and "reasoning_effort" not in card["supported_parameters"]
    response = http.post("/api/v1/chat/completions", json={
        "model": "qwen2.5-coder-0.5b-instruct", "messages": QUESTION, "max_tokens": 3, "reasoning_effort": "high"})
    assert response.status_code == 200 and "reasoning_effort" in response.headers["x-inferd-ignored-params"]
    assert "x-inferd-reasoning" not in response.headers
    assert "reasoning_content" not in response.json()["choices"][0]["message"]


def test_harmony_effort_none_closes_the_analysis_channel_and_answers(thinker: Server, key: str) -> None:
    """llama.cpp parses gpt-oss output itself and refuses text outside the channels, which Qwen
    cannot write; after inferd's forced close the answer is inside the final channel, so this
    path runs on Qwen (the effort levels are checked on rendered prompts in test_reasoning_templates)."""
    choice, usage, response = answer(thinker, key, model=HARMONIST, reasoning_effort="none", max_tokens=6)
    assert response.headers["x-inferd-reasoning"] == "style=harmony; thinking=on; effort=none; budget=0"
    assert choice["message"]["content"] and not choice["message"]["reasoning_content"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0 and usage["completion_tokens"] == 6
    inline, _, _ = answer(thinker, key, model=HARMONIST, reasoning_effort="none", max_tokens=6,
                          separate_reasoning=False)
    assert inline["message"]["content"] == choice["message"]["content"]  # no reasoning, so no markers inline
