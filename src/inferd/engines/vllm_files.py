"""The files inferd's ``vllm`` engine prepares: converted weights (cached by the GGUF's sha256), chat templates.

Everything lives under ``<models dir>/vllm/``:

- ``<sha256>/``: a Hugging Face folder converted from the GGUF with that sha256, written by
  ``python -m inferd.engines.vllm_prepare convert`` (a subprocess) and renamed into place when
  complete, so a folder that exists is whole;
- ``hashes.json``: sha256 of ``file`` GGUFs by path, size and mtime, so they are hashed once;
- ``templates/<sha256>.jinja``: a library entry's own chat template, for ``--chat-template``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ModelSourceError
from ..library import ModelSpec
from ..sources import ensure_model_file

BLOCK = 4 * 1024 * 1024


async def run_tool(args: list[str], env: dict[str, str]) -> Any:
    """Run ``python -m inferd.engines.vllm_prepare ARGS``; its stderr (progress) goes to ours, its stdout is JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inferd.engines.vllm_prepare", *args, env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise ModelSourceError(f"preparing vLLM failed: 'vllm_prepare {args[0]}' exited with {proc.returncode} "
                               "(its output is above in the log)")
    return json.loads(out or b"null")


async def converted_folder(spec: ModelSpec, models_dir: Path, env: dict[str, str]) -> Path:
    """The entry's GGUF as a Hugging Face folder vLLM can load, converted on first use."""
    gguf = await asyncio.to_thread(ensure_model_file, spec, models_dir)
    digest = spec.source.sha256 if spec.source is not None else await asyncio.to_thread(file_sha256, gguf, models_dir)
    folder = models_dir / "vllm" / digest
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    print(f"inferd: model {spec.id}: converting {gguf.name} for vLLM, once (about a minute per GB; cached in "
          f"{folder})", file=sys.stderr, flush=True)
    # a partial folder of its own per process: two servers on one models dir never write into one folder
    partial = folder.with_name(f"{digest}.{os.getpid()}")
    await run_tool(["convert", str(gguf), str(partial)], env)
    try:
        os.replace(partial, folder)
    except OSError:  # another process finished first: its folder is as good
        if not (folder / "config.json").is_file():
            raise
    return folder


def file_sha256(path: Path, models_dir: Path) -> str:
    """The sha256 of a GGUF the entry names by path, remembered while its size and mtime stay the same."""
    memo_path = models_dir / "vllm" / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if key not in memo:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(BLOCK):
                digest.update(block)
        memo[key] = digest.hexdigest()
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(memo_path, json.dumps(memo, indent=1))
    return memo[key]


def chat_template_file(template: str, models_dir: Path) -> Path:
    """The entry's chat template as a file (named by its content) for vLLM's ``--chat-template``."""
    path = models_dir / "vllm" / "templates" / (hashlib.sha256(template.encode()).hexdigest() + ".jinja")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, template)
    return path


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
