#!/usr/bin/env python3
"""inferd in front of vLLM against vLLM called directly, and the two engines side by side.

One run, on the packaged Qwen2.5-Coder-0.5B (vLLM serves it converted to bf16, llama.cpp the Q4_K_M
GGUF), same slots and context for both engines, greedy, the same sampling fields to every system,
unique prompts, streamed:

  inferd→vLLM   inferd with a ``vllm`` entry (it starts and supervises vLLM)
  vLLM direct   that same vLLM process, called on its own port with its own key (found in /proc, as
                the tests do), with exactly the fields inferd's ``vllm`` flavour sends
  inferd→llama  inferd with a ``llamacpp`` entry (llama.cpp in inferd's child process)

Per concurrency level the two vLLM targets run back to back on the one warm server, in alternating
order. The TTFT overhead is measured apart: many short requests at concurrency 1, alternating
between inferd→vLLM and vLLM direct one by one, so drift hits both alike. Needs the ``vllm`` extra.

    .venv/bin/python benchmarks/engines.py [--levels 1,8,16] [--max-tokens 128] [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from loadgen import (NOISY_CPU_PCT, CpuMonitor, LevelSummary, PromptFactory, StreamFn, fmt, http_client, log,
                     make_http_stream, percentile, run_level, summarize, wait_for_quiet)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's tests/ helpers

from inferd.library import load_library  # noqa: E402
from tests.harness import Server, library_server  # noqa: E402
from tests.vllm_access import Engine, find_engine  # noqa: E402

MODEL = "qwen-bench"
PACKAGED = "qwen2.5-coder-0.5b-instruct"
# what inferd's vllm flavour sends for a temperature-0 request with the API defaults
VLLM_SAMPLING = {"top_p": 1.0, "top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "ignore_eos": True}
# every request writes exactly max_tokens, so every target does equal work
INFERD_FIELDS = {"ignore_eos": True}


def entry(engine: str, parallel: int, context: int) -> str:
    source = load_library().get(PACKAGED).source
    assert source is not None
    vllm = '\n[models.vllm]\ndtype = "bfloat16"\nenv = { VLLM_CPU_KVCACHE_SPACE = "2" }\n' if engine == "vllm" else ""
    return f'''[[models]]
id = "{MODEL}"
engine = "{engine}"
filename = "{PACKAGED}.Q4_K_M.gguf"
context_length = {context}
parallel = {parallel}

[models.source]
packages = {json.dumps(list(source.packages))}
size = {source.size}
sha256 = "{source.sha256}"
{vllm}'''


@contextmanager
def inferd(engine: str, args: argparse.Namespace) -> Iterator[tuple[Server, str]]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-"))
    log(f"[{engine}] starting inferd with a {engine} entry (log in {folder}/data)")
    started = time.monotonic()
    with library_server(folder, args.models_dir, entry(engine, args.parallel, args.context),
                        ready_timeout=args.startup_timeout) as srv:
        log(f"[{engine}] ready after {time.monotonic() - started:.0f} s")
        yield srv, srv.create_key(f"bench-{secrets.token_hex(3)}")


def level(label: str, stream: StreamFn, c: int, args: argparse.Namespace, prompts: PromptFactory,
          pid: int) -> LevelSummary:
    for attempt in range(args.noisy_retries + 1):
        wait_for_quiet(pid, args.wait_idle, label)
        monitor = CpuMonitor(pid)
        results, wall = run_level(stream, prompts, c, args.requests_per_worker, args.max_tokens)
        summary = summarize(label, c, results, wall)
        summary.other_cpu_pct = monitor.other_cpu_pct()
        log(f"[{label}] c={c}: {summary.completion_tokens} tokens in {wall:.1f} s = {summary.tokens_per_s:.1f} tok/s, "
            f"TTFT p50 {fmt(summary.ttft_p50_ms)} ms, {summary.errors} errors, other CPU {fmt(summary.other_cpu_pct)}%")
        if (summary.other_cpu_pct or 0.0) <= NOISY_CPU_PCT or attempt == args.noisy_retries:
            break
    return summary


def ttft_pairs(streams: dict[str, StreamFn], n: int, prompts: PromptFactory) -> dict[str, list[float]]:
    """``n`` requests per target at concurrency 1, alternating target (and who goes first) request by request."""
    ttfts: dict[str, list[float]] = {label: [] for label in streams}
    order = list(streams)
    for i in range(n):
        for label in order if i % 2 == 0 else order[::-1]:
            result = streams[label](prompts.next(), 4)
            if result.ok and result.ttft_s is not None:
                ttfts[label].append(result.ttft_s * 1000)
    return ttfts


def measure_vllm(args: argparse.Namespace, prompts: PromptFactory) -> tuple[list[LevelSummary], dict[str, list[float]]]:
    summaries: list[LevelSummary] = []
    with inferd("vllm", args) as (srv, key), http_client(max(args.levels)) as client:
        engine: Engine = find_engine(srv.url, MODEL)
        pid = srv.process.pid
        streams = {
            "inferd→vLLM": make_http_stream(client, srv.url + "/api/v1/chat/completions", key, MODEL, INFERD_FIELDS),
            "vLLM direct": make_http_stream(client, engine.url + "/v1/chat/completions", engine.key, MODEL,
                                            VLLM_SAMPLING),
        }
        for label, stream in streams.items():  # warm-up, not counted
            assert stream(prompts.next(), 8).ok, f"{label}: warm-up failed"
        for i, c in enumerate(args.levels):
            for label in list(streams) if i % 2 == 0 else list(streams)[::-1]:
                summaries.append(level(label, streams[label], c, args, prompts, pid))
        wait_for_quiet(pid, args.wait_idle, "TTFT")
        ttfts = ttft_pairs(streams, args.ttft_requests, prompts)
    return summaries, ttfts


def measure_llamacpp(args: argparse.Namespace, prompts: PromptFactory) -> list[LevelSummary]:
    with inferd("llamacpp", args) as (srv, key), http_client(max(args.levels)) as client:
        stream = make_http_stream(client, srv.url + "/api/v1/chat/completions", key, MODEL, INFERD_FIELDS)
        assert stream(prompts.next(), 8).ok, "warm-up failed"
        return [level("inferd→llama.cpp", stream, c, args, prompts, srv.process.pid) for c in args.levels]


def table(summaries: list[LevelSummary], levels: list[int]) -> str:
    rows = ["| c | target | completion tokens | tok/s | vs vLLM direct | TTFT p50 ms | TTFT p95 ms | ITL p50 ms | "
            "err | other CPU % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in levels:
        at = [s for s in summaries if s.concurrency == c]
        base = next((s for s in at if s.target == "vLLM direct"), None)
        for s in sorted(at, key=lambda s: s.target):
            ratio = f"{s.tokens_per_s / base.tokens_per_s:.3f}x" if base and base.tokens_per_s else "-"
            rows.append(f"| {c} | {s.target} | {s.completion_tokens} | {s.tokens_per_s:.1f} | {ratio} | "
                        f"{fmt(s.ttft_p50_ms)} | {fmt(s.ttft_p95_ms)} | {fmt(s.itl_p50_ms, 1)} | {s.errors} | "
                        f"{fmt(s.other_cpu_pct)} |")
    return "\n".join(rows)


def ttft_line(ttfts: dict[str, list[float]]) -> str:
    p50 = {label: percentile(values, 50) for label, values in ttfts.items()}
    ours, theirs = p50.get("inferd→vLLM"), p50.get("vLLM direct")
    if ours is None or theirs is None:
        return "TTFT overhead: no data"
    n = min(len(v) for v in ttfts.values())
    return (f"TTFT p50 at c=1, max_tokens 4, {n} alternating pairs: inferd→vLLM {ours:.1f} ms, vLLM direct "
            f"{theirs:.1f} ms, added {ours - theirs:+.1f} ms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="vllm,llamacpp", help="vllm (inferd→vLLM and vLLM direct), llamacpp")
    ap.add_argument("--levels", default="1,8,16")
    ap.add_argument("--requests-per-worker", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--ttft-requests", type=int, default=30, help="pairs for the TTFT overhead (0: skip)")
    ap.add_argument("--parallel", type=int, default=16, help="slots of both engines")
    ap.add_argument("--context", type=int, default=4096, help="context per request of both engines")
    ap.add_argument("--models-dir", type=Path, default=Path.home() / ".local/share/inferd/models")
    ap.add_argument("--startup-timeout", type=float, default=1800.0)
    ap.add_argument("--wait-idle", type=float, default=300.0, help="seconds to wait for a quiet machine per level")
    ap.add_argument("--noisy-retries", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the summaries and TTFT samples here")
    args = ap.parse_args(argv)
    args.levels = [int(v) for v in args.levels.split(",")]
    args.targets = [t.strip() for t in args.targets.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prompts = PromptFactory(secrets.token_hex(3))
    log(f"engines benchmark: levels {args.levels}, {args.requests_per_worker} req/worker, max_tokens "
        f"{args.max_tokens}, {args.parallel} slots x {args.context}, load average {os.getloadavg()[0]:.2f}")
    summaries: list[LevelSummary] = []
    ttfts: dict[str, list[float]] = {}
    if "vllm" in args.targets:
        vllm_summaries, ttfts = measure_vllm(args, prompts)
        summaries += vllm_summaries
    if "llamacpp" in args.targets:
        summaries += measure_llamacpp(args, prompts)
    print("\n" + table(summaries, args.levels) + "\n\n" + ttft_line(ttfts))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"summaries": [asdict(s) for s in summaries], "ttft_ms": ttfts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
