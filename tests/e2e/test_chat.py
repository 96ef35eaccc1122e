"""Chat completions through the official openai client against the real packaged models."""

from __future__ import annotations

import openai
import pytest

from ..conftest import GEMMA, QWEN

HELLO = [{"role": "user", "content": "Write hello world in C"}]


def test_non_streaming_answer_from_the_real_model(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=HELLO, max_tokens=24, temperature=0)
    assert reply.object == "chat.completion"
    assert reply.model == QWEN
    assert reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 24
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_caps_the_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=HELLO, max_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3
    assert reply.choices[0].finish_reason == "length"


def test_max_completion_tokens_is_an_alias(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=HELLO, max_completion_tokens=2, temperature=0)
    assert reply.usage.completion_tokens == 2


def test_streaming_through_the_openai_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=QWEN, messages=HELLO, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


def test_temperature_zero_is_deterministic_and_stream_equals_non_stream(client: openai.OpenAI) -> None:
    kwargs = dict(model=QWEN, messages=[{"role": "user", "content": "Name three prime numbers."}],
                  max_tokens=12, temperature=0)
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True)
                       if c.choices)
    assert first == second == streamed
    assert first


def test_system_and_multi_turn_messages_and_text_parts(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "France?"}]},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "And of Italy?"},
    ]
    reply = client.chat.completions.create(model=QWEN, messages=messages, max_tokens=5, temperature=0)
    assert reply.choices[0].message.content.strip()


@pytest.mark.parametrize("model", [QWEN, GEMMA])
def test_every_packaged_model_answers(client: openai.OpenAI, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=HELLO, max_tokens=4, temperature=0)
    assert reply.model == model
    assert reply.usage.completion_tokens >= 1


def test_seed_parameters_the_sdk_lacks_go_through_extra_body(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=QWEN, messages=HELLO, max_tokens=2, extra_body={"top_k": 1, "min_p": 0.5, "repetition_penalty": 1.1})
    assert raw.http_response.status_code == 200
    assert "x-inferd-ignored-params" not in raw.http_response.headers
    assert raw.parse().usage.completion_tokens == 2


def test_unknown_model_is_a_404_through_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=1)
    assert caught.value.body["code"] == "model_not_found"
    assert caught.value.body["param"] == "model"


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {QWEN, GEMMA}
    qwen = models[QWEN].model_dump()
    assert qwen["object"] == "model" and qwen["owned_by"] and qwen["created"] > 0
    assert qwen["context_length"] == 4096
    assert qwen["architecture"]["input_modalities"] == ["text"]
    assert set(qwen["supported_parameters"]) >= {"temperature", "max_tokens", "top_p", "top_k", "min_p",
                                                 "repetition_penalty"}
    assert client.models.retrieve(GEMMA).id == GEMMA
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_v1_aliases(http) -> None:
    assert http.get("/v1/models").status_code == 200
    reply = http.post("/v1/chat/completions", json={"model": QWEN, "messages": HELLO, "max_tokens": 1})
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 1
