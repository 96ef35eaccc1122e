"""Prometheus metrics, recorded at the edge and at the chat service boundary, served at GET /metrics.

Names and labels are vLLM's where the two overlap (``vllm:*``, label ``model_name``), so dashboards
made for vLLM read inferd unchanged; what vLLM has no metric for is ``inferd_*``. Every per-model
series also has a ``backend`` label: the engine serving the model (its library ``engine`` today,
one value per backend once a model has several). Labels only ever hold library model ids, route
templates, status codes and fixed words: a client cannot create series.

Access: loopback clients only, unless ``metrics_token`` is set; then everyone, loopback included,
must send it as a bearer token (compared in constant time, never logged).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Any, Iterator

from prometheus_client import (CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from ..errors import MetricsAuthFailed
from ..library import Library, ModelSpec
from ..provider.meter import Meter
from ..store import UsageRecord

# vLLM's bucket boundaries (vllm/v1/metrics/buckets.py), so that its dashboards' quantiles compare
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MODEL = ("model_name", "backend")
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
NO_MODEL = ""  # requests that named no library model (refused before, or unknown id)


def finished_reason(rec: UsageRecord) -> str:
    """vLLM's finished_reason words: the model's own reason, ``abort`` (the client left), ``error``."""
    if rec.status == "completed":
        return rec.finish_reason or "stop"
    return "abort" if rec.status == "client_disconnected" else "error"


class Metrics:
    """The server's metrics in their own registry (no process-wide state: several apps may coexist)."""

    def __init__(self, library: Library) -> None:
        disable_created_metrics()  # no *_created series (as vLLM): they double the output and no dashboard reads them
        self.registry = CollectorRegistry(auto_describe=True)
        self._models = {spec.id for spec in library}
        r = self.registry
        self.requests = Counter("inferd_requests", "Chat completion requests by outcome: the HTTP status answered "
                                "(200 for every stream that started) and the model asked for.",
                                ["model_name", "status"], registry=r)
        self.success = Counter("vllm:request_success", "Generations that ended, by finished_reason (stop, length, "
                               "tool_calls, abort: the client left, error).", [*MODEL, "finished_reason"], registry=r)
        self.prompt = Counter("vllm:prompt_tokens", "Prompt tokens processed.", MODEL, registry=r)
        self.generation = Counter("vllm:generation_tokens", "Tokens generated (completion tokens, reasoning "
                                  "included).", MODEL, registry=r)
        self.reasoning = Counter("inferd_reasoning_tokens", "Generated tokens that were reasoning.", MODEL,
                                 registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time from admission to the first generated "
                              "token.", MODEL, buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Time between consecutive generated tokens.", MODEL,
                             buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Time from admission to the end of the "
                             "generation.", MODEL, buckets=E2E_BUCKETS, registry=r)
        self.rejections = Counter("inferd_rate_limit_rejections", "Requests refused by a key's limits: 429 (rate: "
                                  "reason requests or tokens) or 402 (quota: reason insufficient_quota).",
                                  ["model_name", "status", "reason"], registry=r)
        self.http = Counter("inferd_http_requests", "HTTP requests by method, route template and status.",
                            ["method", "route", "status"], registry=r)
        self.http_time = Histogram("inferd_http_request_duration_seconds", "Time from the request to the end of "
                                   "its response (a stream's last byte).", ["method", "route"],
                                   buckets=HTTP_BUCKETS, registry=r)
        ProcessCollector(registry=r)

    def model_label(self, model: Any) -> str:
        return model if isinstance(model, str) and model in self._models else NO_MODEL

    def http_done(self, method: str, route: str, status: int, seconds: float, model: str | None) -> None:
        shown = str(status) if status else "none"
        self.http.labels(method, route, shown).inc()
        self.http_time.labels(method, route).observe(seconds)
        if route.endswith("/chat/completions") and method == "POST":
            self.requests.labels(self.model_label(model), shown).inc()

    def rejected(self, model: str, status: int, reason: str) -> None:
        self.rejections.labels(self.model_label(model), str(status), reason).inc()

    def settled(self, rec: UsageRecord, meter: Meter) -> None:
        """One generation's end (every admitted request that reached an engine settles exactly once)."""
        labels = (rec.model, rec.engine)
        self.success.labels(*labels, finished_reason(rec)).inc()
        self.prompt.labels(*labels).inc(rec.prompt_tokens)
        self.generation.labels(*labels).inc(rec.completion_tokens)
        self.reasoning.labels(*labels).inc(rec.reasoning_tokens)
        if rec.ttft_ms is not None:
            self.ttft.labels(*labels).observe(rec.ttft_ms / 1000)
        for gap in meter.gaps:
            self.itl.labels(*labels).observe(gap)
        self.e2e.labels(*labels).observe(rec.duration_ms / 1000)

    def watch(self, library: Library, pool: Any) -> None:
        """Engine gauges read from the pool at each scrape."""
        self.registry.register(EngineCollector(library, pool))


class EngineCollector(Collector):
    """Running and waiting requests, slots, readiness and restarts per model and backend, from
    ``pool.health()`` at scrape time (the pool counts a model's requests in flight, slots first)."""

    def __init__(self, library: Library, pool: Any) -> None:
        self._library = library
        self._pool = pool

    def collect(self) -> Iterator[Any]:
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests in an engine slot.", labels=MODEL)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Requests queued for a slot.", labels=MODEL)
        slots = GaugeMetricFamily("inferd_slots", "Parallel slots (requests generated at once).", labels=MODEL)
        ready = GaugeMetricFamily("inferd_engine_ready", "1 when the engine serves, else 0.", labels=MODEL)
        restarts = CounterMetricFamily("inferd_engine_restarts", "Engine process restarts after a crash.",
                                       labels=MODEL)
        engines = self._pool.health()["engines"]
        for spec in self._library:
            for labels, card, parallel in _engine_rows(spec, engines.get(spec.id, {})):
                in_flight = card.get("in_flight", 0)
                running.add_metric(labels, min(in_flight, parallel))
                waiting.add_metric(labels, max(in_flight - parallel, 0))
                slots.add_metric(labels, parallel)
                ready.add_metric(labels, 1 if _serving(card) else 0)
                restarts.add_metric(labels, card.get("restarts", 0))
        yield from (running, waiting, slots, ready, restarts)

    def describe(self) -> Iterator[Any]:
        return iter(())


def _engine_rows(spec: ModelSpec, card: dict[str, Any]) -> list[tuple[list[str], dict[str, Any], int]]:
    """(labels, card, slots) per backend: the model's backends when it has several, else its one engine."""
    if card.get("backends"):
        return [([spec.id, b["name"]], b, b["slots"]) for b in card["backends"]]
    return [([spec.id, spec.engine], card, spec.parallel)]


def _serving(card: dict[str, Any]) -> bool:
    """Ready, and for a backend also passing its health check with its circuit not open."""
    return card.get("state") == "ready" and card.get("healthy", True) and card.get("circuit") != "open"


def is_loopback(host: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def allowed(request: Request, token: str) -> bool:
    """Loopback without a token configured; with one, only its bearer (compared in constant time)."""
    if not token:
        return is_loopback(request.client.host if request.client else None)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    digest = hashlib.sha256(given.strip().encode("utf-8", "replace")).digest()
    return scheme.lower() == "bearer" and hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())


async def scrape(request: Request) -> Response:
    state = request.app.state
    if not allowed(request, state.settings.metrics_token):
        raise MetricsAuthFailed(bool(state.settings.metrics_token))
    return Response(generate_latest(state.metrics.registry), media_type=TEXT_FORMAT)
