"""MediaFetcher against an in-process media server on 127.0.0.1 (nothing leaves loopback)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from typing import Iterator, Sequence

import pytest

from inferd.errors import InvalidRequest
from inferd.media.fetch import MediaFetcher, _request
from inferd.media.guard import MediaURL, Target
from inferd.settings import Settings

from ..media_server import IMAGE, MediaServer, running

PARAM = "messages[0].content[1].image_url.url"


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with running() as server:
        yield server


@pytest.fixture()
def other_port() -> Iterator[socket.socket]:
    """A listening socket nobody accepts on: any connection attempt would queue in its backlog."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def settings(media: MediaServer, **overrides: object) -> Settings:
    values: dict[str, object] = {"media_allow_hosts": (f"127.0.0.1:{media.port}",), "media_image_timeout": 5.0}
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def fetch(url: str, config: Settings, resolver=None, kind: str = "image") -> bytes:
    return asyncio.run(MediaFetcher(config, resolver).fetch(url, kind=kind, param=PARAM))


def failure(url: str, config: Settings, resolver=None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        fetch(url, config, resolver)
    assert info.value.status == 400 and info.value.param == PARAM
    return info.value


def assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()[0].close()


def test_good_fetch_returns_the_bytes(media: MediaServer) -> None:
    assert fetch(f"http://127.0.0.1:{media.port}/ok.png", settings(media)) == IMAGE
    assert fetch(f"http://127.0.0.1:{media.port}/ok.png", settings(media), kind="video") == IMAGE


@pytest.mark.parametrize("status", [404, 500, 304])
def test_error_status_is_a_400_naming_the_status(media: MediaServer, status: int) -> None:
    error = failure(f"http://127.0.0.1:{media.port}/status/{status}", settings(media))
    assert error.code == "media_fetch_failed" and f"HTTP {status}" in error.message


def test_redirects_to_allowed_paths_are_followed(media: MediaServer) -> None:
    base = f"http://127.0.0.1:{media.port}"
    assert fetch(f"{base}/redirect-to?url=/ok.png", settings(media)) == IMAGE
    assert fetch(f"{base}/redirect-to?url={base}/ok.png", settings(media)) == IMAGE
    assert fetch(f"{base}/redirect/3", settings(media)) == b"final"


def test_a_chain_of_four_redirects_is_refused(media: MediaServer) -> None:
    before = len(media.requests)
    error = failure(f"http://127.0.0.1:{media.port}/redirect/4", settings(media))
    assert error.code == "media_fetch_failed" and "redirected more than 3 times" in error.message
    assert len(media.requests) - before == 4


def test_redirect_to_a_port_not_allowed_is_refused_without_connecting(media: MediaServer, other_port: socket.socket) -> None:
    other = f"http://127.0.0.1:{other_port.getsockname()[1]}/x.png"
    error = failure(f"http://127.0.0.1:{media.port}/redirect-to?url={other}", settings(media))
    assert error.code == "invalid_media_url" and "redirected to" in error.message and "loopback" in error.message
    assert_no_connection(other_port)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1/", "http://u:p@127.0.0.1/"])
def test_redirect_to_a_refused_url_is_refused(media: MediaServer, target: str) -> None:
    error = failure(f"http://127.0.0.1:{media.port}/redirect-to?url={target}", settings(media))
    assert error.code == "invalid_media_url" and "redirected to" in error.message


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f000001", "127.1", "0177.0.0.1", "[::1]",
                                  "[::ffff:127.0.0.1]", "127.0.0.2"])
def test_other_spellings_of_loopback_are_refused_before_connecting(media: MediaServer, host: str) -> None:
    before = len(media.requests)
    error = failure(f"http://{host}:{media.port}/ok.png", settings(media))
    assert error.code == "invalid_media_url" and "loopback" in error.message
    assert "INFERD_MEDIA_ALLOW_HOSTS" in error.message and len(media.requests) == before


def test_a_slow_body_is_cut_off_at_the_timeout(media: MediaServer) -> None:
    started = time.monotonic()
    error = failure(f"http://127.0.0.1:{media.port}/slow", settings(media, media_image_timeout=1.5))
    assert error.code == "media_fetch_failed" and "timed out after 1.5 s" in error.message
    assert time.monotonic() - started < 1.5 + 2.0


def test_an_endless_body_is_cut_off_at_the_cap(media: MediaServer) -> None:
    error = failure(f"http://127.0.0.1:{media.port}/endless", settings(media, media_max_bytes=64 * 1024))
    assert error.code == "media_fetch_failed" and "more than this server's limit of 65536 bytes" in error.message


def test_a_declared_length_over_the_cap_is_refused_before_reading(media: MediaServer) -> None:
    error = failure(f"http://127.0.0.1:{media.port}/huge", settings(media))
    assert error.code == "media_fetch_failed" and "declared 10000000000 bytes" in error.message


def test_the_media_server_sees_no_credentials_cookies_or_extra_headers(media: MediaServer) -> None:
    fetch(f"http://127.0.0.1:{media.port}/redirect/1", settings(media))
    (first, first_headers), (last, last_headers) = media.requests[-2:]
    assert (first, last) == ("/redirect/1", "/redirect/0")
    for headers in (first_headers, last_headers):
        assert "authorization" not in headers and "cookie" not in headers
        assert headers == {"host": f"127.0.0.1:{media.port}", "user-agent": "inferd", "accept": "image/*",
                           "accept-encoding": "identity"}


def test_a_name_is_resolved_once_and_the_validated_address_is_connected(media: MediaServer) -> None:
    calls: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        return ["127.0.0.1"]
    config = Settings(media_allow_hosts=(f"media.test:{media.port}",))
    assert fetch(f"http://media.test:{media.port}/redirect/1", config, resolver) == b"final"
    assert calls == [("media.test", media.port)] * 2  # once per hop, never by the HTTP client
    assert media.requests[-1][1]["host"] == f"media.test:{media.port}"


def test_https_requests_carry_the_original_name_for_tls() -> None:
    import ipaddress
    request = _request(Target(MediaURL("https", "media.example", 443, "/a.png?x=1"),
                              ipaddress.ip_address("93.184.216.34")), "video")
    assert str(request.url) == "https://93.184.216.34/a.png?x=1"
    assert request.headers["host"] == "media.example" and request.headers["accept"] == "video/*"
    assert request.extensions["sni_hostname"] == "media.example"


def test_connection_failure_is_a_400(media: MediaServer) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    error = failure(f"http://127.0.0.1:{port}/", Settings(media_allow_hosts=(f"127.0.0.1:{port}",)))
    assert error.code == "media_fetch_failed" and "could not connect" in error.message


def test_no_exception_but_invalid_request_escapes() -> None:
    async def resolver(host: str, port: int) -> Sequence[str]:
        raise RuntimeError("resolver exploded")
    error = failure("http://media.example/a.png", Settings(), resolver)
    assert error.code == "media_fetch_failed" and "resolver exploded" in error.message


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://u:p@127.0.0.1:{port}/ok.png", "ftp://127.0.0.1/"])
def test_refused_urls(media: MediaServer, url: str) -> None:
    before = len(media.requests)
    assert failure(url.format(port=media.port), settings(media)).code == "invalid_media_url"
    assert len(media.requests) == before


def test_data_urls() -> None:
    config = Settings(media_max_bytes=64 * 1024)
    good = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
    assert fetch(good, config) == IMAGE
    assert fetch("DATA:image/png;charset=x;BASE64,YWJj", config) == b"abc"
    for bad in ["data:image/png,abc", "data:image/png;base64", "data:image/png;base64,YW Jj",
                "data:image/png;base64,YWJj\n", "data:image/png;base64,YWJ", "data:image/png;base64,%59WJj",
                "data:image/png;base64,YW-_", "data:image/png;base64,"]:
        error = failure(bad, config)
        assert error.code == "invalid_media_url" and "data: URL" in error.message


def test_data_url_size_is_capped_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fetch("data:image/png;base64,YWJj", Settings(media_max_bytes=3)) == b"abc"
    assert "limit of 2 bytes" in failure("data:image/png;base64,YWJj", Settings(media_max_bytes=2)).message

    def no_decode(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("an oversized payload must not be decoded")
    monkeypatch.setattr(base64, "b64decode", no_decode)
    huge = "data:image/png;base64," + "A" * (4 * 1024 * 1024)
    error = failure(huge, Settings(media_max_bytes=64 * 1024))
    assert error.code == "invalid_media_url" and "too large" in error.message and "AAAA" not in error.message


@pytest.mark.parametrize("location", ["mailto:x@example.com", "data:image/png;base64,AAAA", "gopher://x/",
                                      "file:///etc/passwd"])
def test_redirects_to_odd_locations_are_refused_as_urls(media: MediaServer, location: str) -> None:
    from urllib.parse import quote

    error = failure(f"http://127.0.0.1:{media.port}/redirect-to?url={quote(location)}", settings(media))
    assert error.code == "invalid_media_url" and "redirected to" in error.message, error.message
