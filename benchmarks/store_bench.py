"""Provider-layer overhead per request and sustained usage writes, on SQLite and PostgreSQL.

For each store, in this process, with the server's own objects (key verifier, admission gate,
usage ledger, store threads):

- **overhead**: per request, verify the bearer key + admit it (a key with every limit set, so
  the locked load-and-reserve path runs) + hand its settlement to the ledger; p50 / p99 over
  ``--requests`` requests at each ``--concurrency``. The ledger settles in the background, as in
  the server; the run ends only when everything is settled (``settled/s``).
- **writes**: ``--writes`` settlements recorded at once, time until all are in the database.
- **counters** (``--redis``): the admission step alone, PostgreSQL's locked transaction against
  a Redis Lua script doing the same checks (sliding-minute requests, concurrency), to choose
  the counter mechanism. Needs ``redis-server`` on PATH and the ``redis`` Python package.

PostgreSQL is a throwaway durable server (fsync on, default ``synchronous_commit``) started from
the machine's binaries, unless ``--database-url`` names one.

    .venv/bin/python benchmarks/store_bench.py [--stores sqlite,postgres] [--redis] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferd.engines.base import Usage  # noqa: E402
from inferd.library import Library, ModelSpec  # noqa: E402
from inferd.provider.clock import SystemClock  # noqa: E402
from inferd.provider.gate import Gate  # noqa: E402
from inferd.provider.keyring import KeyVerifier  # noqa: E402
from inferd.provider.ledger import UsageLedger  # noqa: E402
from inferd.provider.pricing import Pricing  # noqa: E402
from inferd.provider.spool import Spool  # noqa: E402
from inferd.store import Store, open_store  # noqa: E402
from inferd.store.keys import insert_key  # noqa: E402
from inferd.store.ledger import admit  # noqa: E402
from inferd.store.records import Ticket  # noqa: E402

SPEC = ModelSpec(id="m", engine="llamacpp", context_length=4096, parallel=8, filename="m.gguf",
                 pricing=Pricing(prompt=1e-6, completion=2e-6))
MESSAGES = [{"role": "user", "content": "Write hello world in C"}]
LIMITS = {"rpm": 10**9, "tpm": 10**12, "concurrency": 10**6, "spend_limit": 10**9, "token_limit": 10**12,
          "limit_reset": "daily"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(ms, 0.50), 3), "p99_ms": round(pct(ms, 0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "n": len(ms)}


class Setup:
    def __init__(self, store: Store, folder: Path) -> None:
        clock = SystemClock()
        self.store = store
        self.ledger = UsageLedger(store, Spool(folder / f"spool-{uuid.uuid4().hex[:6]}"))
        self.gate = Gate(store, self.ledger, Library([SPEC]), clock, 3600.0)
        self.verifier = KeyVerifier(store, clock)
        _, self.secret = store.run_write(insert_key, f"bench-{uuid.uuid4().hex[:8]}", LIMITS, time.time())


async def one_request(setup: Setup) -> float:
    t0 = time.perf_counter()
    key = await setup.verifier.verify(setup.secret)
    assert key is not None
    admission = await setup.gate.admit(key, SPEC, MESSAGES, 16, None)
    admission.settle(Usage(prompt_tokens=20, completion_tokens=16))
    return (time.perf_counter() - t0) * 1000


async def overhead(store: Store, folder: Path, requests: int, concurrency: int) -> dict[str, Any]:
    setup = Setup(store, folder)
    for _ in range(50):  # warm-up: connections, caches, the ledger task
        await one_request(setup)
    await setup.ledger.drain()
    latencies: list[float] = []
    start = time.perf_counter()

    async def worker(count: int) -> None:
        for _ in range(count):
            latencies.append(await one_request(setup))

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    admitted_s = time.perf_counter() - start
    assert await setup.ledger.drain(300)
    settled_s = time.perf_counter() - start
    await setup.ledger.close()
    return {**summary(latencies), "concurrency": concurrency, "requests_per_s": round(len(latencies) / admitted_s),
            "settled_per_s": round(len(latencies) / settled_s)}


async def writes(store: Store, folder: Path, count: int) -> dict[str, Any]:
    setup = Setup(store, folder)
    key = await setup.verifier.verify(setup.secret)
    assert key is not None
    admissions = [await setup.gate.admit(key, SPEC, MESSAGES, 16, None) for _ in range(count)]
    start = time.perf_counter()
    for admission in admissions:
        admission.settle(Usage(prompt_tokens=20, completion_tokens=16))
    assert await setup.ledger.drain(600)
    elapsed = time.perf_counter() - start
    await setup.ledger.close()
    return {"records": count, "seconds": round(elapsed, 3), "writes_per_s": round(count / elapsed)}


async def admit_step(store: Store, requests: int) -> dict[str, Any]:
    """The counter mechanism alone on the database: the locked load-check-reserve transaction."""
    key, _ = store.run_write(insert_key, f"step-{uuid.uuid4().hex[:8]}", LIMITS, time.time())
    ms = []
    for _ in range(requests):
        now = time.time()
        ticket = Ticket(uuid.uuid4().hex, key, "m", "llamacpp", now, 100, 0.001)
        t0 = time.perf_counter()
        await store.write(admit, ticket, now - 60, now - 3600, ("daily", 0.0), lambda load: (True, load))
        ms.append((time.perf_counter() - t0) * 1000)
    return summary(ms)


REDIS_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - 60)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[3]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('INCR', KEYS[2])
return 1
"""


async def redis_step(requests: int, folder: Path) -> dict[str, Any] | None:
    """The same checks as one Redis Lua script (asyncio client, no thread hop: Redis's best case)."""
    binary = shutil.which("redis-server")
    try:
        import redis.asyncio as aioredis
    except ImportError:
        return None
    if binary is None:
        return None
    from tests.harness import free_port

    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                             "--appendfsync", "everysec", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    try:
        client = aioredis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        script = client.register_script(REDIS_ADMIT)
        ms = []
        for i in range(requests):
            t0 = time.perf_counter()
            assert await script(keys=["w:1", "c:1"], args=[time.time(), 10**9, 10**6, f"r{i}"]) == 1
            ms.append((time.perf_counter() - t0) * 1000)
        await client.aclose()
        return summary(ms[50:])
    finally:
        proc.terminate()
        proc.wait()


def open_stores(kinds: list[str], folder: Path, url: str | None) -> tuple[dict[str, Store], Any]:
    stores: dict[str, Store] = {}
    pg = None
    if "sqlite" in kinds:
        stores["sqlite"] = open_store("", folder / "bench.sqlite3")
    if "postgres" in kinds:
        if url is None:
            from tests.pg import PostgresServer, find_bin

            bindir = find_bin()
            assert bindir is not None, "PostgreSQL binaries not found"
            pg = PostgresServer(bindir, durable=True)
            url = pg.new_database()
        stores["postgres"] = open_store(url, None)
    return stores, pg


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="inferd-store-bench-"))
    stores, pg = open_stores(args.stores.split(","), folder, args.database_url)
    results: dict[str, Any] = {"load_before": load(), "cpus": os.cpu_count()}
    try:
        for name, store in stores.items():
            for c in [int(c) for c in args.concurrency.split(",")]:
                row = await overhead(store, folder, args.requests, c)
                results[f"{name} overhead c={c}"] = row
                print(f"{name:8} overhead  c={c}: {row}", flush=True)
            row = await writes(store, folder, args.writes)
            results[f"{name} writes"] = row
            print(f"{name:8} writes: {row}", flush=True)
            if args.redis:
                row = await admit_step(store, args.requests)
                results[f"{name} admit step"] = row
                print(f"{name:8} admit step (locked transaction): {row}", flush=True)
        if args.redis:
            row = await redis_step(args.requests + 50, folder)
            results["redis admit step"] = row
            print(f"redis    admit step (Lua script): {row}", flush=True)
    finally:
        for store in stores.values():
            store.close()
        if pg is not None:
            pg.stop()
        shutil.rmtree(folder, ignore_errors=True)
    results["load_after"] = load()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--writes", type=int, default=20000)
    parser.add_argument("--database-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--redis", action="store_true", help="also measure a Redis counter for comparison")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(f"load average before/after: {results['load_before']} / {results['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
