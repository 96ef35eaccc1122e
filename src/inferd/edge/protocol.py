"""uvicorn's httptools protocol with the edge's limits.

- A request head is fed to the parser in slices that never take it past ``max_header_bytes``: a huge
  head costs constant memory and time and gets 431 (414 when the target alone is over
  ``max_request_line_bytes``; 431 past ``max_headers`` fields). It must arrive within ``head_timeout``,
  counted from the connect (first request) or from its first byte (later requests on the connection).
- A body must arrive within ``body_timeout`` and at ``body_min_rate`` bytes/s or more over every
  ``body_rate_window`` (unless the app itself has stopped reading); else 408.
- A client that leaves our response unread (write buffer full) for ``send_timeout`` is dropped, which
  frees its request's slot like any disconnect; the kernel's send buffer is ``send_buffer_bytes``.
- A response sent before the request's body was read (413, 401) says ``Connection: close`` and ends the
  connection.
- Every close with client input possibly unread is a lingering close: our last bytes, then FIN, then
  input is discarded until the client closes or ``LINGER_S`` pass. Closing at once would make the
  kernel answer the unread input with a reset, which can destroy our response before the client reads it.
- Past the connection caps a new connection gets 503 ``too_many_connections`` and is closed.

The class relies on uvicorn's ``HttpToolsProtocol`` internals: uvicorn is pinned to an exact version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from ..errors import (APIError, HeadersTooLarge, MalformedRequest, RequestTimeout, TooManyConnections,
                      URITooLong)
from ..settings import Settings
from .connections import ConnectionRegistry
from .responses import raw_response

log = logging.getLogger("inferd.edge")
LINGER_S = 2.0  # how long a closing connection waits for the client to read our answer and close


@dataclass
class Edge:
    """What every connection of one server shares: the limits and the connection counts."""

    settings: Settings
    connections: ConnectionRegistry


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal itself is in ``_refusal``."""


class EdgeTransport:
    """The connection's transport, except that ``close()`` lets the protocol decide how to close."""

    def __init__(self, raw: asyncio.Transport, close: Callable[[], None]) -> None:
        self._raw = raw
        self.close = close
        self.write = raw.write
        self.is_closing = raw.is_closing
        self.get_extra_info = raw.get_extra_info
        self.pause_reading = raw.pause_reading
        self.resume_reading = raw.resume_reading

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class EdgeProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, edge: Edge, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._edge = edge
        self._limits = edge.settings
        self._raw: asyncio.Transport = None  # type: ignore[assignment]
        self._peer = "unknown"
        self._admitted = False
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None  # head, body or linger deadline
        self._send_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # waiting for, or reading, a request head
        self._mid_message = False  # a request has begun and its body has not fully arrived
        self._head_bytes = 0
        self._num_headers = 0
        self._refusal: APIError | None = None
        self._window_bytes = 0  # body bytes since the last rate check
        self._window_start = 0.0
        self._body_start = 0.0

    # connection life
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        super().connection_made(EdgeTransport(transport, self._close))  # type: ignore[arg-type]
        self._peer = self.client[0] if self.client else "unknown"
        reason = self._edge.connections.admit(self._peer)
        if reason is not None:
            self._answer_and_close(TooManyConnections(f"Too many open connections: {reason}. Retry later.",
                                                      retry_after=1), f"refused, {reason}")
            return
        self._admitted = True
        self._arm(self._limits.head_timeout, self._head_expired)
        if self._limits.send_buffer_bytes:
            _set_send_buffer(transport, self._limits.send_buffer_bytes)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._cancel_send_timer()
        if self._admitted:
            self._admitted = False
            self._edge.connections.release(self._peer)
        super().connection_lost(exc)

    def _close(self) -> None:
        """What uvicorn's ``transport.close()`` does here: linger if the client may still be sending."""
        if self._mid_message and not self._lingering and not self._raw.is_closing():
            log.debug("closing connection from %s: answered before the request body was read", self._peer)
            self._detach_cycle()
            self._linger()
        else:
            self._raw.close()

    def timeout_keep_alive_handler(self) -> None:
        log.debug("closing connection from %s: idle keep-alive for %g s", self._peer, self._limits.keepalive_timeout)
        super().timeout_keep_alive_handler()

    # reading
    def data_received(self, data: bytes) -> None:
        if self._lingering or self.parser is None:
            return  # a closing connection's input is discarded
        self._unset_keepalive_if_required()
        if self._in_head and self._head_bytes + len(data) > self._limits.max_header_bytes:
            self._feed_head(memoryview(data))
        else:
            if self._in_head:
                self._head_bytes += len(data)
            self._feed(data)

    def _feed_head(self, data: memoryview) -> None:
        """Feed in slices that never take a head past the cap, and refuse the head that reaches it."""
        limit = self._limits.max_header_bytes
        while data and self._in_head:
            room = limit + 1 - self._head_bytes
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            if not self._feed(piece):
                return
            if self._in_head and self._head_bytes > limit:
                self._answer_and_close(HeadersTooLarge(f"The request head is larger than the {limit} byte limit."),
                                       "request head too large")
                return
        if data:
            self._feed(data)

    def _feed(self, data: bytes | memoryview) -> bool:
        """Parse ``data``; False when the connection is being closed because of it."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades are served: the request goes to the app like any other
        except httptools.HttpParserError as exc:
            refusal, self._refusal = self._refusal, None
            error = refusal or MalformedRequest(f"The request is not valid HTTP/1.1: {exc}.")
            self._answer_and_close(error, f"{error.status} {error.code}")
            return False
        return not self._lingering

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._mid_message = True
        self._num_headers = 0
        if self._timer is None:  # a later request on the connection: its head deadline starts now
            self._arm(self._limits.head_timeout, self._head_expired)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self._limits.max_request_line_bytes:
            self._refusal = URITooLong(f"The request target is longer than the "
                                       f"{self._limits.max_request_line_bytes} byte limit.")
            raise _Refused()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._num_headers += 1
        if self._num_headers > self._limits.max_headers:
            self._refusal = HeadersTooLarge(f"The request has more than {self._limits.max_headers} header fields.")
            raise _Refused()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._window_bytes = 0
        self._body_start = self._window_start = self.loop.time()
        self._arm(min(self._limits.body_rate_window, self._limits.body_timeout), self._check_body)
        super().on_headers_complete()
        cycle = self.cycle
        cycle.send = functools.partial(_send_closing_if_unread, cycle, cycle.send)  # type: ignore[method-assign]

    def on_body(self, body: bytes) -> None:
        self._window_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel()
        self._mid_message = False
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # deadlines
    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel()
        self._timer = self.loop.call_later(delay, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_expired(self) -> None:
        self._timer = None
        if not self._mid_message:  # nothing of a request arrived: nothing to answer
            log.debug("closing connection from %s: no request within %g s", self._peer, self._limits.head_timeout)
            self._raw.close()
            return
        self._answer_and_close(RequestTimeout(f"The request head did not arrive within "
                                              f"{self._limits.head_timeout:g} s."), "request head timeout")

    def _check_body(self) -> None:
        self._timer = None
        limits, now = self._limits, self.loop.time()
        if now - self._body_start >= limits.body_timeout:
            error = RequestTimeout(f"The request body did not arrive within {limits.body_timeout:g} s.")
            self._answer_and_close(error, "request body timeout")
        elif self._window_bytes < limits.body_min_rate * (now - self._window_start) and not self.flow.read_paused:
            error = RequestTimeout(f"The request body arrived slower than {limits.body_min_rate} bytes/s.")
            self._answer_and_close(error, "request body too slow")
        else:
            self._window_bytes, self._window_start = 0, now
            left = limits.body_timeout - (now - self._body_start)
            self._arm(min(limits.body_rate_window, left), self._check_body)

    # writing
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self._limits.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        self._cancel_send_timer()
        super().resume_writing()

    def _cancel_send_timer(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_stalled(self) -> None:
        self._send_timer = None
        log.debug("dropping connection from %s: it read nothing of our response for %g s", self._peer,
                  self._limits.send_timeout)
        self._raw.abort()  # connection_lost: the app sees a disconnect and frees the request's slot

    # closing
    def _answer_and_close(self, error: APIError, reason: str) -> None:
        """Answer ``error`` (unless a response is under way) and close, letting the client read it."""
        log.debug("closing connection from %s: %s", self._peer, reason)
        answering = self.cycle is None or not self.cycle.response_started or self.cycle.response_complete
        self._detach_cycle()
        if answering and not self._raw.is_closing():
            self._raw.write(raw_response(error))
        self._linger()

    def _detach_cycle(self) -> None:
        """The app's request ends here: it sees a disconnect, and its further output is dropped."""
        self.pipeline.clear()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if self.flow is not None:
            self.flow.resume_writing()

    def _linger(self) -> None:
        self._lingering = True
        self._cancel()
        self._cancel_send_timer()
        self._unset_keepalive_if_required()
        if self._raw.is_closing():
            return
        self._raw.resume_reading()
        if self._raw.can_write_eof():
            self._raw.write_eof()  # FIN after our answer; then wait for the client's
        self._timer = self.loop.call_later(LINGER_S, self._raw.abort)


def _set_send_buffer(transport: asyncio.Transport, size: int) -> None:
    """Bound what the kernel buffers for a client that does not read (autotuning goes up to megabytes),
    so that the send timeout notices it after a bounded amount of output."""
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def _send_closing_if_unread(cycle: RequestResponseCycle, send: Callable[[Any], Any], message: Any) -> None:
    """uvicorn's send, but a response that starts before the request body was read ends the connection."""
    if cycle.more_body and not cycle.response_started and message["type"] == "http.response.start":
        cycle.keep_alive = False  # uvicorn then sends "connection: close" and closes after the response
    await send(message)
