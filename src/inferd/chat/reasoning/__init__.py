"""Reasoning controls: decide thinking on/off, effort and budget per request, then parse the output.

``plan_reasoning`` turns ``reasoning_effort``, ``separate_reasoning`` and
``chat_template_kwargs`` into a ``ReasoningPlan`` through the model's style; ``ReasoningRun``
(``run.py``) applies it to the engine's output stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidRequest
from .styles import DEFAULT_BUDGETS, FALLBACK_EFFORT, ReasoningStyle, Thinking

ALWAYS_ALLOWED_KWARGS = ("thinking",)  # the seed's switch; a style adds its own, the library others


@dataclass(frozen=True)
class ReasoningPlan:
    style: ReasoningStyle
    thinking: Thinking
    separate: bool  # reasoning in its own field (True) or inline in content with its markers

    def describe(self) -> str:
        """The X-Inferd-Reasoning header: what inferd did with the controls."""
        if not self.style.reasons:
            return ""
        budget = "unlimited" if self.thinking.budget is None else str(self.thinking.budget)
        parts = [f"style={self.style.name}", f"thinking={'on' if self.thinking.on else 'off'}",
                 f"effort={self.thinking.effort}"]
        if self.thinking.on:
            parts.append(f"budget={budget}")
        return "; ".join(parts)


def plan_reasoning(style: ReasoningStyle, budgets: dict[str, int | None], allowed_kwargs: tuple[str, ...],
                   params: dict[str, Any], defaults: dict[str, Any]) -> tuple[ReasoningPlan, dict[str, Any]]:
    """The plan, and the kwargs the chat template renders with (the client's, then the style's)."""
    given = _checked_kwargs(params.get("chat_template_kwargs") or {}, style, allowed_kwargs)
    effort = params.get("reasoning_effort") or defaults.get("reasoning_effort") or FALLBACK_EFFORT
    separate = params.get("separate_reasoning", defaults.get("separate_reasoning", True))
    thinking = style.decide(effort, _switch(given, style), {**DEFAULT_BUDGETS, **budgets})
    kwargs = {**{k: v for k, v in given.items() if v is not None}, **thinking.template_kwargs}
    return ReasoningPlan(style, thinking, bool(separate)), kwargs


def _checked_kwargs(given: dict[str, Any], style: ReasoningStyle, allowed: tuple[str, ...]) -> dict[str, Any]:
    names = set(ALWAYS_ALLOWED_KWARGS) | set(allowed) | ({style.thinking_kwarg} - {None})
    for name, value in given.items():
        param = f"chat_template_kwargs.{name}"
        if name not in names:
            raise InvalidRequest(
                f"'{param}' is not an allowed chat template variable for this model (allowed: "
                f"{', '.join(sorted(names))}).", param=param, code="template_kwarg_not_allowed")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidRequest(f"'{param}' must be a string, number, boolean or null.", param=param,
                                 code="invalid_type")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(f"'{param}' must be a finite number, got {value}.", param=param)
    return given


def _switch(given: dict[str, Any], style: ReasoningStyle) -> bool | None:
    """The explicit on/off switch: the seed's ``thinking`` or the family's own kwarg, if given."""
    values = {name: given[name] for name in ("thinking", style.thinking_kwarg)
              if name is not None and given.get(name) is not None}
    for name, value in values.items():
        if not isinstance(value, bool):
            raise InvalidRequest(f"'chat_template_kwargs.{name}' must be a boolean.",
                                 param=f"chat_template_kwargs.{name}", code="invalid_type")
    if len(set(values.values())) > 1:
        raise InvalidRequest("'chat_template_kwargs.thinking' and "
                             f"'chat_template_kwargs.{style.thinking_kwarg}' disagree; send one of them.",
                             param="chat_template_kwargs.thinking")
    return next(iter(values.values()), None)
