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
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

DEFAULT_MODEL_ID = "qwen2.5-coder-0.5b-instruct"
DEFAULT_GGUF_NAME = "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
QUESTION = (
    "Write a Python function that merges overlapping intervals in a list of "
    "(start, end) tuples. Explain the algorithm step by step and give its "
    "time complexity."
)
WARMUP_MAX_TOKENS = 8
ALL_TARGETS = ("inferd", "bare", "llama-http", "llama-native")
TARGET_LABELS = {
    "inferd": "inferd",
    "bare": "xllamacpp-bare",
    "llama-http": "llama-server (HTTP)",
    "llama-native": "llama-server (native)",
}
BASELINE = "bare"
NOISY_CPU_PCT = 10.0
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
class RequestResult:
    """Measurements of one streamed request (times in seconds)."""

    ok: bool
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    content_deltas: int = 0
    usage_reported: bool = False
    duration_s: float = 0.0
    error: str | None = None


@dataclass
class LevelSummary:
    """Aggregated results of one target at one concurrency level."""

    target: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    completion_tokens: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    itl_p50_ms: float | None
    tokens_per_s: float
    other_cpu_pct: float | None = None  # CPU used by unrelated processes during the level


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


# A stream function sends one streamed request (messages, max_tokens) and returns its measurements.
StreamFn = Callable[[list[dict[str, str]], int], RequestResult]


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of ``values``; None if empty."""
    if not values:
        return None
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def summarize(target: str, concurrency: int, results: list[RequestResult], wall_s: float) -> LevelSummary:
    ok = [r for r in results if r.ok]
    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    itls = [gap for r in ok for gap in r.itl_s]
    tokens = sum(r.completion_tokens for r in ok)
    return LevelSummary(
        target=target,
        concurrency=concurrency,
        requests=len(results),
        errors=len(results) - len(ok),
        wall_s=wall_s,
        completion_tokens=tokens,
        ttft_p50_ms=to_ms(percentile(ttfts, 50)),
        ttft_p95_ms=to_ms(percentile(ttfts, 95)),
        itl_p50_ms=to_ms(percentile(itls, 50)),
        tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
    )


# --------------------------------------------------------------------------- streaming


class DeltaClock:
    """Turns a stream of chunks into TTFT / ITL / token measurements."""

    def __init__(self, t_send: float) -> None:
        self.t_send = t_send
        self.t_last: float | None = None
        self.result = RequestResult(ok=True)

    def chunk(self, obj: dict[str, Any], now: float) -> None:
        if "error" in obj:
            self.result.ok = False
            self.result.error = str(obj["error"])[:300]
            return
        usage = obj.get("usage")
        if usage and usage.get("completion_tokens") is not None:
            self.result.completion_tokens = int(usage["completion_tokens"])
            self.result.usage_reported = True
        choices = obj.get("choices")
        if not choices:
            return
        content = (choices[0].get("delta") or {}).get("content")
        if not content:
            return
        if self.t_last is None:
            self.result.ttft_s = now - self.t_send
        else:
            self.result.itl_s.append(now - self.t_last)
        self.t_last = now
        self.result.content_deltas += 1

    def finish(self, now: float) -> RequestResult:
        r = self.result
        r.duration_s = now - self.t_send
        if not r.usage_reported:
            r.completion_tokens = r.content_deltas
        if r.ok and r.ttft_s is None:
            r.ok = False
            r.error = r.error or "stream ended without any content delta"
        return r


def iter_sse_data(response: httpx.Response) -> Iterator[bytes]:
    """Yields the payload of each ``data:`` line, from raw bytes (no decoding layers)."""
    buf = b""
    for piece in response.iter_raw():
        buf += piece
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line = buf[:nl].rstrip(b"\r")
            buf = buf[nl + 1 :]
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if buf.startswith(b"data:"):
        yield buf[5:].strip()


def make_http_stream(
    client: httpx.Client,
    url: str,
    key: str | None,
    model_id: str,
    extra_body: dict[str, Any],
) -> StreamFn:
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if key:
        headers["Authorization"] = f"Bearer {key}"

    def stream(messages: list[dict[str, str]], max_tokens: int) -> RequestResult:
        body = {
            "model": model_id,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            **extra_body,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        t_send = time.perf_counter()
        clock = DeltaClock(t_send)
        try:
            with client.stream("POST", url, json=body, headers=headers) as resp:
                if resp.status_code != 200:
                    resp.read()
                    return RequestResult(
                        ok=False,
                        error=f"HTTP {resp.status_code}: {resp.text[:300]}",
                        duration_s=time.perf_counter() - t_send,
                    )
                for data in iter_sse_data(resp):
                    now = time.perf_counter()
                    if data == b"[DONE]":
                        break
                    clock.chunk(json.loads(data), now)
        except httpx.HTTPError as exc:
            return RequestResult(ok=False, error=f"{type(exc).__name__}: {exc}", duration_s=time.perf_counter() - t_send)
        return clock.finish(time.perf_counter())

    return stream


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


# --------------------------------------------------------------------------- noise check


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_jiffies() -> int | None:
    """All CPUs' non-idle time from /proc/stat (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def _process_jiffies(pid: int | str) -> int:
    """utime + stime of a process (all its threads), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class CpuMonitor:
    """Measures how much CPU processes other than ours (this one + the server) used meanwhile.

    On a small machine any such activity skews the numbers; the tables flag it.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.pids: list[int | str] = ["self"] + ([server_pid] if server_pid else [])
        self.t0 = time.perf_counter()
        self.busy0 = _busy_jiffies()
        self.own0 = sum(_process_jiffies(p) for p in self.pids)

    def other_cpu_pct(self) -> float | None:
        busy = _busy_jiffies()
        if busy is None or self.busy0 is None:
            return None
        own = sum(_process_jiffies(p) for p in self.pids)
        wall = time.perf_counter() - self.t0
        capacity = wall * CLK_TCK * (os.cpu_count() or 1)
        other = (busy - self.busy0) - (own - self.own0)
        return max(0.0, 100.0 * other / capacity) if capacity > 0 else None


def wait_for_quiet(server_pid: int | None, max_wait_s: float, label: str) -> None:
    """Waits (up to ``max_wait_s``) until other processes use under NOISY_CPU_PCT for 2 s."""
    if max_wait_s <= 0 or _busy_jiffies() is None:
        return
    deadline = time.monotonic() + max_wait_s
    announced = False
    while True:
        monitor = CpuMonitor(server_pid)
        time.sleep(2.0)
        pct = monitor.other_cpu_pct() or 0.0
        if pct <= NOISY_CPU_PCT:
            if announced:
                log(f"[{label}] machine quiet again")
            return
        if time.monotonic() >= deadline:
            log(f"[{label}] other processes still use {pct:.0f}% CPU; measuring anyway")
            return
        if not announced:
            log(f"[{label}] other processes use {pct:.0f}% CPU; waiting up to {max_wait_s:.0f}s for quiet")
            announced = True


# --------------------------------------------------------------------------- load generation


class PromptFactory:
    """Unique prompts: a random run tag plus a global request counter, then a fixed question."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> list[dict[str, str]]:
        with self._lock:
            self._n += 1
            n = self._n
        return [{"role": "user", "content": f"[run {self.run_id} req {n}] {QUESTION}"}]


def run_level(stream: StreamFn, prompts: PromptFactory, concurrency: int, per_worker: int, max_tokens: int) -> tuple[list[RequestResult], float]:
    """``concurrency`` workers each send ``per_worker`` requests back to back."""

    def worker() -> list[RequestResult]:
        return [stream(prompts.next(), max_tokens) for _ in range(per_worker)]

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        t0 = time.perf_counter()
        futures = [pool.submit(worker) for _ in range(concurrency)]
        results = [r for f in futures for r in f.result()]
        wall = time.perf_counter() - t0
    return results, wall


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


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float, need_ready_status: bool) -> None:
    """Polls ``url`` until it answers 200 (and, for inferd, ``{"status": "ready"}``)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} while starting")
            try:
                r = client.get(url)
                if r.status_code == 200:
                    if not need_ready_status:
                        return
                    with contextlib.suppress(ValueError):
                        if r.json().get("status") == "ready":
                            return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def started_process(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        yield proc
    finally:
        stop_process(proc)


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


def http_client(max_concurrency: int) -> httpx.Client:
    limits = httpx.Limits(max_connections=max_concurrency + 2, max_keepalive_connections=max_concurrency + 2)
    timeout = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=600.0)
    return httpx.Client(limits=limits, timeout=timeout, trust_env=False)


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


def fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


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
