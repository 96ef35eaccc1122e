"""Reasoning: the streaming splitter, the styles' decisions, the kwarg allow-list, and the
two-phase budget run (a scripted engine stands in for llama.cpp here; the same behaviour runs
on the real engine in tests/e2e/test_reasoning.py)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest

from inferd.chat.reasoning import plan_reasoning
from inferd.chat.reasoning.run import ReasoningRun
from inferd.chat.reasoning.splitter import MarkerSplitter, State
from inferd.chat.reasoning.styles import Harmony, NoReasoning, ThinkTags, build_style
from inferd.engines.base import Capabilities, Delta, GenerationRequest, Sampling, Usage
from inferd.errors import InvalidRequest

HARMONY = Harmony()
THINK = ThinkTags()


def split(splitter: MarkerSplitter, pieces: list[str]) -> tuple[str, str]:
    segments = [s for piece in pieces for s in splitter.feed(piece)] + splitter.finish()
    return ("".join(t for k, t in segments if k == "reasoning"), "".join(t for k, t in segments if k == "content"))


def every_split(text: str) -> list[list[str]]:
    """The text in two pieces at every position, and one character at a time."""
    return [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]


CASES = [
    ("think-tags", lambda: MarkerSplitter("<think>", "</think>", opened=False),
     "<think>\nLet me see.\n</think>\n\nThe answer.", ("Let me see.", "The answer.")),
    ("opened-in-prompt", lambda: MarkerSplitter("<think>", "</think>", opened=True),
     "Let me see.\n</think>\n\nThe answer.", ("Let me see.", "The answer.")),
    # llama.cpp echoes a thinking block the prompt opened (or closed) at the start of its output
    ("opened-and-echoed", lambda: MarkerSplitter("<think>", "</think>", opened=True),
     "<think>\nLet me see.\n</think>\n\nThe answer.", ("Let me see.", "The answer.")),
    ("closed-in-prompt-and-echoed", lambda: MarkerSplitter("<think>", "</think>", opened=False),
     "<think>\n\n</think>\n\nThe answer.", ("", "The answer.")),
    ("brackets", lambda: MarkerSplitter("[THINK]", "[/THINK]", opened=False),
     "[THINK]a < b[/THINK]Yes.", ("a < b", "Yes.")),
    ("harmony", lambda: HARMONY.splitter(HARMONY.decide("medium", None, {})),
     "<|channel|>analysis<|message|>User asks.<|end|><|start|>assistant<|channel|>final<|message|>Hi!",
     ("User asks.", "Hi!")),
    # what llama.cpp streams for gpt-oss with reasoning_format none: the analysis channel with its
    # markers, then the final channel's text without its header
    ("harmony-as-llama.cpp-streams-it", lambda: HARMONY.splitter(HARMONY.decide("medium", None, {})),
     "<|channel|>analysis<|message|>User asks.<|end|>Hi!", ("User asks.", "Hi!")),
    ("harmony-final-only", lambda: HARMONY.splitter(HARMONY.decide("medium", None, {})),
     "<|channel|>final<|message|>Hi!", ("", "Hi!")),
    ("no-reasoning", lambda: MarkerSplitter("<think>", "</think>", opened=False),
     "Plain answer with </think> inside.", ("", "Plain answer with </think> inside.")),
    ("reasoning-only", lambda: MarkerSplitter("<think>", "</think>", opened=False),
     "<think>only thoughts</think>", ("only thoughts", "")),
    ("missing-end", lambda: MarkerSplitter("<think>", "</think>", opened=False),
     "<think>cut off mid-thou", ("cut off mid-thou", "")),
    ("partial-end-at-stop", lambda: MarkerSplitter("<think>", "</think>", opened=True),
     "thoughts</thi", ("thoughts</thi", "")),
    ("lookalike-markers", lambda: MarkerSplitter("<think>", "</think>", opened=True),
     "a </thin k> b <thin\n</think>c", ("a </thin k> b <thin", "c")),
]


@pytest.mark.parametrize("make,text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_splitter_at_every_split_position(make, text: str, expected: tuple[str, str]) -> None:
    for pieces in every_split(text):
        assert split(make(), pieces) == expected, pieces


def test_splitter_releases_reasoning_before_the_end_marker_arrives() -> None:
    splitter = MarkerSplitter("<think>", "</think>", opened=False)
    assert splitter.feed("<think>step one, ") == [("reasoning", "step one,")]
    assert splitter.state is State.REASONING and splitter.feed("two </") == [("reasoning", " two")]
    assert splitter.feed("think>\n\nok") == [("content", "ok")]


def test_think_tags_decisions() -> None:
    budgets = {"none": 0, "minimal": 8, "low": 16, "medium": 32, "high": 64, "xhigh": None}
    assert THINK.decide("low", None, budgets).budget == 16
    assert THINK.decide("xhigh", None, budgets).budget is None
    off = THINK.decide("none", None, budgets)
    assert not off.on and off.template_kwargs == {"enable_thinking": False}
    assert not THINK.decide("high", False, budgets).on  # the switch wins over the effort
    forced = THINK.decide("none", True, budgets)
    assert forced.on and forced.budget == 32 and forced.effort == "medium"
    always = ThinkTags(hybrid=False, opens_in_prompt=True)
    closed = always.decide("none", None, budgets)
    assert closed.on and closed.budget == 0 and closed.template_kwargs == {}
    deepseek = ThinkTags(thinking_kwarg="thinking")
    assert deepseek.decide("low", None, budgets).template_kwargs == {"thinking": True}


@pytest.mark.parametrize("effort,native", [("minimal", "low"), ("low", "low"), ("medium", "medium"),
                                           ("high", "high"), ("xhigh", "high")])
def test_harmony_maps_efforts_to_its_native_levels(effort: str, native: str) -> None:
    thinking = HARMONY.decide(effort, None, {})
    assert thinking.template_kwargs == {"reasoning_effort": native} and thinking.budget is None


def test_harmony_none_closes_the_analysis_channel_at_once() -> None:
    thinking = HARMONY.decide("none", None, {})
    assert thinking.budget == 0 and thinking.effort == "none"
    assert HARMONY.closing(State.LEADING) == (
        "<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>")


def test_think_tags_closing_text() -> None:
    assert THINK.closing(State.REASONING) == "\n</think>\n\n"
    assert THINK.closing(State.LEADING) == "<think>\n\n</think>\n\n"
    assert THINK.closing(State.CONTENT) == ""


def test_styles_are_built_by_name_with_checked_options() -> None:
    assert isinstance(build_style("none", {}), NoReasoning)
    assert build_style("think-tags", {"start": "[THINK]", "end": "[/THINK]"}).end == "[/THINK]"
    with pytest.raises(ValueError, match="unknown reasoning style 'magic'"):
        build_style("magic", {})
    with pytest.raises(ValueError, match="no option"):
        build_style("think-tags", {"colour": "blue"})


@pytest.mark.parametrize("kwargs,param", [
    ({"chat_template": "{{ 7*7 }}"}, "chat_template_kwargs.chat_template"),
    ({"tokenize": True}, "chat_template_kwargs.tokenize"),
    ({"add_generation_prompt": False}, "chat_template_kwargs.add_generation_prompt"),
    ({"reasoning_effort": "high"}, "chat_template_kwargs.reasoning_effort"),
    ({"thinking": True, "enable_thinking": False}, "chat_template_kwargs.thinking"),
    ({"thinking": "yes"}, "chat_template_kwargs.thinking"),
    ({"extra": [1, 2]}, "chat_template_kwargs.extra"),
    ({"extra": float("nan")}, "chat_template_kwargs.extra"),
    ({"extra": float("-inf")}, "chat_template_kwargs.extra"),
])
def test_template_kwargs_allow_list(kwargs: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan_reasoning(THINK, {}, ("extra",), {"chat_template_kwargs": kwargs}, {})
    assert caught.value.param == param


def test_allowed_kwargs_reach_the_template_with_the_family_switch() -> None:
    plan, kwargs = plan_reasoning(THINK, {}, ("extra",), {"chat_template_kwargs": {"thinking": True, "extra": "x"}},
                                  {})
    assert kwargs == {"thinking": True, "extra": "x", "enable_thinking": True}
    assert plan.describe() == "style=think-tags; thinking=on; effort=medium; budget=4096"


def test_library_defaults_set_the_effort_and_separation() -> None:
    plan, _ = plan_reasoning(THINK, {"low": 5}, (), {}, {"reasoning_effort": "low", "separate_reasoning": False})
    assert plan.thinking.budget == 5 and not plan.separate


# --- the two-phase budget run, over a scripted engine -------------------------------------

class ScriptedEngine:
    """Plays one scripted token list per generate() call; records each request."""

    capabilities = Capabilities(context_length=4096, parallel=1)

    def __init__(self, *scripts: tuple[list[str], str]) -> None:
        self.scripts = list(scripts)
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        tokens, finish = self.scripts.pop(0)
        room = self.capabilities.context_length - 10  # the prompt is 10 tokens
        limit = min(request.sampling.max_tokens or room, room)
        tokens = tokens[:limit]
        finish = "length" if len(tokens) == limit else finish
        for token in tokens:
            yield Delta(content=token)
        yield Delta(finish_reason=finish, usage=Usage(prompt_tokens=10, completion_tokens=len(tokens)))


def run(engine: ScriptedEngine, max_tokens: int | None, **params: object) -> tuple[str, str, Delta]:
    style = ThinkTags(opens_in_prompt=True)
    plan, kwargs = plan_reasoning(style, {"minimal": 3, "low": 45, "high": 5000}, (), params, {})
    request = GenerationRequest(messages=[{"role": "user", "content": "q"}],
                                sampling=Sampling(0.0, 1.0, 0, 0.0, 1.0, max_tokens), chat_template_kwargs=kwargs)

    async def collect() -> list[Delta]:
        return [d async for d in ReasoningRun(engine, request, plan).deltas()]  # type: ignore[arg-type]

    deltas = asyncio.run(collect())
    return "".join(d.reasoning for d in deltas), "".join(d.content for d in deltas), deltas[-1]


def test_a_spent_budget_is_closed_and_the_answer_continues() -> None:
    engine = ScriptedEngine((["a", " b", " c", " d", " e"], "stop"), (["Yes", "."], "stop"))
    reasoning, content, last = run(engine, 50, reasoning_effort="minimal")
    assert (reasoning, content) == ("a b c", "Yes.")
    first, second = engine.requests
    assert first.sampling.max_tokens == 3 and first.continue_message is None
    assert second.continue_message == {"role": "assistant", "content": "a b c\n</think>\n\n"}
    assert second.sampling.max_tokens == 47
    assert last.finish_reason == "stop"
    assert last.usage == Usage(prompt_tokens=10, completion_tokens=5, reasoning_tokens=3)


def test_inline_output_carries_the_opened_and_the_forced_markers() -> None:
    engine = ScriptedEngine((["a", " b", " c", " d"], "stop"), (["Yes"], "stop"))
    reasoning, content, _ = run(engine, 50, reasoning_effort="minimal", separate_reasoning=False)
    assert reasoning == "" and content == "<think>\na b c\n</think>\n\nYes"


def test_thinking_that_ends_within_the_budget_needs_no_second_phase() -> None:
    engine = ScriptedEngine((["ok", "</think>", "\n\n", "Fine"], "stop"))
    reasoning, content, last = run(engine, 50, reasoning_effort="low")
    assert (reasoning, content) == ("ok", "Fine") and len(engine.requests) == 1
    assert last.usage.reasoning_tokens == 2  # "ok" and the marker


def test_max_tokens_below_the_budget_ends_mid_thought() -> None:
    engine = ScriptedEngine((["a", " b", " c", " d", " e"], "stop"))
    reasoning, content, last = run(engine, 2, reasoning_effort="low")
    assert (reasoning, content, last.finish_reason) == ("a b", "", "length") and len(engine.requests) == 1


def test_max_tokens_spent_by_the_budget_leaves_a_closed_but_empty_answer() -> None:
    engine = ScriptedEngine((["a", " b", " c"], "stop"), ([], "stop"))
    reasoning, content, last = run(engine, 4, reasoning_effort="minimal")
    assert engine.requests[1].sampling.max_tokens == 1
    assert reasoning == "a b c" and content == ""


def test_reasoning_field_setting_picks_the_names() -> None:
    from inferd.chat.service import reasoning_names
    from inferd.settings import load_settings

    assert reasoning_names(load_settings({}).reasoning_field) == ("reasoning_content", "reasoning")
    assert reasoning_names(load_settings({"INFERD_REASONING_FIELD": "reasoning"}).reasoning_field) == ("reasoning",)
    with pytest.raises(ValueError, match="INFERD_REASONING_FIELD must be one of"):
        load_settings({"INFERD_REASONING_FIELD": "thoughts"})


def test_a_budget_the_context_cannot_hold_never_binds() -> None:
    engine = ScriptedEngine((["a", " b", "</think>", "ok"], "stop"))
    run(engine, None, reasoning_effort="high")  # budget 5000 > context 4096, no max_tokens
    assert len(engine.requests) == 1 and engine.requests[0].sampling.max_tokens is None


def test_harmony_continues_with_its_channels_as_fields() -> None:
    thinking = HARMONY.decide("medium", None, {})
    assert HARMONY.continuation(thinking, "hm", "") == {"role": "assistant", "reasoning_content": "hm", "content": ""}
    assert HARMONY.continuation(thinking, "", "")["reasoning_content"] == "\n"  # budget 0: an empty analysis


def test_think_tags_continuation_starts_after_what_the_prompt_opened() -> None:
    budgets = {"medium": 9}
    opened, plain = ThinkTags(opens_in_prompt=True), ThinkTags()
    assert opened.continuation(opened.decide("medium", None, budgets), "hm", "") == {
        "role": "assistant", "content": "hm\n</think>\n\n"}
    assert plain.continuation(plain.decide("medium", None, budgets), "hm", "Ye") == {
        "role": "assistant", "content": "<think>\nhm\n</think>\n\nYe"}
    assert plain.continuation(plain.decide("medium", None, budgets), None, "Plain") == {
        "role": "assistant", "content": "Plain"}


def test_inline_output_has_one_pair_of_markers_when_the_engine_echoes_the_opening() -> None:
    engine = ScriptedEngine((["<think>", "\n", "a", " b"], "stop"), (["Yes"], "stop"))
    reasoning, content, last = run(engine, 50, reasoning_effort="minimal", separate_reasoning=False)
    assert content == "<think>\na\n</think>\n\nYes" and last.usage.reasoning_tokens == 3  # budget 3


def test_an_empty_thinking_block_counts_no_reasoning_tokens() -> None:
    engine = ScriptedEngine((["<think>", "\n\n", "</think>", "\n\n", "Hi"], "stop"))
    reasoning, content, last = run(engine, 50, reasoning_effort="none")
    assert (reasoning, content, last.usage.reasoning_tokens) == ("", "Hi", 0)


def test_a_context_that_ran_out_in_phase_one_is_not_continued() -> None:
    engine = ScriptedEngine((["a"] * 40, "stop"))
    engine.capabilities = Capabilities(context_length=48, parallel=1)
    reasoning, content, last = run(engine, None, reasoning_effort="low")  # budget 45 < 48, but 10 + 45 > 48
    assert len(engine.requests) == 1 and last.finish_reason == "length" and last.usage.completion_tokens == 38
    engine = ScriptedEngine((["a"] * 40, "stop"), (["ok"], "stop"))
    engine.capabilities = Capabilities(context_length=48, parallel=1)
    run(engine, None, reasoning_effort="minimal")  # budget 3: 10 + 3 used, room for the answer
    assert len(engine.requests) == 2
