"""The edge's pieces on their own: connection counting and its rate-limited warning, the raw error
response, and the limits in Settings."""

from __future__ import annotations

import json
import logging

import pytest

from inferd.edge.connections import WARN_INTERVAL_S, ConnectionRegistry
from inferd.edge.responses import raw_response
from inferd.errors import HeadersTooLarge, TooManyConnections
from inferd.settings import load_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_caps_per_client_and_in_total() -> None:
    registry = ConnectionRegistry(max_total=3, max_per_client=2, clock=Clock())
    assert registry.admit("a") is None and registry.admit("a") is None
    assert "client address" in (registry.admit("a") or "")
    assert registry.admit("b") is None
    assert "server holds" in (registry.admit("c") or "")
    registry.release("a")
    assert registry.admit("c") is None
    assert registry.num_open == 3 and registry.num_from("a") == 1


def test_no_per_client_cap_when_zero() -> None:
    registry = ConnectionRegistry(max_total=10, max_per_client=0)
    assert all(registry.admit("a") is None for _ in range(10))


def test_refusals_warn_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    registry = ConnectionRegistry(max_total=1, max_per_client=0, clock=clock)
    registry.admit("a")
    with caplog.at_level(logging.WARNING, logger="inferd.edge"):
        for _ in range(50):
            registry.admit("b")
        clock.now += WARN_INTERVAL_S
        registry.admit("b")
    assert len(caplog.records) == 2
    assert "49 more refused" in caplog.records[1].getMessage()


def test_raw_responses_carry_the_error_shape_and_close() -> None:
    head, _, body = raw_response(HeadersTooLarge("too big")).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"connection: close" in head and f"content-length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": {"message": "too big", "type": "invalid_request_error", "param": None,
                                          "code": "headers_too_large"}}
    assert b"retry-after: 1" in raw_response(TooManyConnections("full", retry_after=1))


def test_edge_limits_come_from_the_environment() -> None:
    settings = load_settings({"INFERD_MAX_HEADER_BYTES": "1024", "INFERD_HEAD_TIMEOUT": "2.5",
                              "INFERD_MAX_CONNECTIONS_PER_CLIENT": "0", "INFERD_SSE_KEEPALIVE": "1"})
    assert (settings.max_header_bytes, settings.head_timeout) == (1024, 2.5)
    assert settings.max_connections_per_client == 0 and settings.sse_keepalive == 1.0


@pytest.mark.parametrize("name,value", [("INFERD_HEAD_TIMEOUT", "0"), ("INFERD_MAX_CONNECTIONS", "-1"),
                                        ("INFERD_BODY_MIN_RATE", "-5"), ("INFERD_MAX_HEADERS", "x")])
def test_bad_edge_limits_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        load_settings({name: value})
