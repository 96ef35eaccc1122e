"""A media HTTP server on 127.0.0.1 for fetcher tests: good, redirecting and hostile routes."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class MediaServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.files: dict[str, tuple[bytes, str]] = {}  # /files/<name> -> (body, content type)
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(BaseHTTPRequestHandler):
    server: MediaServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        path = urlsplit(self.path).path
        route = getattr(self, "route_" + path.strip("/").split("/")[0].split(".")[0].replace("-", "_"), None)
        try:
            route(path) if route else self.reply(404, b"not here")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def reply(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def route_ok(self, path: str) -> None:
        self.reply(200, IMAGE, Content_Type="image/png")

    def route_redirect(self, path: str) -> None:
        left = int(path.rsplit("/", 1)[1])
        if left == 0:
            return self.reply(200, b"final")
        self.reply(302, b"", Location=f"/redirect/{left - 1}", Set_Cookie="session=secret; Path=/")

    def route_redirect_to(self, path: str) -> None:
        self.reply(302, b"", Location=parse_qs(urlsplit(self.path).query)["url"][0])

    def route_status(self, path: str) -> None:
        self.reply(int(path.rsplit("/", 1)[1]), b"oops")

    def route_slow(self, path: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        for _ in range(100):
            self.wfile.write(b"x")
            self.wfile.flush()
            if self.server.stopping.wait(1.0):
                return

    def route_endless(self, path: str) -> None:
        self.send_response(200)
        self.end_headers()  # HTTP/1.0, no Content-Length: the body runs until the connection closes
        for _ in range(10_000):  # 160 MiB at most, so a broken client cannot hang the suite
            self.wfile.write(b"\0" * 16384)

    def route_huge(self, path: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "10000000000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.server.stopping.wait(30)

    def route_files(self, path: str) -> None:
        body, content_type = self.server.files.get(path.removeprefix("/files/"), (b"", ""))
        self.reply(200, body, Content_Type=content_type) if content_type else self.reply(404, b"no such file")


@contextlib.contextmanager
def running() -> Iterator[MediaServer]:
    """A media server on an ephemeral 127.0.0.1 port, serving on a daemon thread until the block ends."""
    server = MediaServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
