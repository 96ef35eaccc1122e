"""Keep tests on loopback: connecting to or resolving anything else raises RuntimeError.

``install()`` patches ``socket.socket.connect``/``connect_ex``/``sendto``,
``socket.create_connection``, ``socket.getaddrinfo`` and ``gethostbyname(_ex)``; asyncio's
selector loop, anyio and httpx all go through these. The check runs BEFORE the real call,
so a refused attempt sends no packet (the real functions are looked up in ``_ORIGINALS``
at call time, so a test can swap in tripwires). Allowed: 127.0.0.0/8, ::1 (also
IPv4-mapped), ``localhost``, unix sockets, and the wildcard host when resolving to bind.
uvloop connects in C and bypasses these patches: guarded processes must use the asyncio loop.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

_LOCAL_NAMES = {"localhost", "localhost.", "ip6-localhost"}
_ORIGINALS: dict[str, Any] = {}
_OWN_ATTRS: set[str] = set()  # socket.socket methods defined on the class itself before install
MARK = "__netguard__"


def _is_loopback_literal(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def check_host(host: Any, *, binding: bool = False) -> None:
    """Raise unless host is loopback (or, for getaddrinfo of a bind address, the wildcard)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if binding and host in (None, "", "0.0.0.0", "::"):
        return
    if isinstance(host, str) and (host.lower() in _LOCAL_NAMES or _is_loopback_literal(host)):
        return
    raise RuntimeError(f"test tried to reach {host!r} off loopback")


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        check_host(address[0])


def _guard_connect(name: str) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        _check_address(self, address)
        return _ORIGINALS[name](self, address)
    setattr(connect, MARK, True)
    return connect


def _sendto(self: socket.socket, data: Any, *args: Any) -> Any:
    if args:
        _check_address(self, args[-1])
    return _ORIGINALS["sendto"](self, data, *args)


def _create_connection(address: tuple[Any, ...], *args: Any, **kwargs: Any) -> socket.socket:
    check_host(address[0])
    return _ORIGINALS["create_connection"](address, *args, **kwargs)


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    check_host(host, binding=True)
    return _ORIGINALS["getaddrinfo"](host, *args, **kwargs)


def _by_name(name: str) -> Callable[..., Any]:
    def lookup(host: Any, *args: Any) -> Any:
        check_host(host)
        return _ORIGINALS[name](host, *args)
    return lookup


def installed() -> bool:
    return bool(getattr(socket.create_connection, MARK, False))


def install() -> bool:
    """Patch the socket module; returns False if it was already installed."""
    if installed():
        return False
    for name in ("connect", "connect_ex", "sendto"):
        _ORIGINALS[name] = getattr(socket.socket, name)
        if name in vars(socket.socket):
            _OWN_ATTRS.add(name)
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        _ORIGINALS[name] = getattr(socket, name)
    socket.socket.connect = _guard_connect("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _guard_connect("connect_ex")  # type: ignore[method-assign]
    socket.socket.sendto = _sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
    socket.gethostbyname = _by_name("gethostbyname")  # type: ignore[assignment]
    socket.gethostbyname_ex = _by_name("gethostbyname_ex")  # type: ignore[assignment]
    setattr(_create_connection, MARK, True)
    socket.create_connection = _create_connection  # type: ignore[assignment]
    return True


def uninstall() -> None:
    """Restore the real socket functions (for a test that installed the guard itself)."""
    if not installed():
        return
    for name in ("connect", "connect_ex", "sendto"):
        if name in _OWN_ATTRS:
            setattr(socket.socket, name, _ORIGINALS[name])
        else:
            delattr(socket.socket, name)
    _OWN_ATTRS.clear()
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        setattr(socket, name, _ORIGINALS[name])
    _ORIGINALS.clear()
