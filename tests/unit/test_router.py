"""The routed engine (engines/router.py) over test doubles of engines, and [[models.backends]] in the library.

The same behaviours run against real llama.cpp processes and loopback upstreams in
tests/e2e/test_routing.py; here each failure mode is pinned down exactly and fast."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from inferd.engines.base import Capabilities, Delta, EngineStatus, GenerationRequest, Sampling, Usage
from inferd.engines.router import RoutedEngine
from inferd.errors import APIError, EngineFailure, GatewayTimeout, InvalidRequest, Unavailable
from inferd.library import ModelSpec, load_library
from inferd.settings import Settings

REQUEST = GenerationRequest(messages=[{"role": "user", "content": "hi"}],
                            sampling=Sampling(temperature=0, top_p=1, top_k=0, min_p=0, repetition_penalty=1,
                                              max_tokens=2))


class FakeEngine:
    """Yields two deltas, or fails as told: ``fail_before`` / ``fail_after`` the first delta."""

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.capabilities = Capabilities(spec.context_length, spec.parallel)
        self.calls = 0
        self.fail_before: APIError | None = None
        self.fail_after: APIError | None = None
        self.ready, self.probe_ok = True, True

    async def start(self) -> None:
        return None

    def status(self) -> EngineStatus:
        return EngineStatus(state="ready" if self.ready else "restarting", kind="fake")

    async def probe(self) -> bool:
        return self.probe_ok

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        self.calls += 1
        if self.fail_before is not None:
            raise self.fail_before
        yield Delta(content="a")
        if self.fail_after is not None:
            raise self.fail_after
        yield Delta(finish_reason="stop", usage=Usage(10, 2, cached_tokens=4))

    async def close(self) -> None:
        return None


def library(tmp_path: Path, backends: str, routing: str = "") -> ModelSpec:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    text = (f'[[models]]\nid = "m"\nfile = "m.gguf"\ncontext_length = 256\n{routing}\n' + backends)
    (tmp_path / "lib.toml").write_text(text)
    return load_library(tmp_path / "lib.toml").get("m")


TWO = '[[models.backends]]\nname = "a"\nparallel = 1\n\n[[models.backends]]\nname = "b"\nparallel = 1\n'


def routed(tmp_path: Path, routing: str = "[models.routing]\npolicy = \"round_robin\"\nfailures_to_open = 2\n"
           ) -> tuple[RoutedEngine, dict[str, FakeEngine]]:
    spec = library(tmp_path, TWO, routing)
    fakes: dict[str, FakeEngine] = {}

    def make(backend_spec: ModelSpec, settings: Settings) -> FakeEngine:
        fakes[f"b{len(fakes)}"] = engine = FakeEngine(backend_spec, settings)
        return engine

    engine = RoutedEngine(spec, Settings(max_queue=0), factory=make)
    return engine, {"a": fakes["b0"], "b": fakes["b1"]}


async def collect(engine: RoutedEngine) -> list[Delta]:
    return [d async for d in engine.generate(REQUEST)]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_failure_before_the_first_delta_is_retried_once_elsewhere(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)
    fakes["a"].fail_before = EngineFailure("refused", code="upstream_error")
    for _ in range(3):
        deltas = run(collect(engine))
        assert [d.content for d in deltas] == ["a", ""] and deltas[-1].usage.cached_tokens == 4  # type: ignore[union-attr]
    cards = {c["name"]: c for c in engine.status().backends}
    assert cards["a"]["circuit"] == "open" and cards["a"]["failures"] == 2  # then it took no more
    assert fakes["a"].calls == 2 and fakes["b"].calls == 3
    assert cards["b"]["served"] == 3 and cards["b"]["cached_rate"] == 0.4 and cards["b"]["in_flight"] == 0


def test_both_failing_before_the_first_delta_is_the_last_error(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)
    fakes["a"].fail_before = GatewayTimeout("a sent nothing")
    fakes["b"].fail_before = GatewayTimeout("b sent nothing")
    with pytest.raises(GatewayTimeout):
        run(collect(engine))
    assert fakes["a"].calls == fakes["b"].calls == 1  # once each, no more


def test_a_clients_error_is_not_retried_and_does_not_count_against_the_backend(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)
    fakes["a"].fail_before = fakes["b"].fail_before = InvalidRequest("too long", param="messages")
    for _ in range(4):
        with pytest.raises(InvalidRequest):
            run(collect(engine))
    assert fakes["a"].calls + fakes["b"].calls == 4
    assert {c["circuit"] for c in engine.status().backends} == {"closed"}


def test_failure_after_the_first_delta_propagates_unretried(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)
    fakes["a"].fail_after = fakes["b"].fail_after = EngineFailure("broke off", code="upstream_error")

    async def consume() -> list[str]:
        seen = []
        with pytest.raises(EngineFailure):
            async for delta in engine.generate(REQUEST):
                seen.append(delta.content)
        return seen

    assert run(consume()) == ["a"]
    assert fakes["a"].calls + fakes["b"].calls == 1


def test_busy_backend_is_retried_without_opening_its_circuit(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)
    fakes["a"].fail_before = Unavailable("busy", retry_after=1)
    for _ in range(4):
        assert run(collect(engine))[-1].finish_reason == "stop"
    assert {c["name"]: c["circuit"] for c in engine.status().backends}["a"] == "closed"


def test_unavailable_only_when_every_backend_is_down(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)
    fakes["a"].ready = False
    assert run(collect(engine))[-1].finish_reason == "stop" and fakes["a"].calls == 0
    fakes["b"].probe_ok = False
    run(engine._check_all())  # the active check
    with pytest.raises(Unavailable) as raised:
        run(collect(engine))
    assert raised.value.headers["Retry-After"] and raised.value.code == "model_unavailable"
    assert engine.status().state == "ready"  # b's process is up; its server does not answer
    fakes["a"].ready, fakes["b"].probe_ok = True, True
    run(engine._check_all())
    assert run(collect(engine))[-1].finish_reason == "stop"


def test_a_client_that_leaves_frees_the_backend(tmp_path: Path) -> None:
    engine, fakes = routed(tmp_path)

    async def leave() -> None:
        stream = engine.generate(REQUEST)
        assert (await anext(stream)).content == "a"
        await stream.aclose()  # type: ignore[attr-defined]

    run(leave())
    cards = engine.status().backends
    assert sum(c["in_flight"] for c in cards) == 0 and {c["circuit"] for c in cards} == {"closed"}


# -- the library ----------------------------------------------------------------------------------

def test_backends_entry_builds_each_engine_and_sums_capacity(tmp_path: Path) -> None:
    up = ('[[models.backends]]\nname = "far"\nengine = "openai"\nparallel = 8\nqueue = 0\nrank = 1\n'
          '[models.backends.upstream]\nurl = "http://127.0.0.1:1/v1"\nflavour = "llamacpp"\n')
    spec = library(tmp_path, TWO + up, '[models.routing]\npolicy = "least_outstanding"\nprefer = true\n')
    assert spec.engine == "routed" and spec.parallel == 10 and spec.flavour == "llamacpp"
    assert [(b.name, b.spec.engine, b.rank) for b in spec.backends] == [("a", "llamacpp", 0), ("b", "llamacpp", 0),
                                                                        ("far", "openai", 1)]
    assert spec.backends[2].spec.file is None and spec.backends[0].spec.file == tmp_path / "m.gguf"
    assert spec.capacity(max_queue=4) == (1 + 4) * 2 + 8
    assert spec.routing is not None and spec.routing.prefer and spec.routing.policy == "least_outstanding"


def test_each_backend_engine_is_built_with_its_own_queue(tmp_path: Path) -> None:
    spec = library(tmp_path, TWO.replace('name = "b"\n', 'name = "b"\nqueue = 9\n'))
    queues: list[int] = []

    def make(backend_spec: ModelSpec, settings: Settings) -> FakeEngine:
        queues.append(settings.max_queue)  # what sizes its connections and threads
        return FakeEngine(backend_spec, settings)

    RoutedEngine(spec, Settings(max_queue=3), factory=make)
    assert queues == [3, 9]


@pytest.mark.parametrize("backends, routing, message", [
    ('[[models.backends]]\nname = "a"\n[[models.backends]]\nname = "a"\n', "", "names must differ"),
    ('[[models.backends]]\nport = 1\n', "", "a backend takes"),
    ('[[models.backends]]\nengine = "tpu"\n', "", "unknown engine 'tpu'"),
    (TWO, '[models.routing]\npolicy = "random"\n', "unknown routing policy"),
    (TWO, '[models.routing]\nretries = 3\n', "[models.routing] takes"),
    ('[[models.backends]]\nqueue = -1\n', "", "queue must be"),
    ('[[models.backends]]\nengine = "openai"\n', "", "needs [models.upstream]"),
    (TWO + '[[models.backends]]\nengine = "openai"\n[models.backends.upstream]\nurl = "http://127.0.0.1:1/v1"\n', "",
     "must agree"),
])
def test_bad_backends_are_named(tmp_path: Path, backends: str, routing: str, message: str) -> None:
    with pytest.raises(ValueError, match="library entry 'm'") as raised:
        library(tmp_path, backends, routing)
    assert message in str(raised.value)
