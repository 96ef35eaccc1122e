"""SSRF guard: decide whether a media URL may be fetched, and which address to connect to.

Pure decisions (``parse_host``, ``refusal_reason``, ``parse_media_url``, ``is_allowed``,
``is_denied``) need no network; ``check_url`` adds name resolution through an injectable
resolver and returns the one validated address the fetcher must connect to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence
from urllib.parse import quote, urlsplit

from inferd.errors import InvalidRequest
from inferd.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

REFUSED = "invalid_media_url"
FETCH_FAILED = "media_fetch_failed"
DEFAULT_PORTS = {"http": 80, "https": 443}

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_CHARS = re.compile(r"^[a-z0-9_.-]+$")
_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple((_V4(net), why) for net, why in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (where cloud metadata services live)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol-assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a deprecated 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
))
_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple((_V6(net), why) for net, why in (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "a deprecated IPv4-compatible address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a deprecated site-local address"),
    ("ff00::/8", "a multicast address"),
))
_NAT64 = _V6("64:ff9b::/96")
_V4_COMPAT = _V6("::/96")


@dataclass(frozen=True)
class MediaURL:
    """An http(s) URL taken apart: lowercased ASCII host (no brackets), effective port, path+query."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """The Host header value: brackets for IPv6, port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """A URL that passed every check, and the one address the fetcher connects to."""

    url: MediaURL
    address: Address


def _ipv4_number(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part, 10)


def _parse_ipv4(host: str) -> ipaddress.IPv4Address:
    """The inet_aton / WHATWG forms: 1-4 parts, each decimal, 0x-hex or 0-octal."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4 or any(not p for p in parts):
        raise ValueError(f"{host} is not a valid IPv4 address")
    nums = [_ipv4_number(p) for p in parts]
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise ValueError(f"{host} is not a valid IPv4 address (a part is out of range)")
    value = nums[-1]
    for i, n in enumerate(nums[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def parse_host(host: str) -> Address | None:
    """The address a host literal denotes, or None for a name.

    Accepts brackets, zone ids (``%eth0`` / ``%25eth0``) and every inet_aton spelling of
    IPv4. A host whose last label is numeric must be a valid IPv4 address, else ValueError.
    """
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{host} is not a valid IPv6 address") from None
    labels = host.rstrip(".").split(".") if host.rstrip(".") else [""]
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None
    try:
        return _parse_ipv4(host)
    except ValueError:
        raise ValueError(f"{host} is not a valid IPv4 address") from None


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped address", ip.ipv4_mapped
    if ip in _NAT64:
        return "a NAT64 address", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _V4_COMPAT and int(ip) > 1:
        return "an IPv4-compatible address", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return "a 6to4 address", ip.sixtofour
    if ip.teredo is not None:
        return "a Teredo address", ip.teredo[1]
    return None


def _named_range(ip: Address) -> str | None:
    table = _V4_RANGES if ip.version == 4 else _V6_RANGES
    return next((why for net, why in table if ip in net), None)  # type: ignore[operator]


def refusal_reason(ip: Address) -> str | None:
    """Why this address must not be fetched (e.g. "a loopback address"), or None if public."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop any zone id
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            inner = refusal_reason(embedded[1])
            if inner is not None:
                return f"{embedded[0]} embedding {embedded[1]}, {inner}"
            if ip.ipv4_mapped is not None or ip in _NAT64 or ip.sixtofour is not None:
                return None  # routes to that public IPv4 address
    named = _named_range(ip)
    if named is not None:
        return named
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip.is_link_local:
        return "a special-purpose address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a non-public (special-purpose) address"
    return None


def _refuse(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=REFUSED)


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


def _ascii_path(path: str, query: str) -> str:
    full = (path or "/") + (f"?{query}" if query else "")
    return "".join(c if ord(c) < 128 else quote(c) for c in full)


def _ascii_host(host: str, label: str, param: str) -> str:
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise _refuse(f"{label} host {host!r} is not a valid host name; use its punycode (xn--) form", param) from None
    if ":" not in host and not _HOST_CHARS.match(host):
        raise _refuse(f"{label} host {host!r} contains characters not allowed in a host name", param)
    return host


def parse_media_url(url: str, *, kind: str, param: str) -> MediaURL:
    """Take an http(s) URL apart, refusing other schemes, credentials, empty hosts, bad ports."""
    label = f"{kind}_url"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _refuse(f"{label} contains whitespace or control characters; percent-encode them", param)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"{label} {_shown(url)!r} is not a valid URL ({exc})", param) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _refuse(f"{label} scheme '{scheme or '(none)'}:' is not accepted; use an http, https or data: URL", param)
    if "@" in parts.netloc:
        raise _refuse(f"{label} contains credentials (user:password@); this server forwards none, "
                      f"so remove them or send the {kind} as a data: URL", param)
    if not parts.hostname:
        raise _refuse(f"{label} {_shown(url)!r} has no host", param)
    if port == 0:
        raise _refuse(f"{label} port 0 is not a valid port", param)
    host = _ascii_host(parts.hostname, label, param)
    return MediaURL(scheme, host, port or DEFAULT_PORTS[scheme], _ascii_path(parts.path, parts.query))


def _split_entry(entry: str) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]', '[v6]:port' or a bare v6 literal -> (host, port or None)."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return (host, int(port)) if port.isdigit() else (entry, None)
    return entry, None


def is_allowed(url: MediaURL, allow: Sequence[str]) -> bool:
    """An allow entry matches the URL's host LITERALLY (no other spelling), and its port if given."""
    for entry in allow:
        host, port = _split_entry(entry)
        if host == url.host and port in (None, url.port):
            return True
    return False


def _same_host(entry_host: str, host: str, addresses: Sequence[Address]) -> bool:
    if entry_host.rstrip(".") == host.rstrip("."):
        return True
    try:
        denied = parse_host(entry_host)
    except ValueError:
        return False
    return denied is not None and any(denied == a for a in addresses)


def is_denied(url: MediaURL, deny: Sequence[str], addresses: Sequence[Address] = ()) -> bool:
    """A deny entry matches the host (trailing dot ignored), any spelling of an address entry,
    or any address the host resolved to; and its port if given."""
    for entry in deny:
        host, port = _split_entry(entry)
        if port in (None, url.port) and _same_host(host, url.host, addresses):
            return True
    return False


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver returns for host (``loop.getaddrinfo``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _resolve(url: MediaURL, resolver: Resolver, label: str, param: str) -> list[Address]:
    try:
        answers = list(await resolver(url.host, url.port))
        addresses = [parse_host(a) for a in answers]
    except (OSError, UnicodeError, ValueError) as exc:
        raise InvalidRequest(f"{label} host {url.host} could not be resolved ({exc}); check the URL",
                             param=param, code=FETCH_FAILED) from None
    found = [a for a in addresses if a is not None]
    if not found or len(found) != len(addresses):
        raise InvalidRequest(f"{label} host {url.host} did not resolve to any address; check the URL",
                             param=param, code=FETCH_FAILED)
    return found


def _literal(url: MediaURL, label: str, param: str) -> Address | None:
    try:
        return parse_host(url.host)
    except ValueError as exc:
        raise _refuse(f"{label} host {exc}; check the URL", param) from None


def _check_addresses(url: MediaURL, addresses: Sequence[Address], kind: str, param: str) -> None:
    for ip in addresses:
        reason = refusal_reason(ip)
        if reason is not None:
            raise _refuse(
                f"{kind}_url host {url.host} resolves to {reason} ({ip}), which this server does not "
                f"fetch; send the {kind} as a data: URL or ask the operator to allow the host with "
                f"INFERD_MEDIA_ALLOW_HOSTS", param)


async def check_url(url: str, settings: Settings, *, kind: str, param: str,
                    resolver: Resolver | None = None) -> Target:
    """Every check on one http(s) URL; returns the validated address to connect to.

    Deny-list wins; an allow-list match skips the address check; otherwise ANY refused
    address among the resolver's answers refuses the URL (DNS rebinding with mixed answers).
    """
    label = f"{kind}_url"
    parsed = parse_media_url(url, kind=kind, param=param)
    literal = _literal(parsed, label, param)
    if is_denied(parsed, settings.media_deny_hosts, [literal] if literal is not None else []):
        raise _refuse(f"{label} host {parsed.host} is on this server's deny list "
                      f"(INFERD_MEDIA_DENY_HOSTS); send the {kind} as a data: URL instead", param)
    allowed = is_allowed(parsed, settings.media_allow_hosts)
    if literal is None:
        addresses = await _resolve(parsed, resolver or system_resolver, label, param)
        if is_denied(parsed, settings.media_deny_hosts, addresses):
            raise _refuse(f"{label} host {parsed.host} resolves to an address on this server's deny "
                          f"list (INFERD_MEDIA_DENY_HOSTS); send the {kind} as a data: URL instead", param)
    else:
        addresses = [literal]
    if not allowed:
        _check_addresses(parsed, addresses, kind, param)
    return Target(parsed, addresses[0])
