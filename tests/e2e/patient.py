"""Patient versions of the session's clients, for modules that generate dozens of tokens per test: on a
busy 2-core machine that can take minutes. A module takes them with ``from .patient import client, http``."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture()
def client(client: openai.OpenAI) -> openai.OpenAI:
    return client.with_options(timeout=900)


@pytest.fixture()
def http(http: httpx.Client) -> httpx.Client:
    http.timeout = httpx.Timeout(900)
    return http
