"""stop, seed, n, logprobs, penalties and logit_bias on the real engine and the packaged Qwen, through the
official openai client. Generations are a few dozen tokens at most."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from gguf import GGUFReader

from ..conftest import QWEN
from .patient import client, http  # noqa: F401 (fixtures)


POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


def create(client: openai.OpenAI, **fields):
    return client.chat.completions.create(model=QWEN, messages=fields.pop("messages", POEM), **fields)


@pytest.fixture(scope="module")
def vocab(models_dir: Path) -> dict[str, int]:
    """Token text (GPT-2 byte-level spelling: 'Ġ' is a leading space) -> id, from the packaged GGUF."""
    field = GGUFReader(models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf").fields["tokenizer.ggml.tokens"]
    return {bytes(field.parts[i]).decode(): n for n, i in enumerate(field.data)}


def test_stop_without_streaming_and_as_one_string(client: openai.OpenAI) -> None:
    text = create(client, max_tokens=24, temperature=0).choices[0].message.content
    assert "waves" in text
    reply = create(client, max_tokens=24, temperature=0, stop="waves")
    assert reply.choices[0].message.content == text[:text.find("waves")]
    assert reply.choices[0].finish_reason == "stop"


def test_n_three_without_streaming(client: openai.OpenAI) -> None:
    reply = create(client, max_tokens=8, temperature=1, seed=7, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    texts = [c.message.content for c in reply.choices]
    assert all(texts) and len(set(texts)) >= 2  # choice i samples with seed + i
    assert all(c.finish_reason in ("stop", "length") for c in reply.choices)
    single = create(client, max_tokens=8, temperature=1, seed=7)
    assert single.usage.prompt_tokens == reply.usage.prompt_tokens  # the prompt counts once
    assert 3 <= reply.usage.completion_tokens <= 24
    if all(c.finish_reason == "length" for c in reply.choices):
        assert reply.usage.completion_tokens == 24  # summed over the choices
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_n_three_streamed_interleaves_choices_by_index(client: openai.OpenAI) -> None:
    order, texts, finishes, usage = [], {0: "", 1: "", 2: ""}, {}, None
    for chunk in create(client, max_tokens=8, temperature=1, seed=7, n=3, stream=True,
                        stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.delta.content:
                order.append(choice.index)
                texts[choice.index] += choice.delta.content
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(finishes) == {0, 1, 2} and all(texts.values())
    assert len(set(order[:6])) >= 2  # the choices arrive interleaved, not one after the other
    assert usage is not None and 3 <= usage.completion_tokens <= 24
    if set(finishes.values()) == {"length"}:
        assert usage.completion_tokens == 24  # summed over the choices


def check_logprobs(content: str, tokens, top: int) -> None:
    assert "".join(t.token for t in tokens) == content
    for t in tokens:
        assert t.logprob <= 0 and bytes(t.bytes) == t.token.encode()
        values = [alt.logprob for alt in t.top_logprobs]
        assert len(values) == top and values == sorted(values, reverse=True)  # most likely first
        assert t.logprob <= values[0] + 1e-6  # nothing sampled is more likely than the top-1
        assert t.token in [alt.token for alt in t.top_logprobs] or t.logprob <= values[-1] + 1e-6


def test_logprobs_shape_and_order(client: openai.OpenAI) -> None:
    reply = create(client, max_tokens=10, temperature=1, seed=3, logprobs=True, top_logprobs=4)
    check_logprobs(reply.choices[0].message.content, reply.choices[0].logprobs.content, 4)
    tokens, content = [], ""
    for chunk in create(client, max_tokens=10, temperature=1, seed=3, logprobs=True, top_logprobs=4, stream=True):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            tokens += choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
    check_logprobs(content, tokens, 4)  # in streams each chunk carries its own tokens


def test_greedy_tokens_are_the_top_1(client: openai.OpenAI) -> None:
    greedy = create(client, max_tokens=10, temperature=0, logprobs=True, top_logprobs=3).choices[0]
    for t in greedy.logprobs.content:  # the sampled distribution of greedy decoding: one token, certain
        assert t.top_logprobs[0].token == t.token and t.logprob == 0.0
    hot = create(client, max_tokens=1, temperature=1, logprobs=True, top_logprobs=5).choices[0]
    assert hot.logprobs.content[0].top_logprobs[0].token == greedy.logprobs.content[0].token
    assert hot.logprobs.content[0].top_logprobs[0].logprob < 0  # at temperature 1 the distribution is spread


def test_top_logprobs_zero_gives_the_sampled_token_only(client: openai.OpenAI) -> None:
    reply = create(client, max_tokens=4, temperature=1, seed=1, logprobs=True, top_logprobs=0)
    assert [t.top_logprobs for t in reply.choices[0].logprobs.content] == [[]] * len(reply.choices[0].logprobs.content)
    assert create(client, max_tokens=2, temperature=0).choices[0].logprobs is None


def test_a_banned_token_never_appears(client: openai.OpenAI, vocab: dict[str, int]) -> None:
    sea = vocab["Ġsea"]
    plain = create(client, max_tokens=24, temperature=0, logprobs=True).choices[0]
    assert " sea" in [t.token for t in plain.logprobs.content]
    for seed in (None, 1, 2, 3):
        reply = create(client, max_tokens=24, temperature=0 if seed is None else 1, seed=seed, logprobs=True,
                       logit_bias={str(sea): -100}).choices[0]
        assert " sea" not in [t.token for t in reply.logprobs.content], reply.message.content


def test_a_bias_of_100_forces_the_token(client: openai.OpenAI, vocab: dict[str, int]) -> None:
    for seed in (None, 5):
        reply = create(client, max_tokens=5, temperature=0 if seed is None else 1, seed=seed,
                       logit_bias={str(vocab["Ġbanana"]): 100})
        assert reply.choices[0].message.content == " banana" * 5


def _repeats(text: str) -> int:
    words = text.lower().split()
    return len(words) - len(set(words))


def test_frequency_penalty_reduces_repetition(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Repeat the word 'apple' forty times, separated by spaces."}]
    plain = create(client, messages=ask, max_tokens=40, temperature=0).choices[0].message.content
    penalised = create(client, messages=ask, max_tokens=40, temperature=0, frequency_penalty=2).choices[0].message.content
    assert _repeats(plain) >= 20 and _repeats(penalised) < _repeats(plain) / 2


def test_presence_penalty_changes_how_often_tokens_return(client: openai.OpenAI) -> None:
    def repeated_tokens(**fields) -> int:
        reply = create(client, max_tokens=32, temperature=0, logprobs=True, **fields).choices[0]
        tokens = [t.token for t in reply.logprobs.content]
        return len(tokens) - len(set(tokens))

    plain = repeated_tokens()
    assert repeated_tokens(presence_penalty=2) < plain < repeated_tokens(presence_penalty=-2)


def test_ignore_eos_runs_to_max_tokens(http: httpx.Client) -> None:
    body = {"model": QWEN, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 12, "temperature": 0}
    short = http.post("/api/v1/chat/completions", json=body).json()
    assert short["choices"][0]["finish_reason"] == "stop" and short["usage"]["completion_tokens"] < 12
    long = http.post("/api/v1/chat/completions", json={**body, "ignore_eos": True}).json()
    assert long["choices"][0]["finish_reason"] == "length" and long["usage"]["completion_tokens"] == 12


def test_user_is_accepted_and_not_reported_as_ignored(http: httpx.Client) -> None:
    response = http.post("/api/v1/chat/completions", json={"model": QWEN, "messages": POEM, "max_tokens": 1,
                                                           "user": "alice@example"})
    assert response.status_code == 200 and "x-inferd-ignored-params" not in response.headers
    assert json.loads(response.text)["choices"][0]["message"]["role"] == "assistant"
