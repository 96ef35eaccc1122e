"""The engine seam: one small protocol every backend implements.

``generate`` yields ``Delta`` objects; closing the iterator (``aclose``) aborts the
generation and frees its slot. Errors that belong to the request (context too long,
engine busy) are raised as ``APIError`` before the first delta.

Every engine runs outside the API process (a supervised child, or a server elsewhere);
``start`` brings it up, ``status`` says where it stands, ``close`` stops it and ends what is
still in flight.
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


@dataclass(frozen=True)
class EngineStatus:
    """Where an engine stands: ``state`` is starting | ready | restarting | failed | stopping | stopped."""

    state: str
    kind: str  # the library's engine name: llamacpp | vllm | openai
    pid: int | None = None  # the engine's process, for a child inferd supervises
    rss_bytes: int | None = None  # resident memory of that process and its children
    restarts: int = 0
    error: str = ""  # why it failed or last went down

    @property
    def is_ready(self) -> bool:
        return self.state == "ready"


class Engine(Protocol):
    capabilities: Capabilities

    async def start(self) -> None: ...

    def status(self) -> EngineStatus: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]: ...

    async def close(self) -> None: ...
