"""Reasoning styles: how a model family thinks, and how inferd switches, bounds and parses it.

A Model Library entry names its style (``[models.reasoning] style = "think-tags"``); the generic
layer only talks to the ``ReasoningStyle`` interface. To add a family:

* its reasoning sits between two markers (``[THINK]``/``[/THINK]``, ...) and a template kwarg
  switches it (``thinking`` in DeepSeek V3.1 templates): no code, configure ``think-tags`` with
  ``start``, ``end`` and ``thinking_kwarg``;
* anything else: subclass ``ReasoningStyle`` (decide / splitter / opening / closing) and add it
  to ``STYLES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .splitter import MarkerSplitter, PlainSplitter, State

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# reasoning tokens per effort for families without a native effort; None: unlimited
DEFAULT_BUDGETS: dict[str, int | None] = {
    "none": 0, "minimal": 256, "low": 1024, "medium": 4096, "high": 16384, "xhigh": None}
FALLBACK_EFFORT = "medium"  # the level used when a switch turns thinking on but the effort says none


@dataclass(frozen=True)
class Thinking:
    """What a style decided for one request."""

    on: bool
    budget: int | None  # reasoning tokens inferd lets the model write; None: unlimited
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    effort: str | None = None  # the effort level applied (the family's own word where it has one)


class ReasoningStyle:
    name: ClassVar[str]
    reasons: ClassVar[bool] = True
    thinking_kwarg: str | None = None  # the family's own template switch, set from ``thinking``

    def continuation(self, thinking: Thinking, reasoning: str | None, content: str) -> dict[str, Any]:
        """The unfinished assistant turn the engine continues; ``reasoning`` is None when the model
        did not reason (a budget spent in a plain answer)."""
        return {"role": "assistant", "content": content}

    def decide(self, effort: str, switch: bool | None, budgets: dict[str, int | None]) -> Thinking:
        raise NotImplementedError

    def splitter(self, thinking: Thinking) -> MarkerSplitter | PlainSplitter:
        raise NotImplementedError

    def opening(self, thinking: Thinking) -> str:
        """The marker the prompt itself opened (inline output starts with it)."""
        return ""

    def closing(self, phase: State) -> str:
        """What inferd writes into the sequence to end the thinking when its budget is spent."""
        return ""

    @property
    def inline_markers(self) -> tuple[str, str]:
        """What surrounds the reasoning in content when it is not separated."""
        return ("", "")

    def honoured_efforts(self, budgets: dict[str, int | None]) -> dict[str, str]:
        return {}


class NoReasoning(ReasoningStyle):
    name = "none"
    reasons = False

    def decide(self, effort: str, switch: bool | None, budgets: dict[str, int | None]) -> Thinking:
        return Thinking(on=False, budget=None)

    def splitter(self, thinking: Thinking) -> PlainSplitter:
        return PlainSplitter()


@dataclass
class ThinkTags(ReasoningStyle):
    """``<think>...</think>`` (Qwen3, QwQ, DeepSeek-R1 distills); hybrid or always on."""

    name: ClassVar[str] = "think-tags"
    start: str = "<think>"
    end: str = "</think>"
    hybrid: bool = True  # a template kwarg switches thinking; else it is always on
    thinking_kwarg: str | None = "enable_thinking"
    opens_in_prompt: bool = False  # the template writes the start marker when thinking is on

    def decide(self, effort: str, switch: bool | None, budgets: dict[str, int | None]) -> Thinking:
        on = switch if switch is not None else effort != "none"
        level = effort if effort != "none" else FALLBACK_EFFORT
        kwargs = {self.thinking_kwarg: on} if self.hybrid and self.thinking_kwarg else {}
        if not on:  # hybrid: switched off in the template; always on: closed before it starts
            return Thinking(on=not self.hybrid, budget=None if self.hybrid else 0, template_kwargs=kwargs,
                            effort="none")
        return Thinking(on=True, budget=budgets[level], template_kwargs=kwargs, effort=level)

    def splitter(self, thinking: Thinking) -> MarkerSplitter:
        return MarkerSplitter(self.start, self.end, opened=bool(self.opening(thinking)))

    def opening(self, thinking: Thinking) -> str:
        return self.start + "\n" if thinking.on and self.opens_in_prompt else ""

    def closing(self, phase: State) -> str:
        if phase is State.REASONING:
            return "\n" + self.end + "\n\n"
        if phase is State.LEADING:
            return self.start + "\n\n" + self.end + "\n\n"
        return ""

    @property
    def inline_markers(self) -> tuple[str, str]:
        return (self.start + "\n", "\n" + self.end + "\n\n")

    def continuation(self, thinking: Thinking, reasoning: str | None, content: str) -> dict[str, Any]:
        """The turn so far, written the way the model writes it; the prompt's own opening marker
        (``opens_in_prompt``) comes from the template, so the text starts after it."""
        if reasoning is None and not self.opening(thinking):
            return {"role": "assistant", "content": content}
        head = "" if self.opening(thinking) else self.start + "\n"
        reasoning = reasoning or ""
        return {"role": "assistant", "content": f"{head}{reasoning}\n{self.end}\n\n{content}"}

    def honoured_efforts(self, budgets: dict[str, int | None]) -> dict[str, str]:
        described = {e: "unlimited" if budgets[e] is None else f"{budgets[e]} reasoning tokens" for e in EFFORTS}
        described["none"] = "thinking off" if self.hybrid else "thinking closed at once (budget 0)"
        return described


HARMONY_EFFORTS = {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high",
                   "xhigh": "high"}


@dataclass
class Harmony(ReasoningStyle):
    """gpt-oss: an ``analysis`` channel, then ``final``; effort is native (``Reasoning: low`` ...)."""

    name: ClassVar[str] = "harmony"
    start: ClassVar[str] = "<|channel|>analysis<|message|>"
    end: ClassVar[str] = "<|end|>"
    headers: ClassVar[tuple[str, ...]] = ("<|start|>assistant<|channel|>final<|message|>",
                                          "<|channel|>final<|message|>")
    effort_kwarg: str = "reasoning_effort"  # the template variable the system message reads

    def decide(self, effort: str, switch: bool | None, budgets: dict[str, int | None]) -> Thinking:
        on = switch if switch is not None else effort != "none"
        native = HARMONY_EFFORTS[effort if effort != "none" else FALLBACK_EFFORT] if on else "low"
        # gpt-oss always reasons: "off" means the analysis channel is closed before it starts
        return Thinking(on=True, budget=None if on else 0, template_kwargs={self.effort_kwarg: native},
                        effort=native if on else "none")

    def continuation(self, thinking: Thinking, reasoning: str | None, content: str) -> dict[str, Any]:
        # chat templates of this family render the two channels from these fields themselves;
        # llama.cpp continues a turn only when one of them holds text, so an empty analysis is a newline
        return {"role": "assistant", "reasoning_content": reasoning or "\n", "content": content}

    def splitter(self, thinking: Thinking) -> MarkerSplitter:
        return MarkerSplitter(self.start, self.end, opened=False, headers=self.headers)

    def closing(self, phase: State) -> str:
        if phase is State.REASONING:
            return self.end + self.headers[0]
        if phase is State.LEADING:
            return self.start + self.end + self.headers[0]
        return ""

    @property
    def inline_markers(self) -> tuple[str, str]:
        return (self.start, self.end + self.headers[0])

    def honoured_efforts(self, budgets: dict[str, int | None]) -> dict[str, str]:
        described = {e: f"Reasoning: {HARMONY_EFFORTS[e]}" for e in EFFORTS}
        described["none"] = "analysis closed at once (budget 0)"
        return described


STYLES: dict[str, type[ReasoningStyle]] = {"none": NoReasoning, "think-tags": ThinkTags, "harmony": Harmony}


def build_style(name: str, options: dict[str, Any]) -> ReasoningStyle:
    """A style from its library name and options; ValueError names what is wrong."""
    if name not in STYLES:
        raise ValueError(f"unknown reasoning style '{name}' (known: {', '.join(STYLES)})")
    try:
        return STYLES[name](**options)
    except TypeError:
        raise ValueError(f"reasoning style '{name}' has no option(s) {sorted(options)}") from None
