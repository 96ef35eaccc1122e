"""llama.cpp in a child process: llama.cpp's own server (``xllamacpp``) with continuous batching.

inferd starts ``python -m inferd.engines.llamacpp_child`` under a warden, on a fresh loopback
port, and talks to it with the ``llamacpp`` flavour over HTTP. The child's listener requires a
random key that only this process and the child know (never logged, never on a command line);
its web UI is off. A crash of llama.cpp ends only the child: the supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

from ..errors import ContextLengthExceeded, InvalidRequest, ModelSourceError
from ..library import ModelSpec
from ..settings import Settings
from ..sources import ensure_model_file
from .base import GenerationRequest
from .flavours import LlamaCppFlavour, flatten
from .managed import ManagedEngine
from .supervisor import ChildSpec
from .upstream import Timeouts, Upstream

CONTEXT_PAD = 256  # llama.cpp rounds n_ctx up to a multiple of this
KEY_ENV = "INFERD_ENGINE_KEY"
CONFIG_ENV = "INFERD_LLAMACPP_CONFIG"
SPARE_CONNECTIONS = 4  # for prompt counting beside the generations
TOOLS_PREAMBLE = 512  # bytes: an upper bound on what a template writes around tool definitions


class LlamaCppEngine(ManagedEngine):
    kind = "llamacpp"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self._key = secrets.token_urlsafe(32)
        connections = spec.parallel + settings.max_queue + SPARE_CONNECTIONS
        upstream = Upstream(f"the llama.cpp engine of model '{spec.id}'", Timeouts(connect=5.0),
                            headers={"Authorization": f"Bearer {self._key}"}, connections=connections)
        super().__init__(spec, LlamaCppFlavour(), upstream, model_name=None)
        self._settings = settings
        self._model_path: Path | None = None
        self._overhead: tuple[int, int] | None = None
        self._vocab_size: int | None = None
        if spec.context_length * spec.parallel % CONTEXT_PAD:
            raise ModelSourceError(  # llama.cpp would pad it, and then a slot would hold more than advertised
                f"model '{spec.id}': llama.cpp needs context_length x parallel to be a multiple of {CONTEXT_PAD} "
                f"(got {spec.context_length} x {spec.parallel}); e.g. context_length = "
                f"{-(-spec.context_length // CONTEXT_PAD) * CONTEXT_PAD}")

    async def prepare(self) -> None:
        self._model_path = await asyncio.to_thread(self._checked_files)

    def _checked_files(self) -> Path:
        spec = self._spec
        path = ensure_model_file(spec, self._settings.model_files_dir)
        _check_gguf(spec, path)
        if spec.mmproj is not None:
            _check_gguf(spec, spec.mmproj)
        elif {"image", "video"} & set(spec.input_modalities):
            raise ModelSourceError(f"model '{spec.id}' lists {', '.join(spec.input_modalities)} input but no "
                                   "'mmproj' (the vision projector GGUF llama.cpp needs for images)")
        return path

    def child(self) -> ChildSpec:
        spec, settings = self._spec, self._settings
        config = {
            "id": spec.id, "model": str(self._model_path), "mmproj": str(spec.mmproj) if spec.mmproj else None,
            "parallel": spec.parallel, "context_length": spec.context_length, "threads": settings.threads,
            "chat_template": spec.chat_template, "debug": settings.log_level == "debug",
            "http_threads": spec.parallel + settings.max_queue + SPARE_CONNECTIONS,
            # reproducible: one token per forward pass, so every token's logits come from the same kernels
            # whatever else is in flight and whatever the prompt cache holds (llama.cpp picks a different
            # matmul kernel for one row than for several)
            "ubatch": 1 if spec.reproducible else None,
        }
        return ChildSpec(name=spec.id, argv=(sys.executable, "-m", "inferd.engines.llamacpp_child", "{port}"),
                         env={KEY_ENV: self._key, CONFIG_ENV: json.dumps(config)}, start_timeout=600.0)

    async def check(self, request: GenerationRequest) -> None:
        if request.sampling.logit_bias:
            await self._check_tokens([token for token, _ in request.sampling.logit_bias])
        if request.fit_tokens is not None and request.continue_message is None:
            messages = [flatten(m) for m in request.messages]
            tools = {"tools": list(request.template_tools)} if request.template_tools else {}
            await self._check_context(messages, request.fit_tokens, {**request.chat_template_kwargs, **tools})

    async def _check_context(self, messages: list[dict[str, Any]], max_tokens: int, kwargs: dict[str, Any]) -> None:
        """Prompt + max_tokens must fit; count exactly only when a cheap upper bound says it may not."""
        limit = self.capabilities.context_length
        base, per_message = await self._template_overhead()
        text_bytes = sum(len(_text(m).encode()) for m in messages)
        if kwargs.get("tools"):  # the definitions, and the template's words around them
            text_bytes += len(json.dumps(kwargs["tools"]).encode()) + TOOLS_PREAMBLE
        media = any(isinstance(m.get("content"), list) for m in messages)  # images: count exactly
        if not media and base + per_message * len(messages) + text_bytes + max_tokens <= limit:
            return
        prompt_tokens = await self._count_input_tokens(messages, kwargs)
        if prompt_tokens + max_tokens > limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in "
                f"max_tokens). Reduce the length of the messages or max_tokens.", param="messages")

    async def _check_tokens(self, tokens: list[int]) -> None:
        """logit_bias names token ids of this model's vocabulary."""
        if self._vocab_size is None:
            listed = (await self._upstream.get(self.base_url + "/v1/models")).json()
            self._vocab_size = int(listed["data"][0]["meta"]["n_vocab"])
        for token in tokens:
            if token >= self._vocab_size:
                raise InvalidRequest(f"'logit_bias' names token {token}, but model '{self._spec.id}' has "
                                     f"{self._vocab_size} tokens (ids 0 to {self._vocab_size - 1}).", param="logit_bias")

    async def _template_overhead(self) -> tuple[int, int]:
        if self._overhead is None:
            one = await self._count_prompt_tokens([{"role": "user", "content": ""}])
            two = await self._count_prompt_tokens([{"role": "user", "content": ""}, {"role": "assistant", "content": ""}])
            self._overhead = (one, max(two - one, 1) + 4)  # +4: a word-boundary token per message
        return self._overhead

    async def _count_prompt_tokens(self, messages: list[dict[str, Any]], kwargs: dict[str, Any] | None = None) -> int:
        body = {"content": await self.render_prompt(messages, kwargs or {}), "add_special": True, "parse_special": True}
        return len((await self._upstream.post(self.base_url + "/tokenize", body)).json()["tokens"])

    async def _count_input_tokens(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
        """Exact prompt tokens, images included (llama.cpp tokenizes the chat as it would generate it)."""
        body: dict[str, Any] = {"messages": messages, "chat_template_kwargs": kwargs} if kwargs else {
            "messages": messages}
        counted = await self._upstream.post(self.base_url + "/v1/chat/completions/input_tokens", body)
        if counted.status_code != 200:
            raise InvalidRequest(f"These messages could not be prepared for the model: {counted.text[:300]}",
                                 param="messages")
        return int(counted.json()["input_tokens"])

    async def render_prompt(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> str:
        """The prompt llama.cpp's chat template makes of these messages (its sandboxed Jinja)."""
        body: dict[str, Any] = {"messages": messages}
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        rendered = await self._upstream.post(self.base_url + "/apply-template", body)
        if rendered.status_code != 200:
            raise InvalidRequest(f"The chat template could not render these messages: {rendered.text[:300]}",
                                 param="messages")
        return rendered.json()["prompt"]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _check_gguf(spec: ModelSpec, path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelSourceError(f"model '{spec.id}': {path} is not a GGUF file (corrupt or wrong format)")
