"""Signals: the runner's drain seam (keep accepting while the app drains), a second signal stops at once,
and a plain SIGTERM stops the real server with exit status 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ..edge_client import tiny_library
from ..harness import free_port, library_server

ROOT = Path(__file__).resolve().parents[2]


def start_drain_app(drain_seconds: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.drain_app", str(port), str(drain_seconds)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(150):
        try:
            if httpx.get(url, timeout=2).text == "serving":
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(process.communicate()[0])


@pytest.fixture()
def stopped_later() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_first_signal_drains_while_accepting_then_exits_0(stopped_later: list[subprocess.Popen]) -> None:
    process, url = start_drain_app(drain_seconds=3)
    stopped_later.append(process)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert httpx.get(url, timeout=5).text == "draining"  # new connections are still accepted while draining
    assert process.wait(timeout=60) == 0
    output = process.stdout.read()  # type: ignore[union-attr]
    assert "drain started" in output and "drain finished" in output


def test_a_second_signal_stops_at_once(stopped_later: list[subprocess.Popen]) -> None:
    process, url = start_drain_app(drain_seconds=600)
    stopped_later.append(process)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert httpx.get(url, timeout=5).text == "draining"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 1  # long before the 600 s drain would end
    assert "drain finished" not in process.stdout.read()  # type: ignore[union-attr]


def test_sigterm_stops_the_server_with_status_0(tmp_path: Path, models_dir: Path) -> None:
    with library_server(tmp_path, models_dir, tiny_library(tmp_path)) as srv:
        srv.process.send_signal(signal.SIGTERM)
        assert srv.process.wait(timeout=60) == 0, srv.log()[-2000:]
