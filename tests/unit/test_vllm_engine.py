"""The vllm engine kind without vLLM: its command line and environment, its files, the flavour's
translations, the shared context check, and the import shim. The real server is tests/e2e/test_vllm.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inferd.engines.base import GenerationRequest, Sampling
from inferd.engines.context import ContextFit
from inferd.engines.flavours import FLAVOURS
from inferd.engines.vllm import SITE_DIR, VllmEngine
from inferd.engines.vllm_files import chat_template_file, converted_folder, file_sha256
from inferd.errors import ContextLengthExceeded, InvalidRequest
from inferd.library import load_library
from inferd.settings import Settings

ENTRY = '''[[models]]
id = "m"
engine = "vllm"
context_length = 2048
parallel = 3
chat_template = "{{ messages }}"
'''


def library_spec(tmp_path: Path, text: str) -> Any:
    (tmp_path / "lib.toml").write_text(text)
    return load_library(tmp_path / "lib.toml").get("m")


def engine(tmp_path: Path, vllm_table: str = "") -> VllmEngine:
    spec = library_spec(tmp_path, ENTRY + '[models.vllm]\nmodel = "hf"\n' + vllm_table)
    built = VllmEngine(spec, Settings(data_dir=tmp_path))
    built._folder = spec.vllm.model  # what prepare() settles
    return built


def test_vllm_listens_on_loopback_with_the_entry_s_limits_and_no_key_on_its_command_line(tmp_path: Path) -> None:
    built = engine(tmp_path, 'dtype = "bfloat16"\ntensor_parallel_size = 2\nextra_args = ["--seed", "7"]\n')
    child = built.child()
    argv = list(child.argv)
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "{port}" and pairs["--model"] == str(tmp_path / "hf")
    assert pairs["--max-model-len"] == "2048" and pairs["--max-num-seqs"] == "3" and pairs["--served-model-name"] == "m"
    assert pairs["--dtype"] == "bfloat16" and pairs["--tensor-parallel-size"] == "2" and pairs["--seed"] == "7"
    assert "--enable-prompt-tokens-details" in argv and "--reasoning-parser" not in argv
    key = child.env["VLLM_API_KEY"]
    assert len(key) >= 32 and not any(key in a for a in argv)
    assert child.env["HF_HUB_OFFLINE"] == "1" and child.env["VLLM_NO_USAGE_STATS"] == "1"
    assert child.env["PYTHONPATH"].split(os.pathsep)[0] == str(SITE_DIR)


def test_entry_env_overrides_inferd_s_cpu_defaults_but_not_offline(tmp_path: Path) -> None:
    built = engine(tmp_path, 'env = { VLLM_CPU_KVCACHE_SPACE = 6, HF_HUB_OFFLINE = "0" }\n')
    env = built.child().env
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "6" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("arg", ["--host", "--port=9", "--api-key", "--max-model-len"])
def test_extra_args_may_not_take_over_what_inferd_sets(tmp_path: Path, arg: str) -> None:
    with pytest.raises(ValueError, match="may not set"):
        library_spec(tmp_path, ENTRY + f'[models.vllm]\nmodel = "hf"\nextra_args = ["{arg}", "x"]\n')


def test_the_entry_s_template_becomes_a_file_named_by_its_content(tmp_path: Path) -> None:
    first = chat_template_file("{{ messages }}", tmp_path)
    assert first.read_text() == "{{ messages }}" and first.parent == tmp_path / "vllm" / "templates"
    assert chat_template_file("{{ messages }}", tmp_path) == first != chat_template_file("other", tmp_path)


def test_a_gguf_file_is_hashed_once_while_it_is_unchanged(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    digest = file_sha256(gguf, tmp_path)
    assert len(digest) == 64 and (tmp_path / "vllm" / "hashes.json").is_file()
    assert file_sha256(gguf, tmp_path) == digest
    gguf.write_bytes(b"GGUF" + b"\1" * 100)
    assert file_sha256(gguf, tmp_path) != digest


def test_a_converted_folder_is_reused_without_converting_again(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    spec = library_spec(tmp_path, ENTRY + f'file = "{gguf}"\n')
    folder = tmp_path / "vllm" / file_sha256(gguf, tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    env = {"PYTHONPATH": "/nonexistent"}  # a conversion would fail: it must not run
    assert asyncio.run(converted_folder(spec, tmp_path, env)) == folder


def test_top_p_zero_keeps_the_most_likely_token_as_vllm_understands_it() -> None:
    flavour = FLAVOURS["vllm"]()
    greedy = flavour.sampling(Sampling(1.5, 0.0, 0, 0.0, 1.0, 8), 1024)
    assert greedy["top_p"] == 1.0 and greedy["top_k"] == 1
    plain = flavour.sampling(Sampling(1.0, 0.5, 0, 0.0, 1.0, 8), 1024)
    assert plain["top_p"] == 0.5 and plain["top_k"] == -1


def test_vllm_s_refusals_are_mapped() -> None:
    refuse = FLAVOURS["vllm"]().refusal("the vLLM engine")
    too_long = refuse(400, {"message": "This model's maximum context length is 1024 tokens...", "param": "input_tokens"})
    assert isinstance(too_long, ContextLengthExceeded) and too_long.param == "messages"
    other = refuse(400, {"message": "max_tokens=2000 cannot be greater than max_model_len", "param": "max_tokens"})
    assert type(other) is InvalidRequest and other.code == "upstream_refused"
    assert refuse(500, {"message": "boom"}).status == 502


class Counter:
    def __init__(self, per_message: int) -> None:
        self.per_message, self.exact_calls = per_message, 0

    async def template(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
        return 10 + self.per_message * len(messages)

    async def exact(self, messages: list[dict[str, Any]], kwargs: dict[str, Any]) -> int:
        self.exact_calls += 1
        return 10 + sum(self.per_message + len(str(m["content"])) // 4 for m in messages)


def test_context_fit_counts_exactly_only_when_the_bound_does_not_fit() -> None:
    counter = Counter(per_message=5)
    fit = ContextFit(100, counter.template, counter.exact)
    asyncio.run(fit.check([{"role": "user", "content": "hi"}], 50, {}))
    assert counter.exact_calls == 0  # 10 + (5 + 4) + 2 bytes + 50 fits: no request to the engine
    asyncio.run(fit.check([{"role": "user", "content": "x" * 200}], 10, {}))
    assert counter.exact_calls == 1  # 200 bytes may not fit; 65 tokens do
    with pytest.raises(ContextLengthExceeded):
        asyncio.run(fit.check([{"role": "user", "content": "x" * 200}], 40, {}))
    asyncio.run(fit.check([{"role": "user", "content": [{"type": "image_url"}]}], 1, {}))
    assert counter.exact_calls == 3  # images: always counted


def test_the_shim_marks_only_the_named_modules_absent() -> None:
    code = "import json\ntry:\n    import csv\nexcept ImportError:\n    print('absent')\n"
    env = {**os.environ, "PYTHONPATH": str(SITE_DIR), "INFERD_VLLM_ABSENT": "csv,torchcodec"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "absent", out.stderr
    env["INFERD_VLLM_ABSENT"] = ""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "" and out.returncode == 0


def test_generation_request_for_phase_two_is_not_checked(tmp_path: Path) -> None:
    built = engine(tmp_path)
    request = GenerationRequest(messages=[{"role": "user", "content": "x"}], sampling=Sampling(0, 1, 0, 0, 1, 10),
                                continue_message={"role": "assistant", "content": "<think>"}, fit_tokens=5000)
    asyncio.run(built.check(request))  # no engine to ask, and no refusal: vLLM stops a continuation at the end
