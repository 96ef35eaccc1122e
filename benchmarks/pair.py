#!/usr/bin/env python3
"""A llama.cpp + vLLM pair behind one model id (preference routing) against each engine alone.

One inferd (the *engine host*) runs the packaged Qwen2.5-Coder-0.5B twice: llama.cpp (Q4_K_M, 16
slots) and vLLM (bf16, 16 slots). A second inferd (the *gateway*) serves three models, all
``openai``-kind backends pointing at those two engine processes directly (their port in
/proc/PID/cmdline, their key in /proc/PID/environ), so every target takes the same path:

  llama.cpp alone   one backend: the llama.cpp engine, 16 slots
  vLLM alone        one backend: the vLLM engine, 16 slots
  pair              llama.cpp (1 slot, rank 0) + vLLM (16 slots, rank 1), policy least_outstanding with
                    ``prefer``: a lone request goes to llama.cpp, the rest to vLLM

Greedy, unique prompts, ``ignore_eos`` (every request writes exactly max_tokens), streamed. Levels
alternate the order of the targets. Needs the ``vllm`` extra.

    .venv/bin/python benchmarks/pair.py [--levels 1,16] [--max-tokens 128] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from engines import MODEL, entry
from loadgen import CpuMonitor, LevelSummary, PromptFactory, fmt, http_client, log, make_http_stream, run_level, summarize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from tests.harness import library_server  # noqa: E402

TARGETS = ("llama.cpp alone", "vLLM alone", "pair")
FIELDS = {"ignore_eos": True}


def engine_address(host_url: str, model: str, port_of: str, key_env: str) -> tuple[int, str]:
    """The engine child's loopback port and key, read as an operator on the machine could."""
    pid = httpx.get(host_url + "/health", timeout=10).json()["engines"][model]["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    environ = dict(i.split("=", 1) for i in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in i)
    port = int(argv[argv.index("--port") + 1]) if port_of == "--port" else int([a for a in argv if a.isdigit()][-1])
    return port, environ[key_env]


def backend(name: str, flavour: str, port: int, env: str, parallel: int, queue: int, rank: int, model: str) -> str:
    return (f'[[models.backends]]\nname = "{name}"\nengine = "openai"\nparallel = {parallel}\nqueue = {queue}\n'
            f'rank = {rank}\n[models.backends.upstream]\nurl = "http://127.0.0.1:{port}/v1"\nflavour = "{flavour}"\n'
            f'model = "{model}"\napi_key_env = "{env}"\n')


def gateway_library(llama_port: int, vllm_port: int, context: int) -> str:
    def model(id_: str, routing: str, *backends: str) -> str:
        return f'[[models]]\nid = "{id_}"\ncontext_length = {context}\n{routing}\n' + "\n".join(backends)

    llama = lambda parallel, queue: backend("llama", "llamacpp", llama_port, "LLAMA_KEY", parallel, queue, 0, MODEL)  # noqa: E731
    vllm = lambda: backend("vllm", "vllm", vllm_port, "VLLM_KEY", 16, 16, 1, "vllm")  # noqa: E731
    prefer = '[models.routing]\npolicy = "least_outstanding"\nprefer = true\n'
    return "\n".join([model("llama.cpp alone", "", llama(16, 16)), model("vLLM alone", "", vllm()),
                      model("pair", prefer, llama(1, 0), vllm())])


def host_library(context: int) -> str:
    llama = entry("llamacpp", 16, context)
    vllm = entry("vllm", 16, context).replace(f'id = "{MODEL}"', 'id = "vllm"')
    return llama + "\n" + vllm


def table(summaries: list[LevelSummary], levels: list[int]) -> str:
    rows = ["| c | target | completion tokens | tok/s | vs vLLM alone | vs llama.cpp alone | TTFT p50 ms | TTFT p95 ms "
            "| err | other CPU % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in levels:
        at = {s.target: s for s in summaries if s.concurrency == c}
        for s in at.values():
            ratios = [f"{s.tokens_per_s / at[b].tokens_per_s:.2f}x" if b in at and at[b].tokens_per_s else "-"
                      for b in ("vLLM alone", "llama.cpp alone")]
            rows.append(f"| {c} | {s.target} | {s.completion_tokens} | {s.tokens_per_s:.1f} | {ratios[0]} | {ratios[1]} | "
                        f"{fmt(s.ttft_p50_ms)} | {fmt(s.ttft_p95_ms)} | {s.errors} | {fmt(s.other_cpu_pct)} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,16")
    ap.add_argument("--requests", default="6,32", help="requests per level (a multiple of the level)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--models-dir", type=Path, default=Path.home() / ".local/share/inferd/models")
    args = ap.parse_args()
    levels, counts = [int(v) for v in args.levels.split(",")], [int(v) for v in args.requests.split(",")]
    prompts = PromptFactory(secrets.token_hex(3))
    folder = Path(tempfile.mkdtemp(prefix="bench-pair-"))
    log(f"pair benchmark: levels {levels}, load average {os.getloadavg()[0]:.2f}; logs in {folder}")
    started = time.monotonic()
    (folder / "host").mkdir()
    with library_server(folder / "host", args.models_dir, host_library(args.context), ready_timeout=1800) as host:
        log(f"engine host ready after {time.monotonic() - started:.0f} s")
        llama_port, llama_key = engine_address(host.url, MODEL, "argv", "INFERD_ENGINE_KEY")
        vllm_port, vllm_key = engine_address(host.url, "vllm", "--port", "VLLM_API_KEY")
        (folder / "gw").mkdir()
        with library_server(folder / "gw", args.models_dir, gateway_library(llama_port, vllm_port, args.context),
                            env={"LLAMA_KEY": llama_key, "VLLM_KEY": vllm_key}) as gw, \
                http_client(max(levels)) as client:
            key = gw.create_key("bench-pair")
            streams = {t: make_http_stream(client, gw.url + "/api/v1/chat/completions", key, t, FIELDS) for t in TARGETS}
            for label, stream in streams.items():
                assert stream(prompts.next(), 8).ok, f"{label}: warm-up failed"
            summaries: list[LevelSummary] = []
            for i, (c, n) in enumerate(zip(levels, counts)):
                for label in TARGETS if i % 2 == 0 else TARGETS[::-1]:
                    monitor = CpuMonitor(host.process.pid)
                    results, wall = run_level(streams[label], prompts, c, n // c, args.max_tokens)
                    summary = summarize(label, c, results, wall)
                    summary.other_cpu_pct = monitor.other_cpu_pct()
                    summaries.append(summary)
                    log(f"[{label}] c={c}: {summary.tokens_per_s:.1f} tok/s, TTFT p50 {fmt(summary.ttft_p50_ms)} ms, "
                        f"{summary.errors} errors")
            cards = httpx.get(gw.url + "/health", timeout=10).json()["engines"]["pair"]["backends"]
    print("\n" + table(summaries, levels))
    print("pair backends served: " + ", ".join(f"{b['name']} {b['served']}" for b in cards))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
