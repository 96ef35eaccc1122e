"""What the vLLM tier is built on: its library entries, and the rule for when it runs."""

from __future__ import annotations

import json
import os
from importlib.util import find_spec

import pytest

from inferd.library import load_library

from ..conftest import QWEN
from .test_reasoning import HYBRID_TEMPLATE

MODEL = "qwen-vllm"
BUDGETS = {"minimal": 8, "low": 16, "medium": 24, "high": 96}
CONTEXT = 1024
READY_S = 1800.0  # conversion (about a minute) + vLLM's start (70-140 s alone; far more on a loaded machine)


def require_vllm() -> None:
    """The tier skips only where the vllm extra is not installed and this is not CI; in CI it must run."""
    if find_spec("vllm") is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("CI runs the vLLM tier, but the vllm extra is not installed (make test installs it when CI "
                    "is set)", pytrace=False)
    pytest.skip("the vllm extra is not installed (make test VLLM=1 installs it; CI always runs this tier)",
                allow_module_level=True)


def vllm_entry() -> str:
    """The packaged Qwen on the vllm engine (its GGUF converted), as a hybrid think-tags model, one slot."""
    source = load_library().get(QWEN).source
    assert source is not None
    budgets = ", ".join(f"{k} = {v}" for k, v in BUDGETS.items())
    return f'''[[models]]
id = "{MODEL}"
engine = "vllm"
filename = "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
context_length = {CONTEXT}
parallel = 1
chat_template = {json.dumps(HYBRID_TEMPLATE)}
reasoning = {{ style = "think-tags", opens_in_prompt = true, thinking_kwarg = "enable_thinking", budgets = {{ {budgets} }} }}

[models.source]
packages = {json.dumps(list(source.packages))}
size = {source.size}
sha256 = "{source.sha256}"

[models.vllm]
dtype = "bfloat16"
env = {{ VLLM_CPU_KVCACHE_SPACE = "1" }}
'''


def upstream_entries(vllm_port: int, dead_port: int) -> str:
    """``openai`` entries in front of that vLLM server: with its key, with a wrong key, and at a dead port."""
    def entry(model_id: str, port: int, key_env: str) -> str:
        return f'''[[models]]
id = "{model_id}"
engine = "openai"
context_length = 4096
parallel = 4

[models.upstream]
url = "http://127.0.0.1:{port}/v1"
flavour = "vllm"
model = "{MODEL}"
api_key_env = "{key_env}"
connect_timeout = 5
'''
    return "\n".join([entry("via-openai", vllm_port, "VLLM_UPSTREAM_KEY"),
                      entry("wrong-key", vllm_port, "WRONG_UPSTREAM_KEY"),
                      entry("nobody-home", dead_port, "VLLM_UPSTREAM_KEY")])
