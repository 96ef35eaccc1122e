"""An HTTP engine in a child process that inferd starts, watches, restarts and stops."""

from __future__ import annotations

import httpx

from ..errors import APIError, EngineFailure
from ..library import ModelSpec
from .base import EngineStatus
from .flavours import Flavour
from .http import HTTPEngine
from .supervisor import ChildSpec, Supervisor, describe_exit
from .upstream import Upstream

CRASH_WAIT_S = 1.0  # how long a broken stream waits to see whether the process died


class ManagedEngine(HTTPEngine):
    health_path = "/health"

    def __init__(self, spec: ModelSpec, flavour: Flavour, upstream: Upstream, model_name: str | None) -> None:
        super().__init__(spec, flavour, upstream, model_name)
        self._supervisor: Supervisor | None = None

    @property
    def base_url(self) -> str:
        assert self._supervisor is not None
        return self._supervisor.url

    @property
    def chat_url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    def child(self) -> ChildSpec:
        """The command that runs this engine (called at start, after the model files are ready)."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """Work before the first start: assembling or converting model files (may be slow)."""
        return None

    async def start(self) -> None:
        await self.prepare()
        self._supervisor = Supervisor(self.child(), self._ready)
        await self._supervisor.start()

    async def _ready(self, url: str) -> bool:
        try:
            return (await self._upstream.get(url + self.health_path)).status_code == 200
        except httpx.HTTPError:
            return False

    async def probe(self) -> bool:
        """An active health check: the process is up and its server answers (a router asks on an interval)."""
        sup = self._supervisor
        return sup is not None and sup.state == "ready" and await self._ready(sup.url)

    def status(self) -> EngineStatus:
        sup = self._supervisor
        if sup is None:
            return EngineStatus(state="stopped" if self._closing else "loading", kind=self.kind)
        return EngineStatus(state=sup.state, kind=self.kind, pid=sup.pid, restarts=sup.restarts, error=sup.error)

    async def explain(self, error: APIError) -> APIError:
        sup = self._supervisor
        if self._closing or sup is None or not await sup.exited(within=CRASH_WAIT_S):
            return await super().explain(error)
        code = sup.returncode
        return EngineFailure(f"The engine process of model '{self._spec.id}' exited during this request "
                             f"({describe_exit(code)}); inferd is restarting it. Retry shortly.", code="engine_crashed")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            await self._supervisor.stop()
        await self._upstream.close()
