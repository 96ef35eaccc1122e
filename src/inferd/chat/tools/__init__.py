"""Tools: ``tools``, ``tool_choice`` and ``parallel_tool_calls`` applied through the model's tool policy.

``none``: the tools are not shown to the model (earlier calls and results in the history still are).
``auto``: the tools are shown; the policy's parser turns calls the model writes into ``tool_calls``.
``required`` / a named function: as ``auto``, and a grammar admits nothing but calls (of that function),
so even a small model returns a valid call whose arguments match the tool's JSON schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...engines.base import Constraint
from ...errors import InvalidRequest
from ..grammar import Grammar, UnsupportedSchema
from .parser import ToolCallParser
from .policies import ToolPolicy


@dataclass(frozen=True)
class ToolPlan:
    tools: list[dict[str, Any]]
    choice: str | dict[str, Any]
    parallel: bool
    policy: ToolPolicy
    constraint: Constraint | None = None

    @property
    def active(self) -> bool:
        return self.choice != "none"

    @property
    def forced(self) -> str | None:
        return self.choice["function"]["name"] if isinstance(self.choice, dict) else None

    def template_tools(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.tools) if self.active and self.policy.template_renders else ()

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The history the template can render, with inferd's tool instructions where it writes them."""
        messages = self.policy.history(messages)
        text = self.policy.instructions(self.tools) if self.active else ""
        if not text:
            return messages
        if messages and messages[0]["role"] == "system" and isinstance(messages[0].get("content"), str):
            return [{**messages[0], "content": messages[0]["content"] + "\n\n" + text}, *messages[1:]]
        return [{"role": "system", "content": text}, *messages]

    def parser(self) -> ToolCallParser | None:
        return self.policy.parser(self.tools, self.parallel) if self.active else None


def plan_tools(params: dict[str, Any], policy: ToolPolicy) -> ToolPlan | None:
    """The plan for the request's tools (None without tools); every tool's schema is checked here."""
    tools = params.get("tools")
    if not tools:
        return None
    choice = params.get("tool_choice", "auto")
    parallel = bool(params.get("parallel_tool_calls", True))
    for i, tool in enumerate(tools):
        _grammar(policy, [tool], None, False, f"tools[{i}].function.parameters")
    forced = choice["function"]["name"] if isinstance(choice, dict) else None
    constraint = None
    if choice == "required" or forced is not None:
        constraint = Constraint(grammar=_grammar(policy, tools, forced, parallel, "tools"))
    return ToolPlan(tools=tools, choice=choice, parallel=parallel, policy=policy, constraint=constraint)


def _grammar(policy: ToolPolicy, tools: list[dict[str, Any]], forced: str | None, parallel: bool, param: str) -> str:
    try:
        return policy.grammar(tools, forced, parallel, Grammar())
    except UnsupportedSchema as exc:
        raise InvalidRequest(str(exc), param=f"{param}.{exc.path}" if exc.path else param,
                             code="unsupported_schema") from None
    except RecursionError:
        raise InvalidRequest("The tool's JSON schema nests too deeply.", param=param,
                             code="unsupported_schema") from None
