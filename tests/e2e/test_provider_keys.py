"""Keys against the real server on SQLite and PostgreSQL: the first keys, the management API,
allow-lists, expiry, disabling and PATCH taking effect live, the CLI."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import openai
import pytest

from ..conftest import assert_error
from ..gateway import GEMMA, OTHER, Gateway
from ..harness import inferd


def test_first_start_created_a_management_key_and_an_ordinary_key(gateway: Gateway) -> None:
    assert gateway.admin.startswith("sk-inferd-") and gateway.default.startswith("sk-inferd-")
    assert gateway.chat(gateway.default).status_code == 200
    assert gateway.manage("GET", "/keys").status_code == 200
    assert_error(gateway.chat(gateway.admin), 403, "invalid_request_error", None, "permission_denied")
    refused = httpx.get(gateway.url + "/api/v1/keys", headers={"Authorization": f"Bearer {gateway.default}"})
    assert_error(refused, 403, "invalid_request_error", None, "permission_denied")
    log = gateway.server.log()
    assert log.count(gateway.admin) == 1 and log.count(gateway.default) == 1  # printed once, never logged


def test_key_lifecycle_through_the_management_api(gateway: Gateway) -> None:
    secret, data = gateway.key(name=f"life-{gateway.kind}", limit=5, limit_reset="weekly", token_limit=1000,
                               rate_limit={"requests_per_minute": 50}, expires_at="2099-01-01T00:00:00Z")
    assert data["limit"] == 5.0 and data["limit_remaining"] == 5.0 and data["token_limit_remaining"] == 1000
    assert data["rate_limit"] == {"requests_per_minute": 50, "tokens_per_minute": None, "concurrent_requests": None}
    assert data["expires_at"] == "2099-01-01T00:00:00Z" and data["label"] == secret[:16] + "..."
    assert secret not in str(data)
    assert gateway.chat(secret).status_code == 200
    digest = data["hash"]
    page = gateway.manage("GET", "/keys", params={"offset": 0, "limit": 100}).json()["data"]
    assert digest in [k["hash"] for k in page] and all("key" not in k for k in page)
    assert len(gateway.manage("GET", "/keys", params={"limit": 1}).json()["data"]) == 1
    assert gateway.manage("GET", f"/keys/{digest}").json()["data"]["name"] == f"life-{gateway.kind}"
    patched = gateway.manage("PATCH", f"/keys/{digest}", json={"name": f"renamed-{gateway.kind}", "limit": None})
    assert patched.status_code == 200 and patched.json()["data"]["limit"] is None
    own = httpx.get(gateway.url + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert own["name"] == f"renamed-{gateway.kind}" and own["requests"]["total"] >= 0
    assert gateway.manage("DELETE", f"/keys/{digest}").json() == {"deleted": True}
    assert_error(gateway.chat(secret), 401, "invalid_request_error", None, "invalid_api_key")
    assert_error(gateway.manage("GET", f"/keys/{digest}"), 404, "invalid_request_error", "hash", "not_found")
    assert_error(gateway.manage("DELETE", f"/keys/{digest}"), 404, "invalid_request_error", "hash", "not_found")


@pytest.mark.parametrize("body,param,code", [
    ({"name": "x", "limit": -1}, "limit", "invalid_value"),
    ({"name": "x", "limit_reset": "yearly"}, "limit_reset", "invalid_value"),
    ({"name": "x", "rate_limit": {"requests_per_minute": "ten"}}, "rate_limit.requests_per_minute", "invalid_type"),
    ({"name": "x", "token_limit": "100"}, "token_limit", "invalid_type"),
    ({"name": "x", "expires_at": "2030-01-01T00:00:00-05:00"}, "expires_at", "invalid_value"),
    ({"name": "x", "models": ["no-such-model"]}, "models[0]", "model_not_found"),
    ({"name": "x", "colour": "red"}, "colour", "unknown_parameter"),
    ({"limit": 1}, "name", "missing_required_parameter"),
])
def test_bad_management_input_is_a_400_naming_the_field(gateway: Gateway, body: dict, param: str, code: str) -> None:
    assert_error(gateway.manage("POST", "/keys", json=body), 400, "invalid_request_error", param, code)
    assert gateway.server.is_healthy()


def test_management_errors_have_the_openai_shape(gateway: Gateway) -> None:
    _, data = gateway.key(name=f"dup-{gateway.kind}")
    assert_error(gateway.manage("POST", "/keys", json={"name": f"dup-{gateway.kind}"}), 409,
                 "invalid_request_error", "name", "conflict")
    assert_error(gateway.manage("PATCH", "/keys/" + "0" * 64, json={"disabled": True}), 404,
                 "invalid_request_error", "hash", "not_found")
    assert_error(gateway.manage("PATCH", f"/keys/{data['hash']}", json={"management": True}), 400,
                 "invalid_request_error", "management", "unknown_parameter")
    assert_error(gateway.manage("POST", "/keys", content=b"{nope"), 400, "invalid_request_error", None, "invalid_json")
    assert_error(gateway.manage("POST", "/keys", json=[1]), 400, "invalid_request_error", None, "invalid_type")
    assert_error(gateway.manage("GET", "/keys", params={"limit": "0"}), 400, "invalid_request_error", "limit")
    assert_error(httpx.get(gateway.url + "/api/v1/keys"), 401, "invalid_request_error", None, "invalid_api_key")
    assert gateway.server.is_healthy()


def test_allow_list_hides_other_models_as_if_absent(gateway: Gateway) -> None:
    secret, _ = gateway.key(models=[GEMMA])
    client = openai.OpenAI(base_url=gateway.url + "/api/v1", api_key=secret, max_retries=0)
    listed = client.models.list().data
    assert [m.id for m in listed] == [GEMMA]
    assert listed[0].model_extra["pricing"]["prompt"] == "0.001"
    assert listed[0].model_extra["pricing"]["completion"] == "0.002"
    hidden = gateway.chat(secret, model=OTHER)
    absent = gateway.chat(secret, model="no-such-model")
    for response in (hidden, absent):
        assert_error(response, 404, "invalid_request_error", "model", "model_not_found")
    assert hidden.json()["error"]["message"].replace(OTHER, "X") == absent.json()["error"]["message"].replace(
        "no-such-model", "X")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(OTHER)
    assert client.chat.completions.create(model=GEMMA, messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2).choices
    everything = openai.OpenAI(base_url=gateway.url + "/api/v1", api_key=gateway.default, max_retries=0)
    assert {m.id for m in everything.models.list().data} == {GEMMA, OTHER}


def test_expired_and_disabled_keys_get_the_same_401_as_an_unknown_key(gateway: Gateway) -> None:
    unknown = gateway.chat("sk-inferd-unknown").json()
    expires = datetime.fromtimestamp(gateway.now() + 3600, timezone.utc)
    secret, data = gateway.key(expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert gateway.chat(secret).status_code == 200
    gateway.advance(3700)  # the server's clock passes the expiry
    expired = gateway.chat(secret)
    assert_error(expired, 401, "invalid_request_error", None, "invalid_api_key")
    assert expired.json() == unknown
    other, other_data = gateway.key()
    gateway.manage("PATCH", f"/keys/{other_data['hash']}", json={"disabled": True})
    assert gateway.chat(other).json() == unknown and gateway.chat(other).status_code == 401
    gateway.manage("PATCH", f"/keys/{other_data['hash']}", json={"disabled": False})
    assert gateway.chat(other).status_code == 200


def test_patch_takes_effect_on_the_live_server(gateway: Gateway) -> None:
    secret, data = gateway.key(rate_limit={"requests_per_minute": 1})
    assert gateway.chat(secret).status_code == 200
    assert gateway.chat(secret).status_code == 429
    gateway.manage("PATCH", f"/keys/{data['hash']}", json={"rate_limit": {"requests_per_minute": 3}})
    assert gateway.chat(secret).status_code == 200
    gateway.manage("PATCH", f"/keys/{data['hash']}", json={"models": [OTHER], "rate_limit": None})
    assert_error(gateway.chat(secret), 404, "invalid_request_error", "model", "model_not_found")
    assert gateway.chat(secret, model=OTHER).status_code == 200


def test_keys_cli_creates_keys_with_limits(gateway: Gateway) -> None:
    env = gateway.server.env
    created = inferd("keys", "create", "--name", f"cli-{gateway.kind}", "--rpm", "1", "--limit", "2.5",
                     "--limit-reset", "daily", "--models", GEMMA, "--expires-at", "2099-01-01T00:00:00Z", env=env)
    secret = created.stdout.strip().splitlines()[-1]
    own = httpx.get(gateway.url + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert (own["limit"], own["limit_reset"], own["models"]) == (2.5, "daily", [GEMMA])
    assert own["rate_limit"]["requests_per_minute"] == 1
    assert gateway.chat(secret).status_code == 200 and gateway.chat(secret).status_code == 429
    bad = inferd("keys", "create", "--name", "bad", "--limit", "-1", env=env, check=False)
    assert bad.returncode == 2 and "--limit" in bad.stderr
    admin = inferd("keys", "create", "--name", f"cli-admin-{gateway.kind}", "--management", env=env)
    admin_secret = admin.stdout.strip().splitlines()[-1]
    assert "management key" in admin.stdout
    assert gateway.chat(admin_secret).status_code == 403
    listing = inferd("keys", "list", env=env).stdout
    assert f"cli-admin-{gateway.kind}" in listing and "management" in listing and admin_secret not in listing
