"""The upstream client gives every connection back, however a stream ends: read to [DONE], closed early,
or its task cancelled at any moment (while connecting, waiting for the head, streaming, or closing).

The engine here is a small SSE server on loopback, written for the test: the unit is inferd's client."""

from __future__ import annotations

import asyncio
import random
from inferd.engines.upstream import Timeouts, Upstream, standard_refusal

CONNECTIONS = 2
EVENTS = 6


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive: each request is answered with a short chunked event stream."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for i in range(EVENTS):
                await asyncio.sleep(random.random() * 0.004)
                writer.write(_chunk(b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n'))
                await writer.drain()
            writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _read(upstream: Upstream, url: str, events: int | None) -> None:
    """Read ``events`` events and close the stream (None: to the end)."""
    stream = upstream.chunks(url, {"stream": True}, standard_refusal("test"))
    try:
        count = 0
        async for _ in stream:
            count += 1
            if events is not None and count >= events:
                break
    finally:
        await stream.aclose()


async def _cancelled_at_random(upstream: Upstream, url: str, rng: random.Random) -> None:
    task = asyncio.ensure_future(_read(upstream, url, None))
    await asyncio.sleep(rng.random() * 0.03)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _rounds(rounds: int) -> int:
    """Streams cancelled at random moments beside streams read in part or whole; the connections in use after."""
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    upstream = Upstream("test engine", Timeouts(connect=5.0), connections=CONNECTIONS, pool_wait=5.0)
    rng = random.Random(7)
    try:
        async with server:
            for _ in range(rounds):
                await asyncio.gather(*(_cancelled_at_random(upstream, url, rng) for _ in range(CONNECTIONS)),
                                     _read(upstream, url, rng.choice((1, 3, None))))
            in_use = upstream.connections_in_use()
            # the pool is whole: as many streams as it has connections run side by side, to the end
            await asyncio.wait_for(asyncio.gather(*(_read(upstream, url, None) for _ in range(CONNECTIONS))), 30)
            return in_use
    finally:
        await upstream.close()


def test_connections_come_back_after_streams_cancelled_at_any_moment() -> None:
    assert asyncio.run(_rounds(300)) == 0
