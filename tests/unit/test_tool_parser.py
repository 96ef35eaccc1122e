"""The tool-call parser: calls between markers or bare, streamed name-once and arguments in pieces."""

from __future__ import annotations

import json

import pytest

from inferd.chat.tools.policies import Hermes, PlainJson
from inferd.engines.base import ToolCallDelta

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris \\"Fr\\" {x}"}}\n</tool_call>'


def parse(policy, chunks: list[str], parallel: bool = True) -> tuple[str, list[dict]]:
    parser = policy.parser(TOOLS, parallel)
    content, deltas = "", []
    for chunk in chunks:
        out = parser.feed(chunk)
        content, deltas = content + out.content, deltas + out.calls
    out = parser.finish()
    return content + out.content, assemble(deltas + out.calls)


def assemble(deltas: list[ToolCallDelta]) -> list[dict]:
    calls: dict[int, dict] = {}
    for d in deltas:
        call = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
        if d.id is not None:
            assert call["id"] is None, "the id comes once"
            call["id"] = d.id
        if d.name is not None:
            assert call["name"] is None, "the name comes once"
            call["name"] = d.name
        call["arguments"] += d.arguments
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("at", range(1, len("Sure. " + CALL)))
def test_a_tagged_call_split_anywhere(at: int) -> None:
    text = "Sure. " + CALL
    content, calls = parse(Hermes(), [text[:at], text[at:]])
    assert content == "Sure. "
    assert [c["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": 'Paris "Fr" {x}'}
    assert calls[0]["id"].startswith("call_")


def test_arguments_stream_in_pieces_before_the_call_ends() -> None:
    parser = Hermes().parser(TOOLS, True)
    first = parser.feed('<tool_call>\n{"name": "get_weather", "arguments": {"ci')
    assert [c.name for c in first.calls] == ["get_weather", None] and first.calls[1].arguments == '{"ci'
    assert parser.feed('ty": "Oslo"}}\n</tool_call>').calls[0].arguments == 'ty": "Oslo"}'


def test_parallel_calls_and_parallel_off() -> None:
    two = CALL + "\n" + CALL.replace("get_weather", "get_time")
    assert [c["name"] for c in parse(Hermes(), [two])[1]] == ["get_weather", "get_time"]
    assert [c["name"] for c in parse(Hermes(), [two], parallel=False)[1]] == ["get_weather"]


@pytest.mark.parametrize("text", ['{"name": "get_weather", "arguments": {"city": "Rome"}}',
                                  '```json\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n```',
                                  '[{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}]'])
def test_a_bare_json_message_is_a_call(text: str) -> None:
    for at in range(1, len(text)):
        content, calls = parse(Hermes(), [text[:at], text[at:]])
        assert content == "" and [json.loads(c["arguments"]) for c in calls] == [{"city": "Rome"}]


@pytest.mark.parametrize("text", ['{"name": "delete_all", "arguments": {}}', '{"answer": 42}', '{not json',
                                  "<tool_call>\n{\"name\": \"nope\"}\n</tool_call> then",
                                  "plain text mentioning <tool and {braces}"])
def test_what_is_not_a_call_of_a_given_tool_stays_content(text: str) -> None:
    for at in range(1, len(text)):
        content, calls = parse(Hermes(), [text[:at], text[at:]])
        assert (content, calls) == (text, [])


def test_the_json_policy_reads_bare_calls_and_writes_the_history_as_text() -> None:
    content, calls = parse(PlainJson(), ['{"name": "get_time", "arguments": {}}'])
    assert content == "" and calls[0]["name"] == "get_time"
    history = PlainJson().history([
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "12:00"}])
    assert history == [{"role": "assistant", "content": '{"name": "get_time", "arguments": {}}'},
                       {"role": "user", "content": "Function result (c1): 12:00"}]
    assert "get_time" in PlainJson().instructions(TOOLS) and Hermes().instructions(TOOLS) == ""


def test_calls_cut_short_and_exact_repeats_are_left_out() -> None:
    call = '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    content, calls = parse(PlainJson(), [call + "\n" + call + "\n" + '{"name": "get_weather", "argu'])
    assert content == "" and [json.loads(c["arguments"]) for c in calls] == [{"city": "Rome"}]
