"""Connection caps, per client address and in total: a clean 503 past them, the server working at them."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from ..edge_client import TINY, closed_by_server, connect, first_events, raise_fd_limit, read_reply, tiny_library
from ..harness import Server, library_server

PER_CLIENT = 10
TOTAL = 40
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    raise_fd_limit(4096)
    folder = tmp_path_factory.mktemp("edge-caps")
    env = {"INFERD_MAX_CONNECTIONS": str(TOTAL), "INFERD_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
           "INFERD_HEAD_TIMEOUT": "120", "INFERD_KEEPALIVE_TIMEOUT": "120"}
    with library_server(folder, models_dir, tiny_library(folder, context_length=4096), env) as srv:
        yield srv


def assert_refused(sock: socket.socket) -> None:
    sock.sendall(HEALTH)
    reply = read_reply(sock)
    assert reply.status == 503 and reply.headers["retry-after"] == "1", reply
    assert reply.json()["error"]["code"] == "too_many_connections"
    assert closed_by_server(sock, within=30)


def served(sock: socket.socket) -> bool:
    sock.sendall(HEALTH)
    return read_reply(sock).status == 200


def served_soon(port: int, source: str) -> bool:
    """Served once the server has seen the closes (they reach it asynchronously): a few tries."""
    for _ in range(50):
        with connect(port, source) as sock:
            if served(sock):
                return True
        time.sleep(0.2)
    return False


def test_a_client_address_past_its_cap_is_refused_and_others_are_served(capped: Server) -> None:
    held = [connect(capped.port, "127.0.0.2") for _ in range(PER_CLIENT)]
    try:
        assert served(held[0])  # admitted connections work
        for _ in range(20):  # many refusals, one warning line
            with connect(capped.port, "127.0.0.2") as extra:
                assert_refused(extra)
        with connect(capped.port, "127.0.0.3") as other:
            assert served(other)
    finally:
        for sock in held:
            sock.close()
    log = capped.log()
    assert log.count("refused a connection from 127.0.0.2") == 1, log[-3000:]
    assert "maximum of 10 open connections" in log
    assert served_soon(capped.port, "127.0.0.2")  # closing frees the places


def test_at_the_total_cap_new_connections_are_refused_and_open_ones_keep_working(capped: Server) -> None:
    key = capped.create_key()
    stream = first_events(capped.port, key, {"model": TINY, "max_tokens": 1000,
                                             "messages": [{"role": "user", "content": "go on"}]}, source="127.0.0.9")
    keepalive = connect(capped.port, "127.0.0.8")
    assert served(keepalive)
    held = [connect(capped.port, f"127.0.1.{i // PER_CLIENT}") for i in range(TOTAL - 2)]
    try:
        with connect(capped.port, "127.0.0.7") as extra:
            assert_refused(extra)
        assert served(keepalive)  # /health answers on an open connection
        rest = b""
        while b"data: [DONE]" not in rest:  # the open stream goes on to its end
            chunk = stream.recv(65536)
            assert chunk, rest[-300:]
            rest += chunk
        assert b'"error"' not in rest
    finally:
        for sock in held + [keepalive, stream]:
            sock.close()
    assert served_soon(capped.port, "127.0.0.7")
