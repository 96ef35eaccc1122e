"""The load generator every benchmark here shares: streamed requests, their clocks, levels, noise.

A *stream function* sends one streamed chat completion and returns its measurements
(``RequestResult``: time to first token, inter-token gaps, completion tokens from ``usage``);
``run_level`` runs *c* closed-loop workers of them; ``summarize`` turns a level into
percentiles and aggregate tokens/s; ``CpuMonitor`` and ``wait_for_quiet`` measure and avoid
other processes' CPU use on a small machine. ``bench.py`` (inferd vs. the llama.cpp engine)
and ``engines.py`` (inferd vs. vLLM, and the two engines side by side) are built on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

QUESTION = (
    "Write a Python function that merges overlapping intervals in a list of "
    "(start, end) tuples. Explain the algorithm step by step and give its "
    "time complexity."
)
NOISY_CPU_PCT = 10.0


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


def _process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (an engine inferd runs is a child of its own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(entry.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], ()))
    return tree


class CpuMonitor:
    """Measures how much CPU processes other than ours (this one + the server and its children) used meanwhile.

    On a small machine any such activity skews the numbers; the tables flag it.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.pids: list[int | str] = ["self"] + (_process_tree(server_pid) if server_pid else [])
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


def http_client(max_concurrency: int) -> httpx.Client:
    limits = httpx.Limits(max_connections=max_concurrency + 2, max_keepalive_connections=max_concurrency + 2)
    timeout = httpx.Timeout(connect=10.0, read=600.0, write=30.0, pool=600.0)
    return httpx.Client(limits=limits, timeout=timeout, trust_env=False)



def fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
