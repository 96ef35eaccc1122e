"""The OpenAI extras of one request, decided once: what the engine is asked for, what inferd applies above it.

Two ways to serve tools and ``response_format``, chosen by the engine's flavour:

* inferd's own (llama.cpp, vLLM, SGLang): the model's tool policy renders the tools through the chat
  template, a grammar constrains forced calls and JSON output, and inferd parses the calls;
* native (an upstream OpenAI-compatible server or another inferd): the fields go to the upstream as the
  client sent them, and its ``tool_calls`` come back as they are.

Either way ``stop`` is applied by inferd too, and ``n`` is a fan-out above the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..engines.base import Constraint, GenerationRequest
from ..errors import InvalidRequest
from ..library import ModelSpec
from .choices import ChoicePlan
from .structured import response_constraint
from .tools import ToolPlan, plan_tools

NATIVE_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "response_format")


@dataclass(frozen=True)
class Extras:
    n: int = 1
    stops: tuple[str, ...] = ()
    logprobs: int | None = None
    constraint: Constraint | None = None
    tools: ToolPlan | None = None
    native: dict[str, Any] | None = None

    def request(self, base: GenerationRequest) -> GenerationRequest:
        """The engine request with the extras set (messages rewritten where the tool policy writes them)."""
        tools = self.tools
        return replace(base, stop=self.stops, logprobs=self.logprobs, constraint=self.constraint,
                       messages=tools.messages(base.messages) if tools else base.messages,
                       template_tools=tools.template_tools() if tools else (), native=self.native or {})

    def choices(self) -> ChoicePlan:
        tools = self.tools
        return ChoicePlan(n=self.n, stops=self.stops, parser=tools.parser if tools else (lambda: None))


def plan_extras(spec: ModelSpec, params: dict[str, Any], native: bool) -> Extras:
    """``params``: what the client sent that the model honours; ``native``: the engine handles tools and
    response_format itself."""
    logprobs = params.get("top_logprobs", 0) if params.get("logprobs") else None
    common = dict(n=params.get("n", 1), stops=params.get("stop", ()), logprobs=logprobs)
    if native:
        return Extras(**common, native={k: params[k] for k in NATIVE_FIELDS if k in params})
    tools = plan_tools(params, spec.tool_policy)
    constraint = response_constraint(params.get("response_format"))
    if constraint is not None and tools is not None and tools.active:
        raise InvalidRequest("'response_format' cannot be combined with 'tools' (unless tool_choice is 'none') on "
                             f"model '{spec.id}': send one of them.", param="response_format")
    return Extras(**common, constraint=tools.constraint if tools and tools.constraint else constraint, tools=tools)
