"""Tools on the real engine: grammar-forced calls, the model's own calls (auto), a round trip with the
result, streamed calls the openai client reassembles, and an agent framework (LangChain) binding tools."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from ..conftest import GEMMA, QWEN
from .patient import client, http  # noqa: F401 (fixtures)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def only_call(reply, name: str) -> dict:
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, choice.message
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == name and call.id.startswith("call_")
    return json.loads(call.function.arguments)


def test_required_round_trip_with_the_tool_result(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                           temperature=0, max_tokens=60)
    arguments = only_call(first, "get_weather")
    assert "paris" in arguments["city"].lower() and set(arguments) <= {"city", "unit"}
    assert first.choices[0].message.content is None
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 21,
                                                                                       "sky": "sunny"})}]
    # the answer turn: the 0.5B model, left to "auto", tends to call again; "none" makes it answer
    second = client.chat.completions.create(model=QWEN, messages=history, tools=[WEATHER, TIME], tool_choice="none",
                                            temperature=0, max_tokens=40)
    answer = second.choices[0]
    assert answer.finish_reason in ("stop", "length") and not answer.message.tool_calls
    assert "21" in answer.message.content, answer.message.content  # the result reached the model
    without = client.chat.completions.create(model=QWEN, messages=history[:-1] + [{**history[-1], "content": "ok"}],
                                             tools=[WEATHER, TIME], tool_choice="none", temperature=0, max_tokens=1)
    assert second.usage.prompt_tokens > without.usage.prompt_tokens  # rendered into the prompt


def test_a_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER, TIME], temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}},
                                           max_tokens=60)
    assert set(only_call(reply, "get_time")) == {"zone"}


def test_auto_on_the_packaged_qwen_calls_the_tool(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], tool_choice="auto",
                                           temperature=0, max_tokens=60)
    assert "paris" in only_call(reply, "get_weather")["city"].lower()


def test_none_keeps_the_tools_away(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], tool_choice="none",
                                           temperature=0, max_tokens=20)
    assert reply.choices[0].finish_reason in ("stop", "length") and not reply.choices[0].message.tool_calls
    assert reply.choices[0].message.content


def test_a_streamed_call_reassembled_by_the_openai_client(client: openai.OpenAI, http: httpx.Client) -> None:
    with client.chat.completions.stream(model=QWEN, messages=ASK, tools=[WEATHER], tool_choice="required",
                                        temperature=0, max_tokens=60) as stream:
        final = stream.get_final_completion()
    assert "paris" in only_call(final, "get_weather")["city"].lower()
    pieces = []  # the raw deltas: id and name once, arguments in several pieces
    with http.stream("POST", "/api/v1/chat/completions", json={
            "model": QWEN, "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "temperature": 0,
            "max_tokens": 60, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    pieces += choice["delta"].get("tool_calls") or []
    assert sum("id" in p for p in pieces) == 1 and sum("name" in p["function"] for p in pieces) == 1
    assert len([p for p in pieces if p["function"]["arguments"]]) >= 2
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == json.loads(
        final.choices[0].message.tool_calls[0].function.arguments)


def test_parallel_calls_and_parallel_off(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris and what time is it in Tokyo?"}]
    one = client.chat.completions.create(model=QWEN, messages=ask, tools=[WEATHER, TIME], tool_choice="required",
                                         parallel_tool_calls=False, temperature=0, max_tokens=80)
    assert len(one.choices[0].message.tool_calls) == 1 and one.choices[0].finish_reason == "tool_calls"


def test_a_small_base_model_with_the_json_format_returns_a_valid_call(client: openai.OpenAI) -> None:
    # one call per turn: with parallel calls allowed this base model repeats its call up to max_tokens
    reply = client.chat.completions.create(model=GEMMA, messages=ASK, tools=[WEATHER], tool_choice="required",
                                           parallel_tool_calls=False, temperature=0, max_tokens=60)
    arguments = only_call(reply, "get_weather")
    assert isinstance(arguments["city"], str) and set(arguments) <= {"city", "unit"}


def test_langchain_bind_tools(server, api_key: str) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return "sunny"

    llm = ChatOpenAI(model=QWEN, base_url=server.url + "/api/v1", api_key=api_key, temperature=0, max_tokens=60,
                     max_retries=0, timeout=900)
    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What's the weather in Paris?")
    assert [call["name"] for call in message.tool_calls] == ["get_weather"]
    assert "paris" in message.tool_calls[0]["args"]["city"].lower()
    auto = llm.bind_tools([get_weather]).invoke("What's the weather in Paris?")
    assert [call["name"] for call in auto.tool_calls] == ["get_weather"]
