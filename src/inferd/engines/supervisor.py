"""Child engine processes: start, wait until ready, restart with backoff after a crash, stop.

Each engine runs under a warden (``warden.py``) so that it dies with inferd, even when inferd is
killed with SIGKILL. A child's output is copied to inferd's stderr, and its last lines are kept
to explain a failure. A fresh loopback port is chosen for every (re)start.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from .procs import descendants

log = logging.getLogger("inferd")
output = logging.getLogger("inferd.engine.output")  # logs.configure: raw lines in text mode, JSON objects in json

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child up this long has its backoff reset
TAIL_LINES = 20


@dataclass(frozen=True)
class ChildSpec:
    """How to run one engine: its command (``{port}`` is replaced), environment and patience."""

    name: str  # for logs: the model id
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 300.0  # seconds from spawn to ready
    stop_grace: float = 5.0  # seconds between SIGTERM and SIGKILL


class StartFailed(Exception):
    """The child exited, or did not become ready in time, during a start."""


Probe = Callable[[str], Awaitable[bool]]  # base URL -> ready?


class Supervisor:
    def __init__(self, child: ChildSpec, probe: Probe) -> None:
        self._child = child
        self._probe = probe
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._engine_pid: int | None = None
        self._last_exit: int | None = None
        self.port = 0
        self.state = "loading"
        self.error = ""
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The engine's own process (the warden's child), found when it became ready."""
        return self._engine_pid

    @property
    def returncode(self) -> int | None:
        """The exit status of the child that ended last (the warden passes the engine's on)."""
        if self._proc is not None and self._proc.returncode is not None:
            return self._proc.returncode
        return self._last_exit

    async def exited(self, within: float) -> bool:
        """Whether the child is gone, or goes within ``within`` seconds (a broken stream's likely cause)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), within)
        except asyncio.TimeoutError:
            return False
        return True

    async def start(self) -> None:
        """Start and wait until ready; StartFailed (state ``failed``) if it cannot."""
        try:
            await self._spawn_until_ready()
        except StartFailed as exc:
            self.state, self.error = "failed", str(exc)
            raise
        self.state = "ready"
        self._watch = asyncio.create_task(self._keep_alive())

    async def stop(self) -> None:
        self.state = "stopping"
        if self._watch is not None:
            self._watch.cancel()
        await self._terminate()
        self.state = "stopped"

    async def _keep_alive(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            assert self._proc is not None
            started = time.monotonic()
            code = await self._proc.wait()
            backoff = BACKOFF_FIRST_S if time.monotonic() - started > STABLE_AFTER_S else backoff
            self.state, self.restarts, self._engine_pid = "restarting", self.restarts + 1, None
            self.error = f"the engine process exited ({describe_exit(code)})"
            log.warning("model %s: %s; restarting in %.0f s", self._child.name, self.error, backoff)
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                try:
                    await self._spawn_until_ready()
                    break
                except StartFailed as exc:
                    self.error = str(exc)
                    log.warning("model %s: restart failed: %s; next try in %.0f s", self._child.name, exc, backoff)
            self.state = "ready"
            log.info("model %s: engine ready again (pid %s)", self._child.name, self.pid)

    async def _spawn_until_ready(self) -> None:
        await self._terminate()
        self.port, self._engine_pid = free_port(), None
        self._proc = await self._spawn()
        deadline = time.monotonic() + self._child.start_timeout
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                await asyncio.gather(*self._pumps)  # the child's last words
                raise StartFailed(f"the engine process exited during start-up ({describe_exit(self._proc.returncode)})"
                                  f"{self._last_words()}")
            if await self._probe(self.url):
                found = descendants(self._proc.pid)
                self._engine_pid = found[0] if found else None
                return
            await asyncio.sleep(0.2)
        await self._terminate()
        raise StartFailed(f"the engine was not ready after {self._child.start_timeout:.0f} s{self._last_words()}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        argv = [a.replace("{port}", str(self.port)) for a in self._child.argv]
        warden = [sys.executable, "-m", "inferd.engines.warden", str(self._child.stop_grace), "--", *argv]
        env = {**os.environ, **self._child.env, "INFERD_WARDEN_PARENT": str(os.getpid())}
        proc = await asyncio.create_subprocess_exec(
            *warden, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        self._tail.clear()
        pump = asyncio.create_task(self._pump(proc.stdout))
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)
        return proc

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        """Copy the child's output to our log (stderr), keeping the last lines."""
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(text.rstrip())
            output.info(text)

    def _last_words(self) -> str:
        lines = [line for line in self._tail if line.strip()][-3:]
        return (": " + " | ".join(lines)) if lines else ""

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is not None:
            self._last_exit = proc.returncode
            return
        proc.terminate()  # the warden stops the engine's whole group
        try:
            await asyncio.wait_for(proc.wait(), self._child.stop_grace + 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code > 128:
        return f"killed by signal {code - 128}"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
