"""Reaching the vLLM server inferd runs for a model, directly, and watching its processes.

inferd starts vLLM on a random loopback port with a random key that it never logs or puts on a
command line. Tests and benchmarks find both the way an operator on the machine could: the
engine's pid in ``/health``, its port in ``/proc/PID/cmdline``, its key in ``/proc/PID/environ``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx


@dataclass(frozen=True)
class Engine:
    """The vLLM server behind an inferd model, called directly."""

    model: str
    pid: int
    port: int
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(self.url + "/v1/chat/completions", json={"model": self.model, **body}, timeout=300,
                              headers={"Authorization": f"Bearer {self.key}"})
        assert response.status_code == 200, response.text
        return response.json()

    def streamed_text(self, body: dict[str, Any]) -> str:
        pieces = []
        with httpx.stream("POST", self.url + "/v1/chat/completions", json={"model": self.model, "stream": True, **body},
                          headers={"Authorization": f"Bearer {self.key}"}, timeout=300) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        pieces.append(choice["delta"].get("content") or "")
        return "".join(pieces)

    def metric(self, name: str) -> float:
        """A counter or gauge from vLLM's Prometheus metrics (summed over its labels)."""
        lines = httpx.get(self.url + "/metrics", timeout=10).text.splitlines()
        values = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{")]
        assert values, f"no metric {name}"
        return sum(values)


def engine_card(base_url: str, model: str) -> dict[str, Any]:
    """The model's engine in inferd's ``/health``: kind, state, pid, rss_bytes, restarts."""
    return httpx.get(base_url + "/health", timeout=10).json()["engines"][model]


def find_engine(base_url: str, model: str) -> Engine:
    pid = engine_card(base_url, model)["pid"]
    assert isinstance(pid, int), "inferd reports the engine's pid"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
                   if "=" in item)
    return Engine(model=model, pid=pid, port=int(argv[argv.index("--port") + 1]), key=environ["VLLM_API_KEY"])


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        children.setdefault(int(text[text.rindex(")") + 2:].split()[1]), []).append(int(stat.parent.name))
    tree, todo = set(), [pid]
    while todo:
        tree.add(current := todo.pop())
        todo.extend(children.get(current, ()))
    return tree


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended: only its exit status is left)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if state[state.rindex(")") + 2] != "Z":
            running.add(pid)
    return running


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Whether ``predicate`` held within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    if not wait_until(predicate, timeout):
        raise AssertionError(f"not within {timeout:.0f} s: {what}")
