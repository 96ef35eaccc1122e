"""Each sampling parameter reaches the real sampler and has an observable effect."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import QWEN

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def generate(http: httpx.Client, **params) -> str:
    body = {"model": QWEN, "messages": PROMPT, "max_tokens": 16, **params}
    response = http.post("/api/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert "x-inferd-ignored-params" not in response.headers
    return response.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def greedy(server, api_key) -> str:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120) as http:
        return generate(http, temperature=0)


def test_hot_sampling_without_truncation_differs_from_greedy(http: httpx.Client, greedy: str) -> None:
    samples = {generate(http, temperature=1.5) for _ in range(3)}
    assert samples != {greedy}


@pytest.mark.parametrize("truncation", [{"top_k": 1}, {"min_p": 1.0}, {"top_p": 0.0}, {"top_p": 1e-6}])
def test_truncation_to_one_token_equals_greedy_even_when_hot(http: httpx.Client, greedy: str, truncation) -> None:
    assert generate(http, temperature=1.5, **truncation) == greedy


def _repeats(text: str) -> int:
    words = text.lower().split()
    return len(words) - len(set(words))


def test_strong_repetition_penalty_reduces_repetition(http: httpx.Client) -> None:
    messages = [{"role": "user", "content": "Repeat the word 'apple' forty times, separated by spaces."}]
    base = {"model": QWEN, "messages": messages, "max_tokens": 40, "temperature": 0}
    plain = http.post("/api/v1/chat/completions", json=base).json()["choices"][0]["message"]["content"]
    penalised = http.post("/api/v1/chat/completions", json={**base, "repetition_penalty": 3.0}).json()
    penalised_text = penalised["choices"][0]["message"]["content"]
    assert _repeats(plain) >= 10
    assert _repeats(penalised_text) < _repeats(plain) / 2


def test_repetition_penalty_below_one_rewards_repetition(http: httpx.Client) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "List five different fruits."}]
    base = {"model": QWEN, "messages": messages, "max_tokens": 30, "temperature": 0}
    plain = http.post("/api/v1/chat/completions", json=base).json()["choices"][0]["message"]["content"]
    rewarded = http.post("/api/v1/chat/completions", json={**base, "repetition_penalty": 0.5}).json()
    assert _repeats(rewarded["choices"][0]["message"]["content"]) >= _repeats(plain) + 5
