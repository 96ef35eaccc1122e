"""Raw-socket clients for the HTTP edge tests: what a hostile or unlucky client does, on loopback only."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .tiny_vlm import write_tiny_vlm

TINY = "tiny"


def tiny_library(folder: Path, *, parallel: int = 2, context_length: int = 256) -> str:
    """A library TOML serving the tiny random model (fast: its generations take milliseconds)."""
    model, _ = write_tiny_vlm(folder / "tiny")
    return (f'[[models]]\nid = "{TINY}"\nfile = "{model}"\ncontext_length = {context_length}\n'
            f'parallel = {parallel}\n')


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's descriptor soft limit to ``wanted`` (bounded by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


def connect(port: int, source: str = "127.0.0.1", timeout: float = 30.0) -> socket.socket:
    """A TCP connection to the server from a loopback ``source`` address (127.0.0.0/8 all reaches lo)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def read_reply(sock: socket.socket) -> Reply:
    """One response with a content-length (the edge's own answers and the app's JSON ones)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(int(lines[0].split()[1]), headers, body)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server ends the connection (EOF or reset) within ``within`` seconds; output is skipped."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except (TimeoutError, socket.timeout):
            return False
    return False


@contextlib.contextmanager
def sending(sock: socket.socket, data: bytes) -> Iterator[threading.Thread]:
    """Send ``data`` on a thread (the server may answer and close before it is all sent)."""
    def send() -> None:
        with contextlib.suppress(OSError):
            sock.sendall(data)
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(timeout=30)


def chat_request(key: str, body: dict, *, path: str = "/api/v1/chat/completions") -> bytes:
    raw = json.dumps(body)
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n{raw}").encode()


def _status(pid: int, field: str) -> int:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split(field + ":")[1].split()[0])
    except (OSError, IndexError):
        return 0  # the process ended meanwhile


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the server and its engine processes), from Linux /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def rss_kib(pid: int) -> int:
    """Resident memory of the server and its engine processes together."""
    return sum(_status(p, "VmRSS") for p in process_tree(pid))


def num_threads(pid: int) -> int:
    """Threads of the server and its engine processes together."""
    return sum(_status(p, "Threads") for p in process_tree(pid))


def first_events(port: int, key: str, body: dict, count: int = 2, **kwargs: object) -> socket.socket:
    """Start a stream and read until ``count`` SSE data events arrived; the socket is left open."""
    sock = connect(port, **kwargs)  # type: ignore[arg-type]
    sock.sendall(chat_request(key, {**body, "stream": True}))
    seen = b""
    while seen.count(b"data: ") < count:
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 200"), seen[:300]
    return sock
