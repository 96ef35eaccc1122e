"""llama.cpp in-process through ``xllamacpp``: llama.cpp's own server loop, continuous batching.

Each request runs ``Server.handle_chat_completions`` on a worker thread; chunks come back
through a callback on that thread and are handed to the event loop. Returning ``True`` from
the callback stops the generation, which is how closing the iterator aborts it.

``xllamacpp.Server`` also opens llama.cpp's HTTP listener on a random loopback port. It is
guarded by a random key that lives only in this process's memory (never logged), its web UI
is off, and inferd uses it only to count prompt tokens (``/apply-template``, ``/tokenize``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from ..errors import ContextLengthExceeded, EngineFailure, InvalidRequest, ModelSourceError
from ..library import ModelSpec
from ..settings import Settings
from .base import Capabilities, Delta, GenerationRequest, Usage

# llama.cpp's CPU backend uses OpenMP. With several engines in one process there are more OpenMP
# threads than cores, and libgomp's default then sleeps between decode steps: measured here
# (2 cores, qwen beside gemma), 47 ms per token instead of 34 ms with qwen alone. Active waiting
# bounded to ~20 ms of spinning gives 34 ms back and no CPU use while idle (ACTIVE alone spins for
# minutes after each burst). libgomp reads these when it loads, i.e. at the xllamacpp import.
os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "2000000")

# temperature first, then the truncations, as in the OpenAI/HF semantics; nothing else in the chain
CONTEXT_PAD = 256  # llama.cpp rounds n_ctx up to a multiple of this
SAMPLER_ORDER = ["penalties", "temperature", "top_k", "top_p", "min_p"]


class LlamaCppEngine:
    def __init__(self, spec: ModelSpec, model_path: Path, settings: Settings) -> None:
        import xllamacpp  # optional dependency: imported only when this engine is chosen

        self.capabilities = Capabilities(context_length=spec.context_length, parallel=spec.parallel)
        self._key = secrets.token_urlsafe(32)
        if spec.context_length * spec.parallel % CONTEXT_PAD:
            raise ModelSourceError(  # llama.cpp would pad it, and then a slot would hold more than advertised
                f"model '{spec.id}': llama.cpp needs context_length x parallel to be a multiple of {CONTEXT_PAD} "
                f"(got {spec.context_length} x {spec.parallel}); e.g. context_length = "
                f"{-(-spec.context_length // CONTEXT_PAD) * CONTEXT_PAD}")
        _check_gguf(spec, model_path)
        if spec.mmproj is not None:
            _check_gguf(spec, spec.mmproj)
        elif {"image", "video"} & set(spec.input_modalities):
            raise ModelSourceError(f"model '{spec.id}' lists {', '.join(spec.input_modalities)} input but no "
                                   "'mmproj' (the vision projector GGUF llama.cpp needs for images)")
        try:
            self._server = xllamacpp.Server(_params(xllamacpp, spec, model_path, settings, self._key))
        except RuntimeError as exc:
            raise ModelSourceError(f"model '{spec.id}': llama.cpp could not load {model_path} ({exc}); "
                                   "INFERD_LOG_LEVEL=debug shows llama.cpp's own log") from None
        self._listener = httpx.AsyncClient(
            base_url=self._server.listening_address, headers={"Authorization": f"Bearer {self._key}"}, timeout=30)
        self._overhead: tuple[int, int] | None = None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        messages = [_flatten(m) for m in request.messages]
        if request.fit_tokens is not None and request.continue_message is None:
            await self._check_context(messages, request.fit_tokens, request.chat_template_kwargs)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return stop.is_set()

        call = (self._server.handle_chat_completions, self._body(messages, request), on_chunk)
        future = _run_in_thread(loop, *call)  # a thread per request: none stay behind after a burst
        future.add_done_callback(queue.put_nowait)  # the finished future marks the end
        try:
            async for delta in _deltas(queue):
                yield delta
        finally:
            stop.set()

    def _body(self, messages: list[dict[str, Any]], request: GenerationRequest) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "messages": messages, "stream": True, "stream_options": {"include_usage": True},
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
            "repeat_penalty": s.repetition_penalty,
            # the whole context (prompt included) is the penalty window, not llama.cpp's 64 tokens
            "repeat_last_n": self.capabilities.context_length if s.repetition_penalty != 1.0 else 0,
            "n_predict": s.max_tokens if s.max_tokens is not None else -1,
            "samplers": SAMPLER_ORDER,
            "reasoning_format": "none",  # raw text: inferd's reasoning layer parses it, the same for every family
        }
        if request.chat_template_kwargs:
            body["chat_template_kwargs"] = request.chat_template_kwargs
        if request.continue_message is not None:  # the template renders the turn so far, open at its end
            body.update(messages=[*messages, request.continue_message], continue_final_message="content",
                        add_generation_prompt=False)
        return body

    async def _check_context(self, messages: list[dict[str, Any]], max_tokens: int, kwargs: dict[str, Any]) -> None:
        """Prompt + max_tokens must fit; count exactly only when a cheap upper bound says it may not."""
        limit = self.capabilities.context_length
        base, per_message = await self._template_overhead()
        text_bytes = sum(len(_text(m).encode()) for m in messages)
        media = any(isinstance(m.get("content"), list) for m in messages)  # images: count exactly
        if not media and base + per_message * len(messages) + text_bytes + max_tokens <= limit:
            return
        prompt_tokens = await self._count_input_tokens(messages, kwargs)
        if prompt_tokens + max_tokens > limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
                f"max_tokens). Reduce the length of the messages or max_tokens.", param="messages")

    async def _template_overhead(self) -> tuple[int, int]:
        if self._overhead is None:
            one = await self._count_prompt_tokens([{"role": "user", "content": ""}])
            two = await self._count_prompt_tokens([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}])
            self._overhead = (one, max(two - one, 1) + 4)  # +4: a word-boundary token per message
        return self._overhead

    async def _count_prompt_tokens(self, messages: list[dict[str, Any]], kwargs: dict[str, Any] | None = None) -> int:
        tokens = await self._listener.post(
            "/tokenize", json={"content": await self.render_prompt(messages, kwargs or {}), "add_special": True,
                               "parse_special": True})
        return len(tokens.json()["tokens"])

    async def _count_input_tokens(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
        """Exact prompt tokens, images included (llama.cpp tokenizes the chat as it would generate it)."""
        body: dict[str, Any] = {"messages": messages, "chat_template_kwargs": kwargs} if kwargs else {
            "messages": messages}
        counted = await self._listener.post("/v1/chat/completions/input_tokens", json=body)
        if counted.status_code != 200:
            raise InvalidRequest(f"These messages could not be prepared for the model: {counted.text[:300]}",
                                 param="messages")
        return int(counted.json()["input_tokens"])

    async def render_prompt(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> str:
        """The prompt llama.cpp's chat template makes of these messages (its sandboxed Jinja)."""
        body: dict[str, Any] = {"messages": messages}
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        rendered = await self._listener.post("/apply-template", json=body)
        if rendered.status_code != 200:
            raise InvalidRequest(f"The chat template could not render these messages: {rendered.text[:300]}",
                                 param="messages")
        return rendered.json()["prompt"]

    async def close(self) -> None:
        await self._listener.aclose()
        self._server = None  # type: ignore[assignment]  # its destructor stops llama.cpp's loop


def _run_in_thread(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> asyncio.Future[Any]:
    """``fn(*args)`` on a thread of its own that ends with it; its outcome settles the returned future."""
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def target() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # handed to the awaiting side
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name="llamacpp-request").start()
    return future


async def _deltas(queue: asyncio.Queue[Any]) -> AsyncIterator[Delta]:
    finish: str | None = None
    while not isinstance(chunk := await queue.get(), asyncio.Future):
        if "error" in chunk:
            raise _engine_error(chunk["error"])
        for choice in chunk.get("choices", ()):  # a raw completion's last chunk has text, finish and usage
            finish = choice.get("finish_reason") or finish
            if text := choice.get("delta", {}).get("content") or choice.get("text"):  # chat | plain completion
                yield Delta(content=text)
        if chunk.get("usage"):
            yield Delta(finish_reason=finish or "stop", usage=_usage(chunk["usage"]))
            return
    problem = None if chunk.cancelled() else chunk.exception()
    raise EngineFailure(f"The engine failed: {problem}" if problem else "The engine ended without a result.")


def _usage(raw: dict[str, Any]) -> Usage:
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return Usage(prompt_tokens=raw["prompt_tokens"], completion_tokens=raw["completion_tokens"], cached_tokens=cached)


def _engine_error(error: dict[str, Any]) -> Exception:
    message = str(error.get("message", "engine error"))
    if error.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(
            f"This model's maximum context length is {error.get('n_ctx')} tokens, but the messages take "
            f"{error.get('n_prompt_tokens')} tokens. Reduce the length of the messages.", param="messages")
    if error.get("code") == 400:
        return InvalidRequest(message, param="messages")
    return EngineFailure(f"The engine failed: {message}")


def _flatten(message: dict[str, Any]) -> dict[str, Any]:
    """Text-only part arrays become one string, which every chat template understands."""
    content = message.get("content")
    if isinstance(content, list) and all(p.get("type") == "text" for p in content):
        return {**message, "content": "".join(p["text"] for p in content)}
    return message


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _check_gguf(spec: ModelSpec, path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelSourceError(f"model '{spec.id}': {path} is not a GGUF file (corrupt or wrong format)")


def _params(xllamacpp: Any, spec: ModelSpec, model_path: Path, settings: Settings, key: str) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_parallel = spec.parallel
    params.n_ctx = spec.context_length * spec.parallel  # llama.cpp splits n_ctx evenly across slots
    threads = settings.threads or os.cpu_count() or 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.ctx_shift = False  # a full context ends the generation (finish_reason "length")
    params.warmup = False
    # llama.cpp keeps finished prompts' KV state in host memory for reuse (8 GiB by default): RSS that grows
    # with every distinct prompt, aborted ones included; bounded by a setting, off by default
    params.cache_ram_mib = settings.prompt_cache_mib
    params.api_keys = [key]
    params.ui = False
    params.endpoint_slots = False
    params.verbosity = 3 if settings.log_level == "debug" else 1  # llama.cpp's per-request log only in debug
    if spec.chat_template:
        params.chat_template = spec.chat_template
    if spec.mmproj is not None:
        params.mmproj.path = str(spec.mmproj)
    return params
