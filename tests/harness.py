"""Run the real inferd server as a subprocess on a free loopback port, as users do."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx

READY_TIMEOUT_S = 180.0
NETGUARD_SITE = Path(__file__).resolve().parent / "netguard_site"


def guarded_env() -> dict[str, str]:
    """A server that can reach loopback only (tests/netguard.py): the guard's site folder first on its path,
    the sources under test after it."""
    path = os.pathsep.join(p for p in (str(NETGUARD_SITE), os.environ.get("PYTHONPATH", "")) if p)
    return {"INFERD_TEST_NETGUARD": "1", "PYTHONPATH": path}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inferd(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inferd", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=check, stdin=subprocess.DEVNULL)


class Server:
    def __init__(self, data_dir: Path, models_dir: Path, *, library: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"server-{self.port}.log"
        self.env = {"INFERD_MODELS_DIR": str(models_dir), "INFERD_DATA_DIR": str(data_dir), **(env or {})}
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if library is not None:
            args += ["--library", str(library)]
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "inferd", *args], stdout=self._log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                        stdin=subprocess.DEVNULL)

    def wait_health(self, status: str = "ready", timeout: float = READY_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"inferd exited with {self.process.returncode}:\n{self.log()}")
            try:
                last = httpx.get(self.url + "/health", timeout=2).json()
                if last.get("status") == status:
                    return last
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"inferd not {status} in {timeout}s (last health {last}):\n{self.log()[-3000:]}")

    def create_key(self, name: str | None = None) -> str:
        result = inferd("keys", "create", "--name", name or f"k-{secrets.token_hex(4)}", env=self.env)
        return result.stdout.strip().splitlines()[-1]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def is_healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def library_server(folder: Path, models_dir: Path, library_toml: str,
                   env: dict[str, str] | None = None, ready_timeout: float = READY_TIMEOUT_S) -> Iterator[Server]:
    """A ready server on a library of the test's own (written to ``folder``), stopped afterwards."""
    library = folder / "library.toml"
    library.write_text(library_toml)
    srv = Server(folder / "data", models_dir, library=library, env=env)
    try:
        srv.wait_health(timeout=ready_timeout)
        yield srv
    finally:
        srv.stop()
