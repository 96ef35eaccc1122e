"""Request heads: size, field count and target length are capped, in constant memory and time."""

from __future__ import annotations

import pytest

from ..edge_client import closed_by_server, connect, read_reply, rss_kib, sending
from ..harness import Server

KIB, MIB = 1024, 1024 * 1024


def assert_edge_error(reply, status: int, code: str) -> None:
    assert reply.status == status, reply
    assert reply.headers["connection"] == "close"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert error["type"] == "invalid_request_error" and error["message"]


@pytest.mark.parametrize("size", [64 * KIB + 1, 1 * MIB, 16 * MIB], ids=["64KiB+1", "1MiB", "16MiB"])
def test_an_oversized_header_gets_431_without_growing_the_server(server: Server, size: int) -> None:
    before = rss_kib(server.process.pid)
    sock = connect(server.port)
    with sending(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * size + b"\r\n\r\n"):
        assert_edge_error(read_reply(sock), 431, "headers_too_large")
        assert closed_by_server(sock, within=30)
    sock.close()
    assert rss_kib(server.process.pid) - before < 8 * KIB  # the old server kept ~2 bytes per header byte
    assert server.is_healthy()


def test_a_head_that_never_ends_is_refused_once_it_passes_the_cap(server: Server) -> None:
    """The answer comes after the cap, not after the end of the head (which never comes here)."""
    with connect(server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * MIB)  # no end of line, no end of head
        assert_edge_error(read_reply(sock), 431, "headers_too_large")
    assert server.is_healthy()


def test_too_many_header_fields_get_431(server: Server) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
    with connect(server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert_edge_error(read_reply(sock), 431, "headers_too_large")


def test_a_long_request_target_gets_414(server: Server) -> None:
    with connect(server.port) as sock:
        with sending(sock, b"GET /api/v1/models/" + b"m" * (16 * KIB) + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
            assert_edge_error(read_reply(sock), 414, "uri_too_long")


def test_heads_within_the_caps_are_served(server: Server) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(90))
    with connect(server.port) as sock:
        sock.sendall(b"GET /health?" + b"q" * 7000 + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"A" * (56 * KIB) +
                     b"\r\n" + fields + b"\r\n")
        assert read_reply(sock).status == 200


def test_malformed_http_gets_a_json_400_and_a_close(server: Server) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert_edge_error(read_reply(sock), 400, "malformed_http")
        assert closed_by_server(sock, within=30)
