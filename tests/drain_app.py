"""A small app behind inferd's edge runner with a ``drain`` seam, for the signal tests:
``python -m tests.drain_app PORT DRAIN_SECONDS``. GET / answers "draining" once drain has begun."""

from __future__ import annotations

import asyncio
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from inferd.edge.server import run
from inferd.settings import Settings


def build(drain_seconds: float) -> Starlette:
    app = Starlette(routes=[Route("/", answer)])
    app.state.draining = False

    async def drain() -> None:
        app.state.draining = True
        print("drain started", flush=True)
        await asyncio.sleep(drain_seconds)
        print("drain finished", flush=True)

    app.state.drain = drain
    return app


async def answer(request: Request) -> PlainTextResponse:
    return PlainTextResponse("draining" if request.app.state.draining else "serving")


if __name__ == "__main__":
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    sys.exit(run(build(seconds), Settings(port=port, log_level="warning")))
