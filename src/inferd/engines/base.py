"""The engine seam: one small protocol every backend implements.

``generate`` yields ``Delta`` objects; closing the iterator (``aclose``) aborts the
generation and frees its slot. Errors that belong to the request (context too long,
engine busy) are raised as ``APIError`` before the first delta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    max_tokens: int | None  # None: until the context is full


@dataclass(frozen=True)
class GenerationRequest:
    messages: list[dict[str, Any]]
    sampling: Sampling
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    # an unfinished assistant turn the engine continues (appended after ``messages``): how inferd
    # closes a thinking section whose budget is spent and lets the model answer
    continue_message: dict[str, Any] | None = None
    # completion tokens the prompt must leave room for (the client's max_tokens), checked before
    # generating; a phase of a longer generation may stop earlier (sampling.max_tokens)
    fit_tokens: int | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # of completion_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Delta:
    content: str = ""
    reasoning: str = ""  # set by the reasoning layer above the engine, never by an engine
    finish_reason: str | None = None  # "stop" | "length" on the last delta
    usage: Usage | None = None  # on the last delta


@dataclass(frozen=True)
class Capabilities:
    context_length: int
    parallel: int


class Engine(Protocol):
    capabilities: Capabilities

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]: ...

    async def close(self) -> None: ...
