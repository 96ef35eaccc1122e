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

from ..errors import InvalidRequest, ModelSourceError
from ..library import ModelSpec
from ..settings import Settings
from ..sources import ensure_model_file
from .base import GenerationRequest
from .context import ContextFit
from .flavours import LlamaCppFlavour, flatten
from .managed import ManagedEngine
from .supervisor import ChildSpec
from .upstream import Timeouts, Upstream

CONTEXT_PAD = 256  # llama.cpp rounds n_ctx up to a multiple of this
KEY_ENV = "INFERD_ENGINE_KEY"
CONFIG_ENV = "INFERD_LLAMACPP_CONFIG"
SPARE_CONNECTIONS = 4  # for prompt counting beside the generations


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
        self._fit = ContextFit(spec.context_length, self._count_prompt_tokens, self._count_input_tokens)
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
            "prompt_cache_mib": settings.prompt_cache_mib,
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
            await self._fit.check(messages, request.fit_tokens, request.template_kwargs)

    async def _check_tokens(self, tokens: list[int]) -> None:
        """logit_bias names token ids of this model's vocabulary."""
        if self._vocab_size is None:
            listed = (await self._upstream.get(self.base_url + "/v1/models")).json()
            self._vocab_size = int(listed["data"][0]["meta"]["n_vocab"])
        for token in tokens:
            if token >= self._vocab_size:
                raise InvalidRequest(f"'logit_bias' names token {token}, but model '{self._spec.id}' has "
                                     f"{self._vocab_size} tokens (ids 0 to {self._vocab_size - 1}).", param="logit_bias")

    async def _count_prompt_tokens(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
        body = {"content": await self.render_prompt(messages, kwargs), "add_special": True, "parse_special": True}
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


def _check_gguf(spec: ModelSpec, path: Path) -> None:
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelSourceError(f"model '{spec.id}': {path} is not a GGUF file (corrupt or wrong format)")
