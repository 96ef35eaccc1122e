"""Reproducible mode (a library entry with ``reproducible = true``): temperature 0 and a fixed seed give one
output for the same request whatever runs beside it, whatever the prompt cache holds, whichever slot.

The model runs in its own server with 8 slots, like the packaged entry; generations are short.
"""

from __future__ import annotations

import random
import threading

import openai

from ..conftest import REPRODUCIBLE as MODEL
# the prompt whose greedy answer changed with the prompt cache and the batch before this mode existed
SKY = [{"role": "user", "content": "Why is the sky blue? Answer in two sentences."}]
POEM = [{"role": "user", "content": "Write a short poem about the sea."}]


def ask(client: openai.OpenAI, messages, **fields) -> str:
    return client.chat.completions.create(model=MODEL, messages=messages, **fields).choices[0].message.content


def under_load(client: openai.OpenAI, copies: int, messages, **fields) -> list[str]:
    """``copies`` of the request sent at once among 8 other requests of different lengths."""
    results: list[str] = []
    others = [threading.Thread(target=ask, args=(client, [{"role": "user", "content": f"{topic} {random.random()}?"}]),
                               kwargs={"max_tokens": random.randint(2, 12), "temperature": 1})
              for topic in ("cats", "rain", "ships", "rust", "moons", "bread", "jazz", "clocks")]
    mine = [threading.Thread(target=lambda: results.append(ask(client, messages, **fields))) for _ in range(copies)]
    threads = others[:4] + mine + others[4:]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_temperature_zero_gives_one_output_alone_under_load_and_after_the_cache_warmed(rclient) -> None:
    fields = {"max_tokens": 16, "temperature": 0}  # the answers this prompt gave diverged at token 8
    warm = ask(rclient, SKY, **fields)  # computed cold; it warms the prompt cache
    outputs = [ask(rclient, SKY, **fields) for _ in range(6)]  # alone
    outputs += under_load(rclient, 7, SKY, **fields)  # among 8 others, several slots
    outputs += under_load(rclient, 7, SKY, **fields)
    assert len(outputs) == 20 and set(outputs) == {warm}, set(outputs)


def test_a_seed_gives_one_output_alone_and_under_load(rclient) -> None:
    fields = {"max_tokens": 12, "temperature": 1, "seed": 1234}
    outputs = [ask(rclient, POEM, **fields) for _ in range(2)] + under_load(rclient, 3, POEM, **fields)
    assert len(set(outputs)) == 1, set(outputs)


def test_n_choices_repeat_streamed_or_not(rclient) -> None:
    fields = {"max_tokens": 8, "temperature": 1, "seed": 7, "n": 3}
    whole = rclient.chat.completions.create(model=MODEL, messages=POEM, **fields)
    texts = {0: "", 1: "", 2: ""}
    for chunk in rclient.chat.completions.create(model=MODEL, messages=POEM, stream=True, **fields):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert [texts[i] for i in range(3)] == [c.message.content for c in whole.choices]
    assert len(set(texts.values())) >= 2  # seed + i per choice


def test_the_same_seed_gives_the_same_sample_and_different_seeds_differ(rclient) -> None:
    def sample(seed: int, stream: bool = False) -> str:
        if stream:
            return "".join(c.choices[0].delta.content or "" for c in rclient.chat.completions.create(
                model=MODEL, messages=POEM, max_tokens=16, temperature=1, seed=seed, stream=True) if c.choices)
        return ask(rclient, POEM, max_tokens=16, temperature=1, seed=seed)

    first = sample(42)
    assert sample(42) == first and sample(42, stream=True) == first
    others = {sample(seed) for seed in (1, 2, 3)}
    assert len(others | {first}) >= 3, others


def test_a_multi_token_stop_string_is_cut_at_every_split_position(rclient) -> None:
    """Stop strings cut from the greedy answer at every offset of a 3-token span: the split between stream
    chunks falls at every position inside a stop string; the text before it comes out, the stop never."""
    reply = rclient.chat.completions.create(model=MODEL, messages=POEM, max_tokens=12, temperature=0, logprobs=True)
    text, tokens = reply.choices[0].message.content, [t.token for t in reply.choices[0].logprobs.content]
    span_start, span_end = len("".join(tokens[:4])), len("".join(tokens[:7]))  # " vast", " ex", "panse"
    assert span_end - span_start >= 10, tokens
    for offset in range(span_start, span_end):
        stop = text[offset:offset + 7]
        pieces, finish = [], None
        for chunk in rclient.chat.completions.create(model=MODEL, messages=POEM, max_tokens=12, temperature=0,
                                                     stop=[stop, "@@never@@"], stream=True):
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        out = "".join(pieces)
        assert out == text[:text.find(stop)], (stop, pieces)
        assert finish == "stop" and stop not in out
