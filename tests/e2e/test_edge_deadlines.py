"""Stalled and slow clients: heads, bodies and idle connections have deadlines; early answers close."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ..edge_client import (TINY, chat_request, closed_by_server, connect, raise_fd_limit, read_reply, tiny_library)
from ..harness import Server, library_server

HEAD_S = 2.0
SLACK_S = 20.0  # generous: the deadlines are enforced at all, not timed
NUM_STALLED = 300
STALLS = [b"", b"GET /hea", b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le"]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    raise_fd_limit(4096)
    folder = tmp_path_factory.mktemp("edge-deadlines")
    env = {"INFERD_HEAD_TIMEOUT": str(HEAD_S), "INFERD_BODY_RATE_WINDOW": "1", "INFERD_BODY_MIN_RATE": "1000",
           "INFERD_KEEPALIVE_TIMEOUT": "1", "INFERD_MAX_CONNECTIONS_PER_CLIENT": "1000", "INFERD_LOG_LEVEL": "debug"}
    with library_server(folder, models_dir, tiny_library(folder, context_length=4096), env) as srv:
        yield srv


@pytest.fixture(scope="module")
def key(edge: Server) -> str:
    return edge.create_key()


def test_stalled_connections_are_closed_by_the_head_deadline(edge: Server, key: str) -> None:
    stalled = []
    for i in range(NUM_STALLED):
        sock = connect(edge.port)
        if STALLS[i % 3]:
            sock.sendall(STALLS[i % 3])
        stalled.append(sock)
    try:
        # meanwhile, normal requests are served
        assert httpx.get(edge.url + "/health", timeout=30).status_code == 200
        reply = httpx.post(edge.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                           timeout=30)
        assert reply.status_code == 200
        deadline = time.monotonic() + HEAD_S + SLACK_S
        assert all(closed_by_server(s, max(deadline - time.monotonic(), 0.01)) for s in stalled)
    finally:
        for sock in stalled:
            sock.close()
    assert "request head timeout" in edge.log() and "no request within" in edge.log()  # logged at debug
    assert edge.is_healthy()


def test_a_partial_head_gets_408(edge: Server) -> None:
    with connect(edge.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        reply = read_reply(sock)
    assert reply.status == 408 and reply.json()["error"]["code"] == "request_timeout"


def test_a_stalled_body_gets_408_and_a_close(edge: Server, key: str) -> None:
    with connect(edge.port) as sock:
        sock.sendall(chat_request(key, {"model": TINY, "messages": []})[:-5])  # the body's last bytes never come
        reply = read_reply(sock)
        assert reply.status == 408 and reply.json()["error"]["code"] == "request_timeout"
        assert closed_by_server(sock, within=SLACK_S)


def test_a_trickling_body_is_cut_off(edge: Server, key: str) -> None:
    """One byte every 0.2 s is far below the minimum rate (1000 bytes/s in this server)."""
    head = (f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Length: 5000\r\n\r\n").encode()
    with connect(edge.port) as sock:
        sock.sendall(head)
        for _ in range(int(SLACK_S / 0.2)):
            try:
                sock.sendall(b" ")
            except OSError:
                break
            time.sleep(0.2)
        reply = read_reply(sock)
    assert reply.status == 408 and "slower than 1000 bytes/s" in reply.json()["error"]["message"]


def test_a_body_sent_in_pieces_at_a_good_rate_is_served(edge: Server, key: str) -> None:
    raw = chat_request(key, {"model": TINY, "messages": [{"role": "user", "content": "x " * 1500}], "max_tokens": 1})
    with connect(edge.port) as sock:
        for start in range(0, len(raw), 1500):
            sock.sendall(raw[start:start + 1500])
            time.sleep(0.3)
        assert read_reply(sock).status == 200


def test_an_idle_keepalive_connection_is_closed(edge: Server) -> None:
    with connect(edge.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_reply(sock).status == 200
        assert closed_by_server(sock, within=1 + SLACK_S)


@pytest.mark.parametrize("auth", [True, False], ids=["413", "401"])
def test_an_answer_before_the_body_was_read_closes_the_connection(server: Server, api_key: str, auth: bool) -> None:
    """The client is still sending a large body (slowly) when the answer comes: the server must close."""
    head = (f"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\n{'Authorization: Bearer ' + api_key if auth else 'X: y'}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {30 * 1024 * 1024}\r\n\r\n").encode()
    with connect(server.port) as sock:
        sock.sendall(head + b"{" + b" " * 4096)
        reply = read_reply(sock)
        assert reply.status == (413 if auth else 401), reply
        assert reply.headers["connection"] == "close"
        assert closed_by_server(sock, within=SLACK_S)  # the old server kept it open for minutes
    assert server.is_healthy()


def test_a_silent_connection_is_closed_without_an_answer(edge: Server) -> None:
    with connect(edge.port) as sock:
        sock.settimeout(HEAD_S + SLACK_S)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        except socket.timeout:
            pytest.fail("a connection that sent nothing was not closed by the head deadline")
