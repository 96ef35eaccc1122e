"""The OpenAI wire objects a completion is made of: stream chunks and the final message body."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..engines.base import Delta, TokenLogprob, ToolCallDelta, Usage


@dataclass(frozen=True)
class Envelope:
    """What every chunk of one completion shares."""

    model: str
    id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0,
              logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage_body(usage)}

    def completion(self, content: str, finish_reason: str, usage: Usage,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
        message = {"role": "assistant", "content": content, **(extra or {})}
        return self.completion_of([{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
                                  usage)

    def completion_of(self, choices: list[dict[str, Any]], usage: Usage) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": choices, "usage": usage_body(usage)}

    def delta_chunks(self, delta: Delta, reasoning_names: tuple[str, ...]) -> list[dict[str, Any]]:
        """The stream chunks of one delta (reasoning, then content and logprobs, then tool calls)."""
        chunks = []
        if delta.reasoning and reasoning_names:
            chunks.append(self.chunk(dict.fromkeys(reasoning_names, delta.reasoning), index=delta.index))
        if delta.content or delta.logprobs:
            chunks.append(self.chunk({"content": delta.content}, index=delta.index,
                                     logprobs=logprobs_body(delta.logprobs) if delta.logprobs else None))
        if delta.tool_calls:
            chunks.append(self.chunk({"tool_calls": [tool_call_delta(c) for c in delta.tool_calls]},
                                     index=delta.index))
        return chunks


def usage_body(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens, "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}


def logprobs_body(tokens: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> dict[str, Any]:
    return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes),
                         "top_logprobs": [{"token": tok, "logprob": lp, "bytes": list(b)} for tok, lp, b in t.top]}
                        for t in tokens], "refusal": None}


def tool_call_delta(call: ToolCallDelta) -> dict[str, Any]:
    body: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        body.update(id=call.id, type="function")
    function: dict[str, Any] = {"arguments": call.arguments}
    if call.name is not None:
        function["name"] = call.name
    body["function"] = function
    return body


class ChoiceBodies:
    """The non-streamed ``choices``: each choice's deltas gathered into one message."""

    def __init__(self, reasoning_names: tuple[str, ...], logprobs: bool) -> None:
        self._names = reasoning_names
        self._logprobs = logprobs
        self._parts: dict[int, dict[str, Any]] = {}

    def add(self, delta: Delta) -> None:
        part = self._parts.setdefault(delta.index, {"content": [], "reasoning": [], "logprobs": [], "calls": {},
                                                    "finish": "stop"})
        part["content"].append(delta.content)
        part["reasoning"].append(delta.reasoning)
        part["logprobs"].extend(delta.logprobs)
        for call in delta.tool_calls:
            whole = part["calls"].setdefault(call.index, {"id": None, "name": "", "arguments": []})
            whole["id"] = call.id or whole["id"]
            whole["name"] = call.name or whole["name"]
            whole["arguments"].append(call.arguments)
        if delta.finish_reason is not None:
            part["finish"] = delta.finish_reason

    def choices(self) -> list[dict[str, Any]]:
        return [self._choice(i, self._parts[i]) for i in sorted(self._parts)]

    def _choice(self, index: int, part: dict[str, Any]) -> dict[str, Any]:
        thought = "".join(part["reasoning"]) or None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(part["content"]),
                                   **dict.fromkeys(self._names, thought)}
        if part["calls"]:
            message["content"] = message["content"] or None
            message["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}
                                     for _, c in sorted(part["calls"].items())]
        return {"index": index, "message": message,
                "logprobs": logprobs_body(part["logprobs"]) if self._logprobs else None,
                "finish_reason": part["finish"]}
