"""The context check every engine inferd runs makes before generating: prompt + max_tokens must fit.

Counting a prompt exactly costs a request to the engine (render the chat template, tokenize), so
a cheap upper bound comes first: the template's own tokens (measured once) plus, for each
message, its bytes (a byte-level tokenizer never makes more tokens than bytes) and a few tokens
of slack. Only when that bound does not fit, or the messages hold images, is the prompt counted.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from ..errors import ContextLengthExceeded

# messages, chat_template_kwargs -> prompt tokens (what the engine would feed the model)
Count = Callable[[list[dict[str, Any]], dict[str, Any]], Awaitable[int]]
SLACK_PER_MESSAGE = 4  # a word-boundary token per message, and template kwargs that add a marker
TOOLS_PREAMBLE = 512  # bytes: an upper bound on what a template writes around tool definitions


class ContextFit:
    def __init__(self, context_length: int, count_template: Count, count_exact: Count) -> None:
        self._limit = context_length
        self._count_template = count_template  # the bare template (empty messages): measures overhead
        self._count_exact = count_exact  # the real messages, images included
        self._overhead: tuple[int, int] | None = None

    async def check(self, messages: list[dict[str, Any]], max_tokens: int, kwargs: dict[str, Any]) -> None:
        """ContextLengthExceeded (400, param ``messages``) if the prompt and ``max_tokens`` do not fit."""
        base, per_message = await self._template_overhead()
        text_bytes = sum(len(_text(m).encode()) for m in messages)
        if kwargs.get("tools"):  # the definitions, and the template's words around them
            text_bytes += len(json.dumps(kwargs["tools"]).encode()) + TOOLS_PREAMBLE
        media = any(isinstance(m.get("content"), list) for m in messages)
        if not media and base + per_message * len(messages) + text_bytes + max_tokens <= self._limit:
            return
        prompt_tokens = await self._count_exact(messages, kwargs)
        if prompt_tokens + max_tokens > self._limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self._limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
                f"max_tokens). Reduce the length of the messages or max_tokens.", param="messages")

    async def _template_overhead(self) -> tuple[int, int]:
        if self._overhead is None:
            one = await self._count_template([{"role": "user", "content": ""}], {})
            two = await self._count_template([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}], {})
            self._overhead = (one, max(two - one, 1) + SLACK_PER_MESSAGE)
        return self._overhead


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""
