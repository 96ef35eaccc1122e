"""Streams: keep-alive comments while a request waits, and a client that stops reading is dropped."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from ..edge_client import TINY, chat_request, connect, first_events, tiny_library
from ..harness import Server, library_server

ONE_SLOT = "qwen-one-slot"
LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper, at least 3000 words."}]


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Server]:
    """Qwen with one slot (a long generation holds it for minutes), keep-alive comments every second."""
    gguf = models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
    toml = f'[[models]]\nid = "{ONE_SLOT}"\nfile = "{gguf}"\ncontext_length = 4096\nparallel = 1\n'
    env = {"INFERD_MAX_QUEUE": "1", "INFERD_SSE_KEEPALIVE": "1"}
    with library_server(tmp_path_factory.mktemp("edge-one-slot"), models_dir, toml, env) as srv:
        yield srv


def read_until(sock: socket.socket, marker: bytes, seen: bytes = b"") -> bytes:
    while marker not in seen:
        chunk = sock.recv(65536)
        assert chunk, seen[-500:]
        seen += chunk
    return seen


def test_a_queued_stream_gets_keepalive_comments_then_its_answer(one_slot: Server) -> None:
    key = one_slot.create_key()
    holder = first_events(one_slot.port, key, {"model": ONE_SLOT, "messages": LONG, "max_tokens": 4000,
                                                "temperature": 0}, timeout=120)
    with connect(one_slot.port, timeout=60) as queued:
        queued.sendall(chat_request(key, {"model": ONE_SLOT, "stream": True, "max_tokens": 3,
                                          "messages": [{"role": "user", "content": "hi"}]}))
        seen = read_until(queued, b": keep-alive\n\n")
        seen = read_until(queued, b": keep-alive\n\n", seen.replace(b": keep-alive\n\n", b"", 1))  # and again
        assert seen.startswith(b"HTTP/1.1 200") and b"text/event-stream" in seen.split(b"\r\n\r\n")[0]
        assert b"data: " not in seen  # still waiting for the slot
        holder.close()  # the slot frees; the queued request now runs
        seen = read_until(queued, b"data: [DONE]", seen)
    assert b'"finish_reason":"length"' in seen and b'"error"' not in seen


@pytest.fixture(scope="module")
def tiny_one_slot(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("edge-noread")
    env = {"INFERD_MAX_QUEUE": "0", "INFERD_SEND_TIMEOUT": "2", "INFERD_SEND_BUFFER_BYTES": "16384",
           "INFERD_LOG_LEVEL": "debug"}
    with library_server(folder, models_dir, tiny_library(folder, parallel=1, context_length=8192), env) as srv:
        yield srv


def test_a_client_that_stops_reading_is_dropped_and_its_slot_reused(tiny_one_slot: Server) -> None:
    key = tiny_one_slot.create_key()
    headers = {"Authorization": f"Bearer {key}"}
    quick = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it reads nothing: its buffers fill soon
    reader.connect(("127.0.0.1", tiny_one_slot.port))
    reader.sendall(chat_request(key, {"model": TINY, "stream": True, "max_tokens": 8000,
                                      "messages": [{"role": "user", "content": "go"}]}))
    statuses = []
    for _ in range(300):  # bounded: 60 s at most
        statuses.append(httpx.post(tiny_one_slot.url + "/api/v1/chat/completions", json=quick, headers=headers,
                                   timeout=30).status_code)
        if statuses[-1] == 200:
            break
        time.sleep(0.2)
    assert statuses[0] == 503 and statuses[-1] == 200, statuses  # held, then freed
    assert "read nothing of our response for 2 s" in tiny_one_slot.log()
    reader.settimeout(30)
    rest = b""
    try:
        while chunk := reader.recv(65536):
            rest += chunk
    except ConnectionResetError:
        pass
    reader.close()
    assert b"data: [DONE]" not in rest  # it was cut off, not finished
