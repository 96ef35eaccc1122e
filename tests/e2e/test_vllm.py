"""The vllm engine kind end to end: a real vLLM server (CPU build) that inferd starts for the packaged
Qwen, its GGUF converted once, driven through the official openai client and raw httpx.

vLLM starts in minutes and takes ~7 GB, so the module starts it once (and once more, by the
supervisor, in the crash test, which runs last). Every comparison is with the same vLLM called
directly (``vllm_support.Engine``) with the same request. The entry is a hybrid think-tags model
(the reasoning tests' template); the other tests turn thinking off, which renders a plain prompt.
"""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from ..conftest import assert_error
from ..extras_cases import ANSWER, WEATHER
from ..harness import Server, free_port, library_server
from ..vllm_access import Engine, alive, engine_card, find_engine, process_tree, wait_for, wait_until
from .vllm_support import BUDGETS, CONTEXT, MODEL, READY_S, require_vllm, upstream_entries, vllm_entry

require_vllm()

ECHO = [{"role": "user", "content": "Write the word 'echo' eight times, separated by spaces."}]
HELLO = [{"role": "user", "content": "Write hello world in C"}]
COUNT = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
QUESTION = [{"role": "user", "content": "Is 17 a prime number? Think about it carefully."}]
PLAIN = {"reasoning_effort": "none"}  # thinking off: the hybrid template renders a plain chat prompt
# greedy with a strong penalty on every token seen (the end-of-turn token is in the prompt): this writes all
# 800 tokens (measured; without the penalty the model stops after ~290), so it cannot end by itself early
LONG = {"messages": COUNT, "max_tokens": 800, "temperature": 0, "repetition_penalty": 2.0, "stream": True, **PLAIN}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    with library_server(tmp_path_factory.mktemp("vllm"), models_dir, vllm_entry(), ready_timeout=READY_S) as server:
        yield server


@pytest.fixture(scope="module")
def key(srv: Server) -> str:
    return srv.create_key("vllm")


@pytest.fixture(scope="module")
def engine(srv: Server) -> Engine:
    return find_engine(srv.url, MODEL)


@pytest.fixture(scope="module")
def client(srv: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/api/v1", api_key=key, max_retries=0, timeout=300)


def post(srv: Server, key: str, body: dict[str, Any], model: str = MODEL) -> httpx.Response:
    return httpx.post(srv.url + "/api/v1/chat/completions", json={"model": model, **body}, timeout=300,
                      headers={"Authorization": f"Bearer {key}"})


# -- set-up: conversion, the process, the key ----------------------------------------------------------------

def test_the_gguf_is_converted_once_into_a_folder_named_by_its_sha256(srv: Server, models_dir: Path) -> None:
    from inferd.library import load_library

    sha256 = load_library().get("qwen2.5-coder-0.5b-instruct").source.sha256  # type: ignore[union-attr]
    folder = models_dir / "vllm" / sha256
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF's quantization must not follow the weights
    assert (folder / "model.safetensors").stat().st_size > 500_000_000
    assert [p.name for p in (models_dir / "vllm").iterdir() if p.name.startswith(sha256)] == [sha256]  # no partial


def test_health_shows_the_vllm_engine_process(srv: Server, engine: Engine) -> None:
    card = engine_card(srv.url, MODEL)
    assert card["kind"] == "vllm" and card["state"] == "ready" and card["pid"] == engine.pid
    assert card["rss_bytes"] > 1_000_000_000  # the server, its engine core and worker, together
    assert card["restarts"] == 0


def test_the_engine_key_is_in_no_command_line_and_no_log(srv: Server, engine: Engine) -> None:
    argv = Path(f"/proc/{engine.pid}/cmdline").read_bytes().decode()
    assert engine.key not in argv and "--api-key" not in argv
    assert argv.split("\0")[argv.split("\0").index("--host") + 1] == "127.0.0.1"
    assert engine.key not in srv.log()
    refused = httpx.post(engine.url + "/v1/chat/completions", json={"model": MODEL, "messages": HELLO}, timeout=30)
    assert refused.status_code == 401  # nothing bypasses inferd's keys


# -- the seed parameters, each equal to vLLM called directly --------------------------------------------------

GREEDY = {"temperature": 0}
CASES = {  # inferd's request -> the same request to vLLM directly
    "temperature-0": ({"temperature": 0}, GREEDY),
    "top_k-1": ({"temperature": 1.5, "top_k": 1}, {"temperature": 1.5, "top_k": 1}),
    "min_p-1": ({"temperature": 1.5, "min_p": 1.0}, {"temperature": 1.5, "min_p": 1.0}),
    "top_p-tiny": ({"temperature": 1.5, "top_p": 1e-6}, {"temperature": 1.5, "top_p": 1e-6}),
    "top_p-0": ({"temperature": 1.5, "top_p": 0}, GREEDY),  # 0 keeps the most likely token (vLLM refuses 0)
    "repetition_penalty": ({"temperature": 0, "repetition_penalty": 1.3}, {"temperature": 0, "repetition_penalty": 1.3}),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_seed_parameters_give_what_vllm_gives_directly(client: openai.OpenAI, engine: Engine, case: str) -> None:
    ours, theirs = CASES[case]
    fields = {k: v for k, v in ours.items() if k != "temperature"}
    reply = client.chat.completions.create(model=MODEL, messages=ECHO, max_tokens=24,  # type: ignore[arg-type]
                                           temperature=ours["temperature"], extra_body={**fields, **PLAIN})
    direct = engine.chat({"messages": ECHO, "max_tokens": 24, **theirs})
    assert reply.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert reply.usage.completion_tokens == direct["usage"]["completion_tokens"]  # type: ignore[union-attr]
    assert reply.usage.prompt_tokens == direct["usage"]["prompt_tokens"]  # type: ignore[union-attr]
    if ours["temperature"] > 0:  # a sampler that keeps only the top token: the same as greedy, not by chance
        assert direct["choices"][0]["message"]["content"] == engine.chat({"messages": ECHO, "max_tokens": 24,
                                                                          **GREEDY})["choices"][0]["message"]["content"]


def test_repetition_penalty_reaches_vllm(client: openai.OpenAI) -> None:
    texts = {penalty: client.chat.completions.create(model=MODEL, messages=ECHO, max_tokens=24,  # type: ignore[arg-type]
                                                     temperature=0, extra_body={"repetition_penalty": penalty, **PLAIN}
                                                     ).choices[0].message.content for penalty in (1.0, 1.3)}
    assert texts[1.0] != texts[1.3]


def test_max_tokens_bounds_the_completion(client: openai.OpenAI, engine: Engine) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5, temperature=0,  # type: ignore[arg-type]
                                           extra_body=PLAIN)
    direct = engine.chat({"messages": HELLO, "max_tokens": 5, "temperature": 0})
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5  # type: ignore[union-attr]
    assert reply.choices[0].message.content == direct["choices"][0]["message"]["content"]


def test_streaming_gives_the_same_text_and_usage(client: openai.OpenAI, engine: Engine) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=16, temperature=0,  # type: ignore[arg-type]
                                                 stream=True, stream_options={"include_usage": True}, extra_body=PLAIN))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == engine.streamed_text({"messages": HELLO, "max_tokens": 16, "temperature": 0})
    direct = engine.chat({"messages": HELLO, "max_tokens": 16, "temperature": 0})
    assert text == direct["choices"][0]["message"]["content"]
    assert finishes == [direct["choices"][0]["finish_reason"]] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == direct["usage"]["completion_tokens"]
    assert chunks[-1].usage.prompt_tokens == direct["usage"]["prompt_tokens"]


def test_usage_counts_prompt_tokens_vllm_took_from_its_cache(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Here is some context about the C language. " * 60 + "Say hi."}]
    usages = [client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0,  # type: ignore[arg-type]
                                             extra_body=PLAIN).usage for _ in range(2)]
    assert usages[0].prompt_tokens == usages[1].prompt_tokens > 512  # type: ignore[union-attr]
    assert usages[1].prompt_tokens_details.cached_tokens >= 256  # type: ignore[union-attr]  # vLLM's prefix cache


# -- the context ----------------------------------------------------------------------------------------------

def test_prompt_and_max_tokens_over_the_context_is_refused(srv: Server, key: str) -> None:
    over = post(srv, key, {"messages": HELLO, "max_tokens": CONTEXT - 5, **PLAIN})
    assert_error(over, 400, "invalid_request_error", "messages", "context_length_exceeded")
    long = [{"role": "user", "content": "word " * 1500}]
    for body in ({"messages": long, "max_tokens": 10}, {"messages": long}):  # counted by inferd; refused by vLLM
        assert_error(post(srv, key, {**body, **PLAIN}), 400, "invalid_request_error", "messages",
                     "context_length_exceeded")
    assert post(srv, key, {"messages": HELLO, "max_tokens": 2, **PLAIN}).status_code == 200
    assert srv.is_healthy()


# -- reasoning: inferd's splitter and two-phase budget on vLLM's raw text -------------------------------------

def test_a_spent_budget_is_closed_by_inferd_and_the_model_answers(srv: Server, key: str) -> None:
    response = post(srv, key, {"messages": QUESTION, "max_tokens": 120, "reasoning_effort": "minimal"})
    assert response.status_code == 200, response.text
    body = response.json()
    message, usage = body["choices"][0]["message"], body["usage"]
    assert message["reasoning_content"] and message["content"].strip()
    for marker in ("<think>", "</think>"):
        assert marker not in message["content"] and marker not in message["reasoning_content"]
    assert 0 < usage["completion_tokens_details"]["reasoning_tokens"] <= BUDGETS["minimal"]
    assert usage["completion_tokens"] > BUDGETS["minimal"]  # the answer came after the forced close
    assert response.headers["x-inferd-reasoning"] == "style=think-tags; thinking=on; effort=minimal; budget=8"


def test_budgets_hold_per_effort_and_thinking_off_reasons_not(srv: Server, key: str) -> None:
    spent = {}
    for effort in ("minimal", "high", "none"):
        response = post(srv, key, {"messages": QUESTION, "max_tokens": 200, "reasoning_effort": effort})
        assert response.status_code == 200, response.text
        spent[effort] = response.json()["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert 0 < spent["minimal"] <= BUDGETS["minimal"] < spent["high"] <= BUDGETS["high"] + 3  # 3: "</think>"
    assert spent["none"] == 0


# -- the OpenAI extras on vLLM: inferd renders the tools, constrains with a grammar, parses the calls -------------

TEN = [{"role": "user", "content": "Count from 1 to 10, separated by spaces."}]


def test_a_required_tool_call_and_a_json_schema(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, tools=[WEATHER], tool_choice="required", temperature=0,
                                           max_tokens=40, extra_body=PLAIN,
                                           messages=[{"role": "user", "content": "Weather in Paris?"}])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and call.id  # type: ignore[union-attr]
    assert set(json.loads(call.function.arguments)) == {"city"}  # type: ignore[union-attr]
    answer = client.chat.completions.create(model=MODEL, response_format=ANSWER, temperature=0,  # type: ignore[arg-type]
                                            max_tokens=30, extra_body=PLAIN,
                                            messages=[{"role": "user", "content": "What is 2 + 3?"}])
    assert isinstance(json.loads(answer.choices[0].message.content or "")["answer"], int)


def test_stop_n_and_logprobs(client: openai.OpenAI) -> None:
    stopped = client.chat.completions.create(model=MODEL, messages=TEN, max_tokens=30, temperature=0, stop=[" 5"],
                                             extra_body=PLAIN)
    text = stopped.choices[0].message.content or ""
    assert stopped.choices[0].finish_reason == "stop" and " 5" not in text and "4" in text
    two = client.chat.completions.create(model=MODEL, messages=TEN, max_tokens=6, temperature=1.5, seed=11, n=2,
                                         extra_body=PLAIN)
    assert [c.index for c in two.choices] == [0, 1] and all(c.message.content for c in two.choices)
    assert two.usage is not None and 2 <= two.usage.completion_tokens <= 12
    probed = client.chat.completions.create(model=MODEL, messages=TEN, max_tokens=4, temperature=1, seed=5,
                                            logprobs=True, top_logprobs=2, extra_body=PLAIN)
    tokens = probed.choices[0].logprobs.content  # type: ignore[union-attr]
    assert tokens and len(tokens) == probed.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in tokens) == probed.choices[0].message.content
    for token in tokens:
        assert token.logprob <= 0 and 1 <= len(token.top_logprobs) <= 2
        assert [t.logprob for t in token.top_logprobs] == sorted((t.logprob for t in token.top_logprobs), reverse=True)
    greedy = client.chat.completions.create(model=MODEL, messages=TEN, max_tokens=4, temperature=0, logprobs=True,
                                            top_logprobs=2, extra_body=PLAIN)
    # greedy: every token is the most likely one (vLLM reports the distribution greedy picked from, not
    # llama.cpp's certain 0.0: see README, Logprobs)
    assert all(t.top_logprobs[0].token == t.token for t in greedy.choices[0].logprobs.content)  # type: ignore[union-attr]


# -- cancellation ---------------------------------------------------------------------------------------------

def test_a_client_that_goes_away_frees_the_slot(srv: Server, key: str, engine: Engine) -> None:
    """One slot (max_num_seqs 1): a queued request runs once the abandoned stream's generation is aborted."""
    generated = engine.metric("vllm:generation_tokens_total")
    headers = {"Authorization": f"Bearer {key}"}
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=srv.url, headers=headers, timeout=300) as http:
        with http.stream("POST", "/api/v1/chat/completions", json={"model": MODEL, **LONG}) as running:
            # the line iterator is kept: a discarded one is closed at once, and closing it closes httpx's
            # connection (httpcore drops a connection whose response was not read to the end); the client
            # would have left right here, and the queued request would run at once
            lines = running.iter_lines()
            assert next(line for line in lines if '"content":"' in line and '"role"' not in line)
            # the client stays connected and reads nothing more: the long one keeps the slot
            queued = pool.submit(post, srv, key, {"messages": HELLO, "max_tokens": 3, "temperature": 0, **PLAIN})
            # usually queued in vLLM within a second; on a loaded machine it may still be on its way: either
            # way it cannot finish before the long one leaves the only slot
            wait_until(lambda: engine.metric("vllm:num_requests_waiting") == 1, 30)
            assert not queued.done(), f"finished beside the long stream: {queued.result().status_code} " \
                                      f"{queued.result().text[:500]}"
        assert queued.result(timeout=300).status_code == 200  # the stream above was closed: the client left
    # had the abandoned generation gone on, it would have written its 800 tokens before the queued one ran
    assert engine.metric("vllm:generation_tokens_total") - generated < 400
    assert engine.metric("vllm:num_requests_running") == 0


# -- an openai-kind entry in front of the same vLLM -----------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, engine: Engine) -> Iterator[Server]:
    env = {"VLLM_UPSTREAM_KEY": engine.key, "WRONG_UPSTREAM_KEY": "sk-not-the-key"}
    with library_server(tmp_path_factory.mktemp("gateway"), models_dir, upstream_entries(engine.port, free_port()),
                        env=env) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_key(gateway: Server) -> str:
    return gateway.create_key("gateway")


def test_openai_kind_gives_what_vllm_gives_directly(gateway: Server, gateway_key: str, engine: Engine) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/api/v1", api_key=gateway_key, max_retries=0, timeout=300)
    for fields in ({"temperature": 0}, {"temperature": 0, "repetition_penalty": 1.3}, {"temperature": 1.5, "top_k": 1}):
        extra = {k: v for k, v in fields.items() if k != "temperature"}
        reply = client.chat.completions.create(model="via-openai", messages=ECHO, max_tokens=24,  # type: ignore[arg-type]
                                               temperature=fields["temperature"], extra_body=extra)
        direct = engine.chat({"messages": ECHO, "max_tokens": 24, **fields})
        assert reply.choices[0].message.content == direct["choices"][0]["message"]["content"]
        assert reply.usage.completion_tokens == direct["usage"]["completion_tokens"]  # type: ignore[union-attr]
    chunks = client.chat.completions.create(model="via-openai", messages=HELLO, max_tokens=16, temperature=0,  # type: ignore[arg-type]
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == engine.streamed_text({"messages": HELLO, "max_tokens": 16, "temperature": 0})


def test_openai_kind_maps_upstream_errors(gateway: Server, gateway_key: str) -> None:
    refused = post(gateway, gateway_key, {"messages": HELLO, "max_tokens": 2000}, model="via-openai")
    error = assert_error(refused, 400, "invalid_request_error", "max_tokens", "upstream_refused")  # vLLM's param
    assert "max_model_len" in error["message"]  # the upstream's own words
    too_long = post(gateway, gateway_key, {"messages": [{"role": "user", "content": "word " * 1500}]},
                    model="via-openai")
    assert_error(too_long, 400, "invalid_request_error", "messages", "context_length_exceeded")
    for model in ("wrong-key", "nobody-home"):
        assert_error(post(gateway, gateway_key, {"messages": HELLO, "max_tokens": 2}, model=model), 502,
                     "server_error", None, "upstream_error")
    assert post(gateway, gateway_key, {"messages": HELLO, "max_tokens": 2}, model="via-openai").status_code == 200
    assert gateway.is_healthy()


# -- crash recovery (last: the supervisor starts vLLM again) --------------------------------------------------

def test_a_killed_engine_ends_its_requests_cleanly_and_comes_back(srv: Server, key: str, engine: Engine,
                                                                  gateway: Server, gateway_key: str) -> None:
    before = process_tree(engine.pid)
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=srv.url, timeout=300,
                                                     headers={"Authorization": f"Bearer {key}"}) as http:
        with http.stream("POST", "/api/v1/chat/completions", json={"model": MODEL, **LONG}) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if '"content":"' in line and '"role"' not in line)
            # through the openai-kind entry: queued behind the stream in vLLM's single slot
            queued = pool.submit(post, gateway, gateway_key, {"messages": HELLO, "max_tokens": 3}, "via-openai")
            # queued in vLLM (or, on a loaded machine, still on its way: then it finds vLLM gone)
            wait_until(lambda: engine.metric("vllm:num_requests_waiting") == 1, 30)
            os.kill(engine.pid, signal.SIGKILL)
            events = [line[len("data: "):] for line in lines if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "engine_crashed" and error["type"] == "server_error"
        assert_error(queued.result(timeout=120), 502, "server_error", None, "upstream_error")
    wait_for(lambda: engine_card(srv.url, MODEL)["state"] == "restarting", 30, "/health shows the model restarting")
    assert_error(post(srv, key, {"messages": HELLO, "max_tokens": 2, **PLAIN}), 503, "server_error", None,
                 "model_loading")
    wait_for(lambda: not alive(before), 60, "every process of the killed engine is gone")
    srv.wait_health("ready", timeout=READY_S)
    card = engine_card(srv.url, MODEL)
    assert card["restarts"] == 1 and card["pid"] != engine.pid
    again = post(srv, key, {"messages": HELLO, "max_tokens": 2, **PLAIN})
    assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 2
    assert gateway.is_healthy()
