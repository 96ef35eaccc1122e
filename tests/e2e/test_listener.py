"""llama.cpp's own HTTP listener (in each engine's child process) must not bypass inferd's auth."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from ..conftest import QWEN
from ..harness import Server


def listening_ports(pid: int) -> set[int]:
    """Loopback TCP ports the process listens on (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to find the listener's port")
def test_the_engine_listener_refuses_requests_without_its_private_key(server: Server, api_key: str) -> None:
    engines = httpx.get(server.url + "/health", timeout=10).json()["engines"]
    pids = {card["pid"] for card in engines.values()}
    assert len(pids) == 2 and server.process.pid not in pids  # each model's engine is a process of its own
    engine_ports = set().union(*(listening_ports(pid) for pid in pids))
    assert len(engine_ports) == 2 and server.port not in engine_ports  # one llama.cpp listener per loaded model
    for port in engine_ports:
        base = f"http://127.0.0.1:{port}"
        chat = {"model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        for headers in ({}, {"Authorization": f"Bearer {api_key}"}):  # inferd's own keys are no use there either
            assert httpx.post(base + "/v1/chat/completions", json=chat, headers=headers, timeout=30).status_code == 401
            assert httpx.post(base + "/completion", json={"prompt": "hi"}, headers=headers, timeout=30).status_code == 401
            assert httpx.post(base + "/tokenize", json={"content": "hi"}, headers=headers, timeout=30).status_code == 401
        assert httpx.get(base + "/", timeout=30).status_code in {401, 404}  # the web UI is off
