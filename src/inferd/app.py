"""create_app(settings): routes, one error renderer, and the lifespan (store, library, engines)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .api.metrics import Metrics
from .api.observed import Observed
from .api.routes import routes
from .chat.service import ChatService
from .engines.pool import EnginePool
from .errors import APIError, MethodNotAllowed, NotFound, internal_error
from .library import Library, load_library
from .provider.runtime import Provider
from .settings import Settings
from .web.routes import console_routes

log = logging.getLogger("inferd")


def render(exc: APIError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return render(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return render(MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."))
    return render(NotFound(f"No route {request.method} {request.url.path}. The API lives under /api/v1."))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return render(internal_error())


def create_app(settings: Settings, library: Library | None = None) -> Starlette:
    library = library if library is not None else load_library(settings.library)
    provider = Provider(settings, library)  # keys, limits, usage
    pool = EnginePool(library, settings)
    metrics = Metrics(library)
    metrics.watch(library, pool)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(pool.start_all())
        await provider.start()
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await pool.close()
            await provider.close()

    async def drain() -> None:
        """SIGTERM: refuse new requests, let in-flight ones finish for a while, end the rest, stop engines."""
        log.info("draining: no new requests; waiting up to %.0f s for those in flight", settings.drain_seconds)
        finished = await pool.drain(settings.drain_seconds)
        if not finished:
            log.warning("drain window over; ending the requests still in flight")
        await pool.close()

    app = Starlette(routes=routes() + console_routes(), lifespan=lifespan,
                    middleware=[Middleware(Observed, metrics=metrics)],
                    exception_handlers={APIError: on_api_error, HTTPException: on_http_error,
                                        Exception: on_unexpected})
    app.state.settings = settings
    app.state.library = library
    app.state.provider = provider
    app.state.verifier = provider.verifier
    app.state.pool = pool
    app.state.drain = drain
    app.state.metrics = metrics
    app.state.service = ChatService(library, pool, provider.gate, settings, observer=metrics)
    return app
