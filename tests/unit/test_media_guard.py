"""SSRF guard decisions (no socket, no real resolver), and the tests' own network guard."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from inferd.errors import InvalidRequest
from inferd.media.guard import (
    MediaURL, check_url, is_allowed, is_denied, parse_host, parse_media_url, refusal_reason,
)
from inferd.settings import Settings
from tests import netguard

PARAM = "messages[0].content[0].image_url.url"
LOOPBACK_SPELLINGS = [
    "127.0.0.1", "2130706433", "0x7f000001", "0X7F000001", "0177.0.0.1", "0177.0.0.01", "127.1",
    "127.0.1", "0x7f.1", "0x7f.0.0.0x1", "017700000001", "127.0.0.1.", "[::1]", "::1",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:0:0:1]", "[::1%25eth0]",
]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def no_resolver_expected():
    async def resolver(host: str, port: int) -> Sequence[str]:
        raise AssertionError(f"resolver must not be called for {host}")
    return resolver


def fixed(answers: Sequence[str]):
    calls: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> Sequence[str]:
        calls.append((host, port))
        return list(answers)
    resolver.calls = calls  # type: ignore[attr-defined]
    return resolver


def check(url: str, resolver=None, **settings) -> object:
    return asyncio.run(check_url(url, Settings(**settings), kind="image", param=PARAM,
                                 resolver=resolver or no_resolver_expected()))


def refused(url: str, resolver=None, **settings) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        check(url, resolver, **settings)
    assert info.value.status == 400 and info.value.param == PARAM
    return info.value


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_parses_to_loopback(spelling: str) -> None:
    parsed = parse_host(spelling)
    assert parsed is not None and refusal_reason(parsed) is not None
    assert parsed in (ip("127.0.0.1"), ip("::1"), ip("::ffff:127.0.0.1"))


@pytest.mark.parametrize("host", ["media.example", "localhost", "example.com.", "xn--bcher-kva.example", "1e100.net"])
def test_names_are_not_literals(host: str) -> None:
    assert parse_host(host) is None


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1.2.3.999", "example.123", "4294967296", "0x100000000", "[::zz]"])
def test_malformed_numeric_hosts_raise(host: str) -> None:
    with pytest.raises(ValueError):
        parse_host(host)


@pytest.mark.parametrize("address, words", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("10.0.0.1", "private"),
    ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"), ("100.127.255.254", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"), ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"),
    ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"), ("192.0.0.8", "IETF"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fc00::1", "private"),
    ("fd12:3456::1", "private"), ("ff02::1", "multicast"), ("2001:db8::1", "documentation"),
    ("fec0::1", "site-local"), ("100::1", "discard"),
    ("::ffff:10.0.0.1", "IPv4-mapped address embedding 10.0.0.1, a private"),
    ("::ffff:7f00:1", "embedding 127.0.0.1, a loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::10.0.0.1", "IPv4-compatible address embedding 10.0.0.1"), ("::8.8.8.8", "IPv4-compatible"),
    ("64:ff9b::a00:1", "NAT64 address embedding 10.0.0.1"), ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:0a00:0001::", "6to4 address embedding 10.0.0.1"), ("2002:7f00:1::1", "loopback"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo address embedding 10.0.0.1"),
])
def test_refused_addresses(address: str, words: str) -> None:
    reason = refusal_reason(ip(address))
    assert reason is not None and words in reason


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.128.0.1", "2606:4700::1111", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_are_accepted(address: str) -> None:
    assert refusal_reason(ip(address)) is None


def test_zone_ids_do_not_hide_link_local() -> None:
    parsed = parse_host("[fe80::1%25eth0]")
    assert parsed is not None and "link-local" in (refusal_reason(parsed) or "")
    assert "link-local" in (refusal_reason(ip("fe80::1%eth0")) or "")


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/", "javascript:alert(1)",
    "dict://example.com:11211/", "//example.com/a.png", "example.com/a.png", "HTTPX://example.com/",
])
def test_other_schemes_are_refused(url: str) -> None:
    error = refused(url)
    assert error.code == "invalid_media_url" and "http" in error.message


@pytest.mark.parametrize("url", ["http://u:p@example.com/a.png", "http://user@example.com/", "https://@example.com/",
                                 "http://example.com@127.0.0.1/"])
def test_credentials_are_refused(url: str) -> None:
    error = refused(url)
    assert error.code == "invalid_media_url" and "credentials" in error.message


@pytest.mark.parametrize("url", ["http:///a.png", "http://:80/", "https://", "http://exa mple.com/",
                                 "http://example.com:99999/", "http://example.com:0/", "http://ex%61mple.com/",
                                 "http://example.com\n.evil/", "http://[::1/"])
def test_malformed_urls_are_refused(url: str) -> None:
    assert refused(url).code == "invalid_media_url"


def test_parse_media_url_parts() -> None:
    url = parse_media_url("HTTPS://Media.Example/a b%20/ü.png?x=1#frag".replace(" ", "%20"), kind="image", param=PARAM)
    assert url == MediaURL("https", "media.example", 443, "/a%20b%20/%C3%BC.png?x=1")
    assert url.authority == "media.example"
    assert parse_media_url("http://[::1]:8080", kind="video", param="p").authority == "[::1]:8080"
    assert parse_media_url("http://bücher.example/", kind="image", param="p").host == "xn--bcher-kva.example"


@pytest.mark.parametrize("spelling", [s for s in LOOPBACK_SPELLINGS if s != "::1"])
def test_every_loopback_spelling_is_refused_with_a_clear_message(spelling: str) -> None:
    error = refused(f"http://{spelling}:8080/a.png", media_allow_hosts=("127.0.0.1:9999",))
    assert error.code == "invalid_media_url"
    assert "loopback" in error.message and "data: URL" in error.message
    assert "INFERD_MEDIA_ALLOW_HOSTS" in error.message


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
def test_odd_spelling_of_an_allowed_host_is_not_allowed(spelling: str) -> None:
    settings = {"media_allow_hosts": ("127.0.0.1:8080",)}
    assert check("http://127.0.0.1:8080/a.png", **settings).address == ip("127.0.0.1")  # type: ignore[attr-defined]
    error = refused(f"http://{spelling}:8080/a.png", fixed(["127.0.0.1"]), **settings)
    assert "loopback" in error.message


def test_allow_list_matching_is_literal_and_port_aware() -> None:
    url = parse_media_url("http://127.0.0.1:8080/", kind="image", param=PARAM)
    assert is_allowed(url, ["127.0.0.1:8080"]) and is_allowed(url, ["127.0.0.1"]) and is_allowed(url, [" 127.0.0.1:8080 "])
    assert not is_allowed(url, ["127.0.0.1:8081", "localhost:8080", "2130706433:8080", "127.0.0.2"])
    assert is_allowed(parse_media_url("http://[::1]:81/", kind="image", param=PARAM), ["[::1]:81"])
    assert is_allowed(parse_media_url("http://[::1]:81/", kind="image", param=PARAM), ["::1"])
    assert is_allowed(parse_media_url("https://Intra.Example/", kind="image", param=PARAM), ["intra.example:443"])
    assert not is_allowed(parse_media_url("http://intra.example/", kind="image", param=PARAM), ["intra.example:443"])


def test_allowed_host_skips_the_address_check() -> None:
    target = check("http://intranet.example:9000/x.png", fixed(["10.1.2.3"]), media_allow_hosts=("intranet.example:9000",))
    assert target.address == ip("10.1.2.3")  # type: ignore[attr-defined]
    assert "private" in refused("http://intranet.example:9001/x.png", fixed(["10.1.2.3"]),
                                media_allow_hosts=("intranet.example:9000",)).message


def test_deny_list_wins_over_allow_list_and_public_addresses() -> None:
    both = {"media_allow_hosts": ("cdn.example",), "media_deny_hosts": ("cdn.example",)}
    assert "deny list" in refused("http://cdn.example/a.png", fixed(["8.8.8.8"]), **both).message
    deny = {"media_deny_hosts": ("8.8.8.8", "bad.example:8443")}
    assert "deny list" in refused("http://134744072/", **deny).message  # 8.8.8.8 spelled oddly
    assert "deny list" in refused("http://bad.example.:8443/", fixed(["1.1.1.1"]), **deny).message
    assert "deny list" in refused("http://alias.example/", fixed(["8.8.8.8"]), **deny).message
    assert check("http://bad.example/", fixed(["1.1.1.1"]), **deny).address == ip("1.1.1.1")  # type: ignore[attr-defined]


def test_deny_matching_decisions() -> None:
    url = parse_media_url("http://bad.example:8443/", kind="image", param=PARAM)
    assert is_denied(url, ["bad.example"]) and is_denied(url, ["BAD.example:8443"]) and is_denied(url, ["bad.example."])
    assert not is_denied(url, ["bad.example:443", "good.example"])
    assert is_denied(url, ["10.0.0.1"], [ip("10.0.0.1")]) and not is_denied(url, ["10.0.0.2"], [ip("10.0.0.1")])


def test_mixed_public_and_private_answers_are_refused() -> None:
    resolver = fixed(["93.184.216.34", "2606:4700::1111", "10.0.0.5"])
    error = refused("https://rebind.example/a.png", resolver)
    assert error.code == "invalid_media_url" and "10.0.0.5" in error.message and "rebind.example" in error.message
    assert resolver.calls == [("rebind.example", 443)]  # type: ignore[attr-defined]
    assert "loopback" in refused("https://rebind.example/a.png", fixed(["8.8.8.8", "::1"])).message
    assert "link-local" in refused("http://meta.example/", fixed(["fe80::1%2"])).message


def test_public_name_is_accepted_and_the_validated_address_returned() -> None:
    resolver = fixed(["93.184.216.34", "2606:4700::1111"])
    target = check("https://media.example/cat.png?size=2", resolver)
    assert target.address == ip("93.184.216.34")  # type: ignore[attr-defined]
    assert target.url == MediaURL("https", "media.example", 443, "/cat.png?size=2")  # type: ignore[attr-defined]


def test_public_literal_is_accepted_without_resolving() -> None:
    assert check("http://8.8.8.8/a.png").address == ip("8.8.8.8")  # type: ignore[attr-defined]
    assert check("http://[2606:4700::1111]:8443/").address == ip("2606:4700::1111")  # type: ignore[attr-defined]


def test_resolver_failures_are_fetch_failures() -> None:
    async def broken(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")
    error = refused("http://nowhere.example/", broken)
    assert error.code == "media_fetch_failed" and "could not be resolved" in error.message
    assert refused("http://empty.example/", fixed([])).code == "media_fetch_failed"
    assert refused("http://junk.example/", fixed(["not-an-ip"])).code == "media_fetch_failed"


# --- tests/netguard.py: the guard that keeps every test on loopback -----------------------

OFF_LOOPBACK = [("10.0.0.1", 80), ("169.254.169.254", 80), ("8.8.8.8", 53), ("2130706433", 80), ("example.com", 80)]


def _tripwire(*args: object, **kwargs: object) -> object:
    raise AssertionError("netguard let the call reach the real socket function")


def test_netguard_refuses_before_any_real_socket_call(monkeypatch: pytest.MonkeyPatch) -> None:
    newly = netguard.install()
    try:
        assert netguard.installed()
        with socket.socket() as server:  # loopback still works, through the real functions
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            socket.create_connection(server.getsockname(), timeout=2).close()
            socket.create_connection(("localhost", server.getsockname()[1]), timeout=2).close()
        for name in list(netguard._ORIGINALS):
            monkeypatch.setitem(netguard._ORIGINALS, name, _tripwire)
        for address in OFF_LOOPBACK:
            with pytest.raises(RuntimeError, match=f"test tried to reach '{address[0]}' off loopback"):
                socket.create_connection(address, timeout=1)
            with socket.socket() as sock, pytest.raises(RuntimeError, match="off loopback"):
                sock.connect(address)
            with socket.socket() as sock, pytest.raises(RuntimeError, match="off loopback"):
                sock.connect_ex(address)
        with socket.socket(socket.AF_INET6) as sock, pytest.raises(RuntimeError, match="off loopback"):
            sock.connect(("::ffff:10.0.0.1", 80, 0, 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(RuntimeError):
            sock.sendto(b"x", ("10.0.0.1", 53))
        for lookup in (socket.getaddrinfo, socket.gethostbyname):
            with pytest.raises(RuntimeError, match="'example.com' off loopback"):
                lookup("example.com", 80) if lookup is socket.getaddrinfo else lookup("example.com")
        with pytest.raises(RuntimeError, match="'10.0.0.1' off loopback"):
            asyncio.run(asyncio.open_connection("10.0.0.1", 80))
    finally:
        if newly:
            netguard.uninstall()
    if newly:
        assert not netguard.installed() and "connect" not in vars(socket.socket)


CHILD = """
import socket, sys
guard = sys.modules.get("inferd_test_netguard")
if guard is None or not guard.installed():
    sys.exit(3)
try:
    import uvloop
    sys.exit(7)
except ImportError:
    pass
def tripwire(*args, **kwargs):
    sys.exit(4)
for name in list(guard._ORIGINALS):
    guard._ORIGINALS[name] = tripwire
socket.create_connection(("10.0.0.1", 80), timeout=1)
sys.exit(5)
"""


def _child(guarded: bool) -> subprocess.CompletedProcess[str]:
    site = Path(netguard.__file__).parent / "netguard_site"
    env = {k: v for k, v in os.environ.items() if k != "INFERD_TEST_NETGUARD"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    if guarded:
        env["INFERD_TEST_NETGUARD"] = "1"
    return subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)


def test_netguard_site_guards_a_child_process() -> None:
    child = _child(guarded=True)
    assert child.returncode == 1, child.stderr
    assert "RuntimeError: test tried to reach '10.0.0.1' off loopback" in child.stderr


def test_netguard_site_does_nothing_without_the_env_var() -> None:
    assert _child(guarded=False).returncode == 3  # not installed: the child stops before any attempt
