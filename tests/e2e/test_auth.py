"""API keys: every auth path, the CLI, live revocation, secrets never shown or logged."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from ..conftest import QWEN, assert_error
from ..harness import Server, inferd

CHAT = {"model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer  x y"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Token sk-inferd-whatever"},
    {"Authorization": "Bearer sk-inferd-not-a-real-key"},
    {"Authorization": "Bearer " + "x" * 5000},
], ids=["missing", "empty", "no-secret", "blank-secret", "basic", "other-scheme", "unknown", "huge"])
@pytest.mark.parametrize("method,path", [("POST", "/api/v1/chat/completions"), ("GET", "/api/v1/models"),
                                         ("POST", "/v1/chat/completions"), ("GET", "/v1/models/" + QWEN)])
def test_bad_credentials_get_the_same_401(server: Server, headers, method: str, path: str) -> None:
    response = httpx.request(method, server.url + path, headers=headers, json=CHAT, timeout=30)
    error = assert_error(response, 401, "invalid_request_error", None, "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    reference = httpx.get(server.url + "/api/v1/models", timeout=30).json()["error"]
    assert error == reference


def test_auth_is_checked_before_the_body(server: Server) -> None:
    response = httpx.post(server.url + "/api/v1/chat/completions", content=b"{not json", timeout=30)
    assert_error(response, 401, "invalid_request_error", None, "invalid_api_key")


def test_health_needs_no_key(server: Server) -> None:
    response = httpx.get(server.url + "/health", timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_bearer_scheme_is_case_insensitive(server: Server, api_key: str) -> None:
    response = httpx.get(server.url + "/api/v1/models", headers={"Authorization": f"bearer {api_key}"}, timeout=30)
    assert response.status_code == 200


def test_revoked_key_stops_working_on_the_live_server(server: Server) -> None:
    key = server.create_key("to-revoke")
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.post(server.url + "/api/v1/chat/completions", json=CHAT, headers=headers, timeout=60).status_code == 200
    inferd("keys", "revoke", "--name", "to-revoke", env=server.env)
    response = httpx.post(server.url + "/api/v1/chat/completions", json=CHAT, headers=headers, timeout=60)
    assert_error(response, 401, "invalid_request_error", None, "invalid_api_key")
    assert server.is_healthy()


def test_keys_cli_create_list_revoke(server: Server) -> None:
    created = inferd("keys", "create", "--name", "cli-key", env=server.env)
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk-inferd-") and len(secret) > 40
    listing = inferd("keys", "list", env=server.env).stdout
    assert "cli-key" in listing and secret[:16] in listing
    assert secret not in listing
    assert inferd("keys", "create", "--name", "cli-key", env=server.env, check=False).returncode == 1
    assert inferd("keys", "revoke", "--name", "cli-key", env=server.env).returncode == 0
    assert "revoked" in inferd("keys", "list", env=server.env).stdout
    assert inferd("keys", "revoke", "--name", "cli-key", env=server.env, check=False).returncode == 1


def test_keys_are_stored_only_as_hashes(server: Server) -> None:
    secret = server.create_key("hashed")
    db = sqlite3.connect(server.data_dir / "inferd.sqlite3")
    dump = "\n".join(db.iterdump())
    db.close()
    assert secret not in dump
    assert secret[len("sk-inferd-"):] not in dump


def test_first_start_printed_a_working_key_and_keys_never_reach_the_log(server: Server, api_key: str) -> None:
    log = server.log()
    first = log.split("created key 'default'. It is shown only now:\n", 1)[1].splitlines()[0].strip()
    response = httpx.get(server.url + "/api/v1/models", headers={"Authorization": f"Bearer {first}"}, timeout=30)
    assert response.status_code == 200
    httpx.get(server.url + "/api/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert api_key not in log
    assert log.count(first) == 1  # printed once, at creation, never logged on use


def test_usage_is_recorded_per_key(server: Server) -> None:
    key = server.create_key("usage-key")
    reply = httpx.post(server.url + "/api/v1/chat/completions", json=CHAT,
                       headers={"Authorization": f"Bearer {key}"}, timeout=60).json()
    db = sqlite3.connect(server.data_dir / "inferd.sqlite3")
    for _ in range(50):  # the writer thread records it asynchronously
        rows = db.execute("SELECT u.model, u.prompt_tokens, u.completion_tokens FROM usage u JOIN api_keys k "
                          "ON k.id = u.key_id WHERE k.name = 'usage-key' AND u.status <> 'in_flight'").fetchall()
        if rows:
            break
        import time
        time.sleep(0.1)
    db.close()
    assert rows == [(QWEN, reply["usage"]["prompt_tokens"], reply["usage"]["completion_tokens"])]


def test_keys_cli_takes_data_dir_like_serve(tmp_path) -> None:
    created = inferd("keys", "create", "--name", "flag-key", "--data-dir", str(tmp_path))
    secret = created.stdout.strip().splitlines()[-1]
    assert (tmp_path / "inferd.sqlite3").is_file()
    listing = inferd("keys", "list", "--data-dir", str(tmp_path)).stdout
    assert "flag-key" in listing and secret not in listing
    assert inferd("keys", "revoke", "flag-key", "--data-dir", str(tmp_path)).returncode == 0
