#!/usr/bin/env python3
"""What reproducible outputs cost: inferd's llama.cpp engine in each mode, side by side in one run.

Modes (the engine child inferd runs, started here directly on the packaged Qwen GGUF):

  default        the engine as configured without ``reproducible``: 8 slots, llama.cpp's batches
  one-token      ``reproducible = true``: 8 slots, every forward pass holds one token (n_ubatch 1)
  one-slot       the alternative measured against it: 1 slot, no prompt cache (cache_prompt false)

Per mode: prompt processing of a long prompt (~400 tokens by default) (time to the first token, alone), and completion
tokens per second with 1 and 8 concurrent requests (64 tokens each, greedy, unique prompts). Ratios are
to ``default``. Reports the load average before and after each mode: the machine is shared.

    .venv/bin/python benchmarks/reproducible.py --gguf PATH [--requests 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

MODES = {
    "default": {"parallel": 8, "ubatch": None, "body": {}},
    "one-token": {"parallel": 8, "ubatch": 1, "body": {}},
    "one-slot": {"parallel": 1, "ubatch": None, "body": {"cache_prompt": False}},
}
SAMPLING = {"temperature": 0, "top_k": 0, "top_p": 1, "min_p": 0, "repeat_penalty": 1.0, "repeat_last_n": 0,
            "samplers": ["penalties", "temperature", "top_k", "top_p", "min_p"]}
SENTENCE = ("The gateway receives a request, checks the key, validates the body, picks the engine and streams "
            "the answer back to the client. ")  # ~25 tokens


def long_prompt(sentences: int) -> str:
    return "Here is a description of a system. " + SENTENCE * sentences + "Summarise it."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(gguf: Path, mode: dict, key: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = {"id": "bench", "model": str(gguf), "mmproj": None, "parallel": mode["parallel"],
              "context_length": 4096, "threads": 0, "chat_template": None, "debug": False, "http_threads": 24,
              "ubatch": mode["ubatch"]}
    env = {**os.environ, "INFERD_ENGINE_KEY": key, "INFERD_LLAMACPP_CONFIG": json.dumps(config)}
    proc = subprocess.Popen([sys.executable, "-m", "inferd.engines.llamacpp_child", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("engine did not start")


def one(url: str, key: str, prompt: str, max_tokens: int, body: dict) -> tuple[float, int]:
    """Seconds to the end, completion tokens."""
    start_t = time.perf_counter()
    reply = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=900,
                       json={"messages": [{"role": "user", "content": prompt}], "n_predict": max_tokens,
                             **SAMPLING, **body}).json()
    return time.perf_counter() - start_t, int(reply["usage"]["completion_tokens"])


def measure(url: str, key: str, body: dict, requests: int, max_tokens: int, sentences: int) -> dict[str, float]:
    tag = secrets.token_hex(4)
    prompt_s = min(one(url, key, f"[{tag} {i}] " + long_prompt(sentences), 1, body)[0] for i in range(2))
    alone_s, alone_n = one(url, key, f"[{tag} a] Write a Python function that merges intervals.", max_tokens, body)
    with ThreadPoolExecutor(requests) as pool:
        t0 = time.perf_counter()
        results = list(pool.map(lambda i: one(url, key, f"[{tag} c{i}] Write a Python function that merges "
                                                        "intervals.", max_tokens, body), range(requests)))
        wall = time.perf_counter() - t0
    return {f"prompt_{sentences * 25}_s": prompt_s, "tok_s_1": alone_n / alone_s, f"tok_s_{requests}": sum(n for _, n in results)
            / wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--prompt-sentences", type=int, default=16, help="~25 tokens each")
    args = parser.parse_args()
    key = secrets.token_urlsafe(16)
    rows = {}
    for name in args.modes.split(","):
        before = os.getloadavg()[0]
        proc, url = start(args.gguf, MODES[name], key)
        try:
            rows[name] = measure(url, key, MODES[name]["body"], args.requests, args.max_tokens,
                                 args.prompt_sentences)
        finally:
            proc.terminate()
            proc.wait()
        rows[name]["load"] = f"{before:.1f}/{os.getloadavg()[0]:.1f}"
        print(name, rows[name], flush=True)
    base = rows.get("default")
    cols = list(next(iter(rows.values())))
    print("\n| mode | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for name, row in rows.items():
        cells = []
        for col in cols:
            value = row[col]
            if isinstance(value, float) and base and col != "load":
                cells.append(f"{value:.2f} ({value / base[col]:.2f}x)")
            else:
                cells.append(str(value))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
