"""An OpenAI-compatible server inferd does not run (vLLM, SGLang, llama-server, another inferd).

The library entry gives its URL, the model's name there, the flavour that translates the
parameters, timeouts, and the name of the environment variable holding the key for it: the
key itself is never in the library file.
"""

from __future__ import annotations

import logging

import httpx

from ..errors import ModelSourceError
from ..library import ModelSpec
from ..settings import Settings, read_secret
from .flavours import FLAVOURS
from .http import HTTPEngine
from .upstream import Timeouts, Upstream

log = logging.getLogger("inferd")


class OpenAIEngine(HTTPEngine):
    kind = "openai"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        options = spec.upstream
        assert options is not None  # the library requires it for this engine
        headers = {}
        if options.api_key_env:
            key = read_secret(options.api_key_env)
            if not key:
                raise ModelSourceError(f"model '{spec.id}': the environment variable {options.api_key_env} (the key "
                                       f"for {options.url}) is not set")
            headers["Authorization"] = f"Bearer {key}"
        timeouts = Timeouts(options.connect_timeout, options.first_byte_timeout, options.idle_timeout)
        upstream = Upstream(f"the upstream server of model '{spec.id}' ({options.url})", timeouts, headers=headers,
                            connections=spec.parallel + settings.max_queue)
        super().__init__(spec, FLAVOURS[options.flavour](), upstream, model_name=options.model or spec.id)
        self._base = options.url.rstrip("/")

    @property
    def chat_url(self) -> str:
        return self._base + "/chat/completions"

    async def probe(self) -> bool:
        """An active health check: the upstream answers ``GET /models`` without a server error."""
        try:
            return (await self._upstream.get(self._base + "/models", timeout=5.0)).status_code < 500
        except httpx.HTTPError:
            return False

    async def start(self) -> None:
        """Say whether the upstream answers; it may come up later, so this never fails the model."""
        try:
            response = await self._upstream.get(self._base + "/models", timeout=5.0)
            log.info("model %s: upstream %s answers GET /models with %s", self._spec.id, self._base,
                     response.status_code)
        except httpx.HTTPError as exc:
            log.warning("model %s: upstream %s does not answer yet (%s)", self._spec.id, self._base,
                        exc or type(exc).__name__)
