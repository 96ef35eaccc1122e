"""Tool-call policies: how a model family is told about tools, how it writes a call, how inferd reads it.

A Model Library entry names its policy (``[models.tools] format = "hermes"``); the generic layer only
talks to ``ToolPolicy``. To add a family, subclass ``ToolPolicy`` (or configure ``TaggedJson`` with its
markers) and register it in ``POLICIES``.

* ``hermes``: Qwen2.5, Qwen3, Hermes 2/3 and others trained on ``<tool_call>{"name", "arguments"}</tool_call>``;
  the model's chat template renders the tools, the calls and the results. Small Qwen models often write
  the call as bare JSON without the tags: that is read as a call too, when it is the whole message.
* ``json``: models whose template knows nothing of tools (base models, Gemma 3): inferd writes the
  tools and the calling convention into the system message and the history as plain text, and the
  model answers with bare JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from ..grammar import Grammar, literal
from .parser import ToolCallParser

MAX_PARALLEL_CALLS = 8  # calls one grammar-constrained turn may hold


class ToolPolicy:
    name: ClassVar[str]
    template_renders: bool = True  # the chat template renders tools, assistant tool_calls and tool results

    def grammar(self, tools: list[dict[str, Any]], forced: str | None, parallel: bool, g: Grammar) -> str:
        """A grammar (root rule included) that admits only calls: of ``forced``, or of any tool."""
        raise NotImplementedError

    def parser(self, tools: list[dict[str, Any]], parallel: bool) -> ToolCallParser:
        raise NotImplementedError

    def instructions(self, tools: list[dict[str, Any]]) -> str:
        """What inferd writes into the system message when the template does not render tools."""
        return ""

    def history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation as the template can render it (calls and results as text where it cannot)."""
        return messages


@dataclass
class TaggedJson(ToolPolicy):
    """Calls as ``{"name": ..., "arguments": {...}}`` between ``start`` and ``end`` markers (or bare)."""

    name: ClassVar[str] = "tagged-json"
    start: str = "<tool_call>\n"
    end: str = "\n</tool_call>"
    bare_json: bool = True  # a message that is only a call's JSON is a call
    template_renders: bool = True

    def parser(self, tools: list[dict[str, Any]], parallel: bool) -> ToolCallParser:
        names = {t["function"]["name"] for t in tools}
        return ToolCallParser(names, self.start.strip(), self.end.strip(), self.bare_json, parallel)

    def grammar(self, tools: list[dict[str, Any]], forced: str | None, parallel: bool, g: Grammar) -> str:
        calls = []
        for tool in tools:
            function = tool["function"]
            if forced is not None and function["name"] != forced:
                continue
            arguments = g.schema(function["parameters"], function["parameters"], "", f"args-{function['name']}")
            head = literal(self.start + '{"name": ' + json.dumps(function["name"]) + ', "arguments": ')
            calls.append(g.add(f"call-{function['name']}", f'{head} {arguments} {literal("}" + self.end)}'))
        call = g.add("call", " | ".join(calls))
        more = f' ( {literal(chr(10))} {call} ){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel and forced is None else ""
        g.rules["root"] = f"{call}{more}"
        return g.text()

    def instructions(self, tools: list[dict[str, Any]]) -> str:
        if self.template_renders:
            return ""
        listed = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
        return ("You can call these functions:\n" + listed + "\n\nTo call one, answer with only a JSON object "
                '{"name": <function name>, "arguments": <arguments object>}' +
                (f" between {self.start.strip()} and {self.end.strip()}" if self.start.strip() else "") +
                ". Function results come back in a later message.")

    def history(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.template_renders:
            return messages
        return [_as_text(m, self.start, self.end) for m in messages]


def _as_text(message: dict[str, Any], start: str, end: str) -> dict[str, Any]:
    if message["role"] == "assistant" and message.get("tool_calls"):
        calls = "\n".join(start + json.dumps({"name": c["function"]["name"],
                                              "arguments": json.loads(c["function"].get("arguments") or "{}")},
                                             ensure_ascii=False) + end for c in message["tool_calls"])
        text = (message.get("content") or "") if isinstance(message.get("content"), str) else ""
        return {"role": "assistant", "content": (text + "\n" if text else "") + calls}
    if message["role"] == "tool":
        return {"role": "user", "content": f"Function result ({message.get('tool_call_id', '')}): "
                                           f"{message.get('content') or ''}"}
    return message


class Hermes(TaggedJson):
    name: ClassVar[str] = "hermes"


@dataclass
class PlainJson(TaggedJson):
    name: ClassVar[str] = "json"
    start: str = ""
    end: str = ""
    template_renders: bool = False


POLICIES: dict[str, type[ToolPolicy]] = {"hermes": Hermes, "json": PlainJson}


def build_policy(name: str, options: dict[str, Any]) -> ToolPolicy:
    """A policy from its library name and options; ValueError names what is wrong."""
    if name not in POLICIES:
        raise ValueError(f"unknown tool-call format '{name}' (known: {', '.join(POLICIES)})")
    try:
        return POLICIES[name](**options)
    except TypeError:
        raise ValueError(f"tool-call format '{name}' has no option(s) {sorted(options)}") from None
