"""vLLM in a child process: its OpenAI server, started, watched and restarted by inferd.

inferd runs ``python -m vllm.entrypoints.openai.api_server`` under a warden on a fresh loopback
port and talks to it with the ``vllm`` flavour. The server requires a random key that only this
process and the child know (``VLLM_API_KEY`` in the child's environment: never on a command line,
never logged). It runs offline (``HF_HUB_OFFLINE``): the weights are an entry's Hugging Face
folder, or its GGUF converted once (``vllm_prepare.py``, in a subprocess: torch and transformers
never enter the API process) into ``<models dir>/vllm/<sha256 of the GGUF>``.

No ``--reasoning-parser``: vLLM returns raw text, so inferd's own splitter and its two-phase
budget work as on every engine (phase 2 continues the turn with ``continue_final_message``).
"""

from __future__ import annotations

import os
import secrets
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, ModelSourceError
from ..library import ModelSpec, VllmOptions
from ..settings import Settings
from .base import GenerationRequest
from .context import ContextFit
from .flavours import VllmFlavour, flatten
from .managed import ManagedEngine
from .supervisor import ChildSpec
from .upstream import Timeouts, Upstream
from .vllm_files import chat_template_file, converted_folder, run_tool

SPARE_CONNECTIONS = 4  # for prompt counting beside the generations
SITE_DIR = Path(__file__).parent / "vllm_site"  # sitecustomize.py: marks broken optional modules absent
# for every vLLM process inferd starts; an entry's [models.vllm] env overrides the first two
DEFAULT_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "2",  # GiB of KV cache on CPU (unset, vLLM sizes it from all of memory)
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # on CPU, otherwise vLLM keeps a core to itself
}
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",  # vLLM would report usage statistics
}


class VllmEngine(ManagedEngine):
    kind = "vllm"

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self._key = secrets.token_urlsafe(32)
        upstream = Upstream(f"the vLLM engine of model '{spec.id}'", Timeouts(connect=5.0),
                            headers={"Authorization": f"Bearer {self._key}"},
                            connections=spec.parallel + settings.max_queue + SPARE_CONNECTIONS)
        super().__init__(spec, VllmFlavour(), upstream, model_name=spec.id)
        self._settings = settings
        self._options = spec.vllm or VllmOptions()
        self._folder: Path | None = None
        self._template: Path | None = None
        self._absent: list[str] = []
        self._fit = ContextFit(spec.context_length, self._count_tokens, self._count_tokens)

    async def prepare(self) -> None:
        if find_spec("vllm") is None:
            raise ModelSourceError(f"model '{self._spec.id}': engine 'vllm' needs vLLM in inferd's environment: "
                                   "pip install 'inferd[vllm]' (CPU), or see the README for CUDA machines")
        self._absent = await run_tool(["probe"], self._tool_env())
        models_dir = self._settings.model_files_dir
        self._folder = self._options.model or await converted_folder(self._spec, models_dir, self._tool_env())
        if self._spec.chat_template:
            self._template = chat_template_file(self._spec.chat_template, models_dir)

    def child(self) -> ChildSpec:
        assert self._folder is not None
        return ChildSpec(name=self._spec.id, argv=(sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                                                   *self.arguments()),
                         env={**self._tool_env(), "VLLM_API_KEY": self._key},
                         start_timeout=self._options.start_timeout, stop_grace=10.0)

    def arguments(self) -> list[str]:
        """vLLM's command line (no secrets: the key travels in the environment)."""
        spec, options = self._spec, self._options
        args = ["--model", str(self._folder), "--served-model-name", spec.id, "--host", "127.0.0.1",
                "--port", "{port}", "--max-model-len", str(spec.context_length),
                "--max-num-seqs", str(spec.parallel), "--dtype", options.dtype,
                "--tensor-parallel-size", str(options.tensor_parallel_size),
                "--pipeline-parallel-size", str(options.pipeline_parallel_size),
                "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens
                "--generation-config", "vllm",  # inferd sends every sampling field; no model-side defaults
                # logprobs of the distribution sampled from (after penalties, temperature, top-k/p), as llama.cpp
                "--logprobs-mode", "processed_logprobs",
                "--disable-uvicorn-access-log"]
        if options.gpu_memory_utilization is not None:
            args += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
        if self._template is not None:
            args += ["--chat-template", str(self._template)]
        return args + list(options.extra_args)

    def _tool_env(self) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(SITE_DIR), os.environ.get("PYTHONPATH")]))
        return {**DEFAULT_ENV, **self._options.env, **OFFLINE_ENV, "PYTHONPATH": path,
                "INFERD_VLLM_ABSENT": ",".join(self._absent)}

    async def check(self, request: GenerationRequest) -> None:
        """Prompt + the client's max_tokens must fit. A prompt that alone is too long is refused by vLLM
        (mapped by the flavour); a continued turn (phase 2 of a reasoning budget) is stopped by vLLM at the
        context's end (finish_reason ``length``), as llama.cpp does."""
        if request.fit_tokens is not None and request.continue_message is None:
            messages = [flatten(m) for m in request.messages]
            await self._fit.check(messages, request.fit_tokens, request.template_kwargs)

    async def _count_tokens(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
        """Prompt tokens as vLLM renders and tokenizes these messages (``POST /tokenize``)."""
        body: dict[str, Any] = {"model": self._spec.id, "messages": messages}
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        counted = await self._upstream.post(self.base_url + "/tokenize", body)
        if counted.status_code != 200:
            raise InvalidRequest(f"These messages could not be prepared for the model: {counted.text[:300]}",
                                 param="messages")
        return int(counted.json()["count"])
