from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from . import netguard
from .gateway import Gateway
from .harness import Server, library_server
from .pg import PostgresServer, find_bin

# Any attempt of this test process to connect to (or resolve) something off loopback raises.
netguard.install()

QWEN = "qwen2.5-coder-0.5b-instruct"
GEMMA = "gemma-3-270m"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models folder per test run: the packaged models are assembled and verified once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Server]:
    """The real server on the packaged default Model Library."""
    srv = Server(tmp_path_factory.mktemp("data"), models_dir)
    try:
        srv.wait_health()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def api_key(server: Server) -> str:
    return server.create_key("tests")


@pytest.fixture()
def http(server: Server, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=120) as client:
        yield client


@pytest.fixture()
def client(server: Server, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/api/v1", api_key=api_key, max_retries=0, timeout=120)


def assert_error(response: httpx.Response, status: int, type_: str, param: str | None, code: str | None = None) -> dict:
    """The OpenAI error shape, with the expected status, type, param (and code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_ and error["param"] == param, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole run. Missing binaries: a skip, but a failure under CI."""
    bindir = find_bin()
    if bindir is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found; install Debian's 'postgresql' package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    srv = PostgresServer(bindir)
    try:
        yield srv
    finally:
        srv.stop()


def _gateway(kind: str, tmp_path_factory: pytest.TempPathFactory, models_dir: Path, url: str | None) -> Iterator[Gateway]:
    gw = Gateway(kind, tmp_path_factory.mktemp(f"gateway-{kind}"), models_dir, url)
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def sqlite_gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Gateway]:
    """A real server on a small priced library, on SQLite, with a test clock (provider tests); after the
    default server, which assembles the packaged model file this library names."""
    yield from _gateway("sqlite", tmp_path_factory, models_dir, None)


@pytest.fixture(scope="session")
def postgres_gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server,
                     postgres: PostgresServer) -> Iterator[Gateway]:
    """The same on a fresh database of the test PostgreSQL."""
    yield from _gateway("postgres", tmp_path_factory, models_dir, postgres.new_database())


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def gateway(request: pytest.FixtureRequest) -> Gateway:
    """Each provider test runs on both stores."""
    return request.getfixturevalue(f"{request.param}_gateway")


REPRODUCIBLE = "qwen-reproducible"


@pytest.fixture(scope="session")
def repro(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Server]:
    """The packaged Qwen GGUF in reproducible mode (8 slots, like the packaged entry): outputs at temperature 0
    or with a seed do not depend on load or the prompt cache, so tests can compare runs."""
    toml = f'''[[models]]
id = "{REPRODUCIBLE}"
file = "{models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"}"
context_length = 2048
parallel = 8
reproducible = true
'''
    with library_server(tmp_path_factory.mktemp("repro"), models_dir, toml) as srv:
        yield srv


@pytest.fixture(scope="session")
def rclient(repro: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=repro.url + "/api/v1", api_key=repro.create_key(), max_retries=0, timeout=900)
