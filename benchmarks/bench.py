#!/usr/bin/env python3
"""Streaming chat-completions benchmark: inferd vs. the bare engine vs. llama.cpp's servers.

Measures, per target and per concurrency level, time to first token (TTFT),
inter-token latency (ITL) and aggregate completion tokens/s, all in one run, and
prints ratios relative to the bare engine (``xllamacpp-bare``).

Targets run strictly one after another (never two at once) so they never
compete for CPU cores:

  inferd          the system under test, started here (``inferd serve``) or an
                  already running server (``--url BASE --key KEY``)
  bare            xllamacpp.Server driven in-process, no HTTP
  llama-http      llama.cpp's own HTTP listener inside that same xllamacpp.Server
  llama-native    a ``llama-server`` binary, if one is on PATH or given

See benchmarks/README.md for the methodology and the meaning of each column.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from loadgen import (NOISY_CPU_PCT, CpuMonitor, DeltaClock, LevelSummary, PromptFactory, RequestResult, StreamFn, fmt,
                     free_port, http_client, log, make_http_stream, run_level, started_process, summarize,
                     wait_for_quiet, wait_ready)

DEFAULT_MODEL_ID = "qwen2.5-coder-0.5b-instruct"
DEFAULT_GGUF_NAME = "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
WARMUP_MAX_TOKENS = 8
ALL_TARGETS = ("inferd", "bare", "llama-http", "llama-native")
TARGET_LABELS = {
    "inferd": "inferd",
    "bare": "xllamacpp-bare",
    "llama-http": "llama-server (HTTP)",
    "llama-native": "llama-server (native)",
}
BASELINE = "bare"
# Sampling fields the inferd engine sends to llama.cpp for a temperature-0 request with
# API defaults (see inferd.engines.llamacpp); the bare and llama.cpp HTTP targets get
# exactly these, so every target runs the same sampler chain and does the same work.
ENGINE_SAMPLING: dict[str, Any] = {
    "temperature": 0,
    "top_k": 0,
    "top_p": 1,
    "min_p": 0,
    "repeat_penalty": 1.0,
    "repeat_last_n": 0,
    "samplers": ["penalties", "temperature", "top_k", "top_p", "min_p"],
}


# --------------------------------------------------------------------------- data


@dataclass
class TargetRun:
    """Everything measured for one target."""

    name: str
    label: str
    levels: list[LevelSummary] = field(default_factory=list)
    raw: dict[int, list[RequestResult]] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class Config:
    levels: list[int]
    requests_per_worker: int
    max_tokens: int
    model_id: str
    gguf: Path
    parallel: int
    ctx_per_slot: int
    threads: int
    run_id: str
    wait_idle_s: float = 0.0
    noisy_retries: int = 0


def make_bare_stream(server: Any, model_id: str) -> StreamFn:
    def stream(messages: list[dict[str, str]], max_tokens: int) -> RequestResult:
        body = {
            "model": model_id,
            "messages": messages,
            "max_tokens": max_tokens,
            "n_predict": max_tokens,
            **ENGINE_SAMPLING,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        t_send = time.perf_counter()
        clock = DeltaClock(t_send)

        def on_chunk(obj: dict[str, Any]) -> bool:
            clock.chunk(obj, time.perf_counter())
            return False

        try:
            ret = server.handle_chat_completions(body, on_chunk)
        except Exception as exc:  # engine errors surface as Python exceptions
            return RequestResult(ok=False, error=f"{type(exc).__name__}: {exc}", duration_s=time.perf_counter() - t_send)
        if isinstance(ret, dict) and "error" in ret:
            clock.chunk(ret, time.perf_counter())
        return clock.finish(time.perf_counter())

    return stream


def measure_target(
    name: str, stream: StreamFn, cfg: Config, prompts: PromptFactory, server_pid: int | None = None
) -> TargetRun:
    label = TARGET_LABELS[name]
    run = TargetRun(name=name, label=label)
    log(f"[{label}] warm-up")
    warm = stream(prompts.next(), WARMUP_MAX_TOKENS)
    if not warm.ok:
        raise RuntimeError(f"{label}: warm-up request failed: {warm.error}")
    for c in cfg.levels:
        for attempt in range(cfg.noisy_retries + 1):
            wait_for_quiet(server_pid, cfg.wait_idle_s, label)
            monitor = CpuMonitor(server_pid)
            results, wall = run_level(stream, prompts, c, cfg.requests_per_worker, cfg.max_tokens)
            s = summarize(label, c, results, wall)
            s.other_cpu_pct = monitor.other_cpu_pct()
            log(
                f"[{label}] c={c}: {s.requests} req in {wall:.1f}s, {s.tokens_per_s:.1f} tok/s, "
                f"TTFT p50 {fmt(s.ttft_p50_ms)} ms, ITL p50 {fmt(s.itl_p50_ms)} ms, other CPU {fmt(s.other_cpu_pct)}%"
                + (f", {s.errors} errors (first: {first_error(results)})" if s.errors else "")
            )
            if (s.other_cpu_pct or 0.0) <= NOISY_CPU_PCT or attempt == cfg.noisy_retries:
                break
            log(f"[{label}] c={c}: disturbed by other processes, measuring this level again")
        run.levels.append(s)
        run.raw[c] = results
    return run


def first_error(results: list[RequestResult]) -> str:
    return next((r.error or "?" for r in results if not r.ok), "")


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Sends file descriptor 2 (llama.cpp's log output) to ``path`` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# --------------------------------------------------------------------------- targets


def create_inferd_key(inferd_bin: Path, data_dir: Path, env: dict[str, str]) -> str:
    argv = [str(inferd_bin), "keys", "create", "--name", f"bench-{secrets.token_hex(4)}", "--data-dir", str(data_dir)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError("`inferd keys create` printed no key")
    return lines[-1]


def run_inferd(args: argparse.Namespace, cfg: Config, prompts: PromptFactory, workdir: Path) -> TargetRun:
    max_c = max(cfg.levels)
    if args.url:
        url = args.url.rstrip("/") + args.path
        log(f"[inferd] measuring running server at {url}")
        with http_client(max_c) as client:
            return measure_target("inferd", make_http_stream(client, url, args.key, cfg.model_id, {}), cfg, prompts)

    inferd_bin = Path(args.inferd_bin)
    if not inferd_bin.exists():
        return TargetRun("inferd", TARGET_LABELS["inferd"], skipped=f"{inferd_bin} not found")
    data_dir = Path(args.data_dir).expanduser()
    env = {**os.environ, "INFERD_DATA_DIR": str(data_dir)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / "inferd-serve.log"
    argv = [str(inferd_bin), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    log(f"[inferd] starting: {' '.join(argv)} (log: {log_path})")
    with started_process(argv, log_path, env) as proc:
        t0 = time.monotonic()
        wait_ready(base + "/health", proc, args.startup_timeout, need_ready_status=True)
        log(f"[inferd] ready after {time.monotonic() - t0:.1f}s")
        key = create_inferd_key(inferd_bin, data_dir, env)
        with http_client(max_c) as client:
            stream = make_http_stream(client, base + args.path, key, cfg.model_id, {})
            run = measure_target("inferd", stream, cfg, prompts, server_pid=proc.pid)
        log("[inferd] stopping server")
    return run


def require_gguf(cfg: Config) -> None:
    # Checked per target group: a fresh inferd data dir only has the GGUF after `inferd serve` assembled it.
    if not cfg.gguf.is_file():
        raise FileNotFoundError(f"GGUF not found: {cfg.gguf} (use --gguf PATH)")


def load_engine(cfg: Config) -> tuple[Any, str]:
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = str(cfg.gguf)
    p.n_ctx = cfg.parallel * cfg.ctx_per_slot
    p.n_parallel = cfg.parallel
    p.cpuparams.n_threads = cfg.threads
    p.cpuparams_batch.n_threads = cfg.threads
    p.ctx_shift = False
    key = secrets.token_urlsafe(24)
    p.api_keys = [key]
    return x.Server(p), key


def run_engine_targets(names: list[str], cfg: Config, prompts: PromptFactory, workdir: Path) -> list[TargetRun]:
    """Loads one xllamacpp.Server and measures ``bare`` and/or ``llama-http`` on it, in turn."""
    require_gguf(cfg)
    engine_log = workdir / "xllamacpp.log"
    runs: list[TargetRun] = []
    log(f"[engine] loading {cfg.gguf} (n_ctx={cfg.parallel * cfg.ctx_per_slot}, n_parallel={cfg.parallel}, threads={cfg.threads}; log: {engine_log})")
    with stderr_to(engine_log):
        server, key = load_engine(cfg)
        try:
            for name in names:
                if name == "bare":
                    runs.append(measure_target("bare", make_bare_stream(server, cfg.model_id), cfg, prompts))
                else:
                    url = server.listening_address.rstrip("/") + "/v1/chat/completions"
                    with http_client(max(cfg.levels)) as client:
                        stream = make_http_stream(client, url, key, cfg.model_id, ENGINE_SAMPLING)
                        runs.append(measure_target("llama-http", stream, cfg, prompts))
        finally:
            del server
            gc.collect()
    return runs


def run_llama_native(args: argparse.Namespace, cfg: Config, prompts: PromptFactory, workdir: Path) -> TargetRun:
    binary = args.llama_server or shutil.which("llama-server")
    if not binary:
        log("[llama-native] skipped: no llama-server binary on PATH (use --llama-server PATH)")
        return TargetRun("llama-native", TARGET_LABELS["llama-native"], skipped="no llama-server binary on PATH (use --llama-server PATH)")
    require_gguf(cfg)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        binary, "-m", str(cfg.gguf), "-np", str(cfg.parallel), "-c", str(cfg.parallel * cfg.ctx_per_slot),
        "-t", str(cfg.threads), "--port", str(port), "--host", "127.0.0.1",
    ]
    log_path = workdir / "llama-server.log"
    log(f"[llama-native] starting: {' '.join(argv)} (log: {log_path})")
    with started_process(argv, log_path) as proc:
        wait_ready(base + "/health", proc, args.startup_timeout, need_ready_status=False)
        with http_client(max(cfg.levels)) as client:
            stream = make_http_stream(client, base + "/v1/chat/completions", None, cfg.model_id, ENGINE_SAMPLING)
            return measure_target("llama-native", stream, cfg, prompts, server_pid=proc.pid)


# --------------------------------------------------------------------------- report


def render_tables(runs: list[TargetRun], cfg: Config) -> str:
    base_run = next((r for r in runs if r.name == BASELINE and not r.skipped), None)
    head = (
        f"{'target':<22} {'TTFT p50':>9} {'TTFT p95':>9} {'ITL p50':>8} {'tok/s':>7} {'tok/s':>8} {'TTFT p50':>9} {'err':>4} {'other':>6}",
        f"{'':<22} {'(ms)':>9} {'(ms)':>9} {'(ms)':>8} {'':>7} {'vs bare':>8} {'Δ bare ms':>9} {'':>4} {'CPU%':>6}",
    )
    out: list[str] = []
    noisy = False
    for i, c in enumerate(cfg.levels):
        base = base_run.levels[i] if base_run else None
        n_req = c * cfg.requests_per_worker
        out.append(f"concurrency {c}: {n_req} requests x max_tokens {cfg.max_tokens}")
        out.extend(head)
        out.append("-" * len(head[0]))
        for r in runs:
            if r.skipped:
                continue
            s = r.levels[i]
            ratio = f"{s.tokens_per_s / base.tokens_per_s:.2f}x" if base and base.tokens_per_s > 0 else "-"
            delta = (
                f"{s.ttft_p50_ms - base.ttft_p50_ms:+.0f}"
                if base and s.ttft_p50_ms is not None and base.ttft_p50_ms is not None
                else "-"
            )
            out.append(
                f"{r.label:<22} {fmt(s.ttft_p50_ms):>9} {fmt(s.ttft_p95_ms):>9} {fmt(s.itl_p50_ms, 1):>8} "
                f"{fmt(s.tokens_per_s, 1):>7} {ratio:>8} {delta:>9} {s.errors:>4} {fmt(s.other_cpu_pct):>6}"
            )
            noisy = noisy or (s.other_cpu_pct or 0.0) > NOISY_CPU_PCT
        out.append("")
    for r in runs:
        if r.skipped:
            out.append(f"{r.label}: skipped ({r.skipped})")
    if noisy:
        out.append(
            f"WARNING: other processes used more than {NOISY_CPU_PCT:.0f}% of the CPUs during some levels "
            "(column 'other CPU%'); those numbers are disturbed, rerun on an idle machine."
        )
    return "\n".join(out)


def write_json(path: Path, runs: list[TargetRun], cfg: Config, started: float) -> None:
    doc = {
        "config": {**asdict(cfg), "gguf": str(cfg.gguf)},
        "started_unix": started,
        "cpu_count": os.cpu_count(),
        "targets": [
            {
                "name": r.name,
                "label": r.label,
                "skipped": r.skipped,
                "levels": [asdict(s) for s in r.levels],
                "requests": {str(c): [asdict(x) for x in res] for c, res in r.raw.items()},
            }
            for r in runs
        ],
    }
    path.write_text(json.dumps(doc, indent=1))


# --------------------------------------------------------------------------- main


def guarded(names: list[str], fn: Callable[[], list[TargetRun]]) -> list[TargetRun]:
    """Runs a target group; a failure marks its targets as skipped instead of ending the run."""
    try:
        return fn()
    except Exception as exc:
        log(f"[{'/'.join(names)}] failed: {type(exc).__name__}: {exc}")
        return [TargetRun(n, TARGET_LABELS[n], skipped=f"failed: {exc}") for n in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env_dir = os.environ.get("INFERD_DATA_DIR") or str(Path.home() / ".local/share/inferd")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help=f"comma list of {', '.join(ALL_TARGETS)} (default: all)")
    ap.add_argument("--levels", default="1,4,8", help="concurrency levels (default: 1,4,8)")
    ap.add_argument("--requests-per-worker", type=int, default=2, help="requests each concurrent worker sends (default: 2)")
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request (default: 64)")
    ap.add_argument("--model", default=DEFAULT_MODEL_ID, help=f"model id sent in requests (default: {DEFAULT_MODEL_ID})")
    ap.add_argument("--data-dir", default=env_dir, help="inferd data dir (default: $INFERD_DATA_DIR or ~/.local/share/inferd)")
    ap.add_argument("--gguf", help=f"GGUF file for the peer targets (default: <data-dir>/models/{DEFAULT_GGUF_NAME})")
    ap.add_argument("--parallel", type=int, default=8, help="slots; must match inferd's setting for the model (default: 8)")
    ap.add_argument("--ctx-per-slot", type=int, default=4096, help="context per slot; must match inferd (default: 4096)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="engine threads for peers (default: os.cpu_count())")
    ap.add_argument("--url", help="measure an already running inferd-style server at this base URL instead of starting one")
    ap.add_argument("--key", help="API key for --url")
    ap.add_argument("--path", default="/api/v1/chat/completions", help="chat completions path for --url / started inferd")
    ap.add_argument("--inferd-bin", default=str(Path(sys.prefix) / "bin" / "inferd"), help="inferd executable (default: the venv's)")
    ap.add_argument("--llama-server", help="llama-server binary for the llama-native target (default: from PATH)")
    ap.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for a server to become ready")
    ap.add_argument(
        "--wait-idle", type=float, default=120.0,
        help="before each level, wait up to this many seconds for other processes to go quiet (0: don't; default: 120)",
    )
    ap.add_argument(
        "--noisy-retries", type=int, default=2,
        help=f"measure a level again (up to this many times) when other processes used over {NOISY_CPU_PCT:.0f}%% CPU (default: 2)",
    )
    ap.add_argument("--json", type=Path, help="write all raw numbers to this file")
    ap.add_argument("--log-dir", type=Path, help="where server/engine logs go (default: a temp dir)")
    args = ap.parse_args(argv)
    args.target_list = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.target_list if t not in ALL_TARGETS]
    if unknown:
        ap.error(f"unknown target(s): {', '.join(unknown)}")
    try:
        args.level_list = [int(v) for v in args.levels.split(",") if v.strip()]
    except ValueError:
        ap.error("--levels must be a comma list of integers")
    if not args.level_list or min(args.level_list) < 1 or args.requests_per_worker < 1 or args.max_tokens < 1:
        ap.error("levels, --requests-per-worker and --max-tokens must be positive")
    if args.url and not args.key:
        ap.error("--url needs --key")
    if not args.path.startswith("/"):
        args.path = "/" + args.path
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir).expanduser()
    cfg = Config(
        levels=args.level_list,
        requests_per_worker=args.requests_per_worker,
        max_tokens=args.max_tokens,
        model_id=args.model,
        gguf=Path(args.gguf).expanduser() if args.gguf else data_dir / "models" / DEFAULT_GGUF_NAME,
        parallel=args.parallel,
        ctx_per_slot=args.ctx_per_slot,
        threads=args.threads,
        run_id=secrets.token_hex(3),
        wait_idle_s=args.wait_idle,
        noisy_retries=args.noisy_retries,
    )
    workdir = args.log_dir or Path(tempfile.mkdtemp(prefix="inferd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prompts = PromptFactory(cfg.run_id)
    started = time.time()
    log(
        f"run {cfg.run_id}: targets {','.join(args.target_list)}, levels {cfg.levels}, "
        f"{cfg.requests_per_worker} req/worker, max_tokens {cfg.max_tokens}, slots {cfg.parallel} x ctx {cfg.ctx_per_slot}, "
        f"{os.cpu_count()} CPUs"
    )

    runs: list[TargetRun] = []
    if "inferd" in args.target_list:
        runs.extend(guarded(["inferd"], lambda: [run_inferd(args, cfg, prompts, workdir)]))
    engine_targets = [t for t in ("bare", "llama-http") if t in args.target_list]
    if engine_targets:
        runs.extend(guarded(engine_targets, lambda: run_engine_targets(engine_targets, cfg, prompts, workdir)))
    if "llama-native" in args.target_list:
        runs.extend(guarded(["llama-native"], lambda: [run_llama_native(args, cfg, prompts, workdir)]))

    log(f"\ntotal time {time.time() - started:.0f}s\n")
    print(render_tables(runs, cfg))
    if args.json:
        write_json(args.json, runs, cfg, started)
        log(f"raw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
