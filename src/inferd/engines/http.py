"""An engine reached over HTTP: the flavour writes the body, the upstream streams it, chunks become deltas.

``HTTPEngine`` is the part every kind shares; a kind says where the server is (``base_url``),
how it starts and stops, and what it checks before sending (the context, for llama.cpp).
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any, AsyncIterator

from ..errors import APIError, EngineFailure, Unavailable
from ..library import ModelSpec
from .base import Capabilities, Delta, EngineStatus, GenerationRequest, Usage
from .flavours import Flavour, OpenAIFlavour
from .upstream import Upstream

class HTTPEngine:
    kind = "http"

    def __init__(self, spec: ModelSpec, flavour: Flavour, upstream: Upstream, model_name: str | None) -> None:
        self.capabilities = Capabilities(context_length=spec.context_length, parallel=spec.parallel)
        self._spec = spec
        self._flavour = flavour
        self._upstream = upstream
        self._refusal = flavour.refusal(upstream.name)
        self._model_name = model_name  # the name the server knows the model by (None: it serves one model)
        self._closing = False

    @property
    def chat_url(self) -> str:
        raise NotImplementedError

    async def start(self) -> None:
        return None

    def status(self) -> EngineStatus:
        return EngineStatus(state="stopped" if self._closing else "ready", kind=self.kind)

    async def check(self, request: GenerationRequest) -> None:
        """What to refuse before sending (e.g. a prompt that does not fit the context)."""
        return None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        body = self._flavour.body(request, self._model_name, self.capabilities.context_length)
        try:
            await self.check(request)
            # closed here, at once, when this generation is closed (a client that left): left to the garbage
            # collector, an unclosed stream would hold its pooled connection to the engine until collected
            async with aclosing(self._upstream.chunks(self.chat_url, body, self._refusal)) as chunks, \
                    aclosing(deltas(chunks, self._flavour, request.logprobs)) as stream:
                async for delta in stream:
                    yield delta
        except APIError as exc:
            if exc.status < 500:  # the request's own fault: nothing to explain
                raise
            raise await self.explain(exc) from None

    async def explain(self, error: APIError) -> APIError:
        """The error the client gets when the server failed mid-request."""
        if self._closing:
            return Unavailable(f"The server is shutting down; model '{self._spec.id}' stopped before this request "
                               "finished. Retry on another instance.", retry_after=5, code="server_shutting_down")
        return error

    async def close(self) -> None:
        self._closing = True
        await self._upstream.close()


async def deltas(chunks: AsyncIterator[dict[str, Any]], flavour: Flavour = OpenAIFlavour(),
                 top_logprobs: int | None = None) -> AsyncIterator[Delta]:
    """OpenAI stream chunks as deltas; the last one carries the finish reason and usage."""
    finish: str | None = None
    usage: Usage | None = None
    pieces = 0
    async for chunk in chunks:
        for choice in chunk.get("choices") or ():
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            logprobs = flavour.token_logprobs(choice.get("logprobs"), top_logprobs)
            calls = flavour.tool_calls(delta) if flavour.native else ()
            if text or logprobs or calls:
                pieces += 1 if text else 0
                yield Delta(content=text, logprobs=logprobs, tool_calls=calls)
        if chunk.get("usage"):
            usage = parse_usage(chunk["usage"])
    if finish is None:
        raise EngineFailure("The engine ended the stream without finishing the completion.", code="upstream_error")
    # a server that sends no usage: its pieces are counted (one per token on the engines inferd runs)
    yield Delta(finish_reason=finish or "stop", usage=usage or Usage(prompt_tokens=0, completion_tokens=pieces))


def parse_usage(raw: dict[str, Any]) -> Usage:
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(prompt_tokens=int(raw.get("prompt_tokens") or 0), completion_tokens=int(raw.get("completion_tokens")
                                                                                          or 0),
                 cached_tokens=int(cached))
