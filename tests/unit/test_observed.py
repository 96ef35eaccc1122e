"""Request ids, access-line paths, JSON log lines and the metrics access rule, in isolation."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request

from inferd.api.metrics import allowed
from inferd.api.observed import chosen_id, shown_path
from inferd.logs import JsonFormatter, RequestIdFilter, request_id


def scope(*headers: tuple[bytes, bytes], client: str = "127.0.0.1") -> dict:
    return {"type": "http", "method": "GET", "path": "/metrics", "headers": list(headers), "client": (client, 1)}


def test_a_valid_request_id_is_kept_and_any_other_replaced() -> None:
    assert chosen_id(scope((b"x-request-id", b"abc-1.2:3_Z"))) == "abc-1.2:3_Z"
    for bad in (b"", b"a" * 129, b"a b", b"a\nb", b"\xc3\xbc", b"a/b"):
        got = chosen_id(scope((b"x-request-id", bad)))
        assert got != bad.decode("latin-1") and len(got) == 32
    assert len(chosen_id(scope())) == 32 and chosen_id(scope()) != chosen_id(scope())


def test_an_access_path_is_one_bounded_printable_line() -> None:
    assert shown_path("/api/v1/models") == "/api/v1/models"
    assert "\n" not in shown_path("/x\n2026 INFO forged line") and len(shown_path("/" + "a" * 5000)) <= 203


def test_json_lines_carry_the_request_id_of_their_request() -> None:
    record = logging.LogRecord("inferd", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    token = request_id.set("req-7")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you" and line["request_id"] == "req-7" and line["level"] == "info"


def test_metrics_are_for_loopback_or_the_token_holder() -> None:
    assert allowed(Request(scope()), "")
    assert allowed(Request(scope(client="::1")), "")
    assert allowed(Request(scope(client="::ffff:127.0.0.1")), "")
    assert not allowed(Request(scope(client="10.0.0.7")), "")
    assert not allowed(Request(scope(client="10.0.0.7")), "tok")
    assert not allowed(Request(scope()), "tok")  # a token, once set, is asked of loopback clients too
    assert allowed(Request(scope((b"authorization", b"Bearer tok"), client="10.0.0.7")), "tok")
    assert not allowed(Request(scope((b"authorization", b"Bearer tok2"), client="10.0.0.7")), "tok")
