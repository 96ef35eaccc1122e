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
    # the OpenAI extras (defaults: off)
    seed: int | None = None  # None: a random seed per request
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias in [-100, 100]); -100 bans the token
    ignore_eos: bool = False


@dataclass(frozen=True)
class Constraint:
    """What the output must match: a grammar (GBNF, which llama.cpp reads and xgrammar's EBNF accepts),
    and the same constraint as a JSON schema where it is one (servers that take a schema use it)."""

    grammar: str
    json_schema: dict[str, Any] | None = None


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
    stop: tuple[str, ...] = ()  # the engine ends the generation at any of these (they are not output)
    logprobs: int | None = None  # None: no logprobs; k: the sampled token's logprob and the k most likely
    constraint: Constraint | None = None  # grammar-constrained output (response_format, forced tool calls)
    # tool definitions the chat template renders into the prompt; the engine's own tool handling stays off
    template_tools: tuple[dict[str, Any], ...] = ()
    # OpenAI fields an upstream that handles them itself gets as the client sent them (tools, tool_choice,
    # parallel_tool_calls, response_format): flavours that are ``native``
    native: dict[str, Any] = field(default_factory=dict)

    @property
    def template_kwargs(self) -> dict[str, Any]:
        """What the chat template renders with: the request's kwargs and the tool definitions."""
        tools = {"tools": list(self.template_tools)} if self.template_tools else {}
        return {**self.chat_template_kwargs, **tools}


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
class TokenLogprob:
    """One output token in OpenAI's logprobs shape; ``top`` holds (token, logprob, bytes), most likely first."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call, in OpenAI's stream shape: id and name once, arguments in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Delta:
    content: str = ""
    reasoning: str = ""  # set by the reasoning layer above the engine, never by an engine
    finish_reason: str | None = None  # "stop" | "length" | "tool_calls" on the last delta
    usage: Usage | None = None  # on the last delta
    logprobs: tuple[TokenLogprob, ...] = ()  # of the tokens of this delta, when asked for
    tool_calls: tuple[ToolCallDelta, ...] = ()  # from an upstream that parses calls itself, or inferd's parser
    index: int = 0  # the choice this delta belongs to (n > 1)


@dataclass(frozen=True)
class Capabilities:
    context_length: int
    parallel: int


@dataclass(frozen=True)
class EngineStatus:
    """Where an engine stands: ``state`` is starting | ready | restarting | failed | stopping | stopped."""

    state: str
    kind: str  # the library's engine name: llamacpp | vllm | openai | routed
    pid: int | None = None  # the engine's process, for a child inferd supervises
    rss_bytes: int | None = None  # resident memory of that process and its children
    restarts: int = 0
    error: str = ""  # why it failed or last went down
    # a routed engine: one card per backend (name, kind, state, pid, healthy, circuit, in_flight, capacity, ...)
    backends: tuple[dict[str, Any], ...] = ()

    @property
    def is_ready(self) -> bool:
        return self.state == "ready"


class Engine(Protocol):
    capabilities: Capabilities

    async def start(self) -> None: ...

    def status(self) -> EngineStatus: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]: ...

    async def close(self) -> None: ...
