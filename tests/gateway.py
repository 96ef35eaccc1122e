"""A real inferd server for the provider tests, on SQLite or PostgreSQL, with its first keys, a
test clock (``INFERD_TEST_CLOCK_FILE``) and direct read access to its database."""

from __future__ import annotations

import sqlite3
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx

from .harness import Server

GEMMA = "gemma-3-270m"
OTHER = "gemma-b"  # the same weights under a second id: for allow-lists
PRICES = {"prompt": 0.001, "completion": 0.002}


def library_toml(models_dir: Path) -> str:
    """The packaged gemma entry on its assembled file (the session server assembled it), priced,
    plus a second id on the same file (one slot)."""
    packaged = files("inferd").joinpath("models.toml").read_text(encoding="utf-8")
    gemma = next(block for block in packaged.split("[[models]]") if f'id = "{GEMMA}"' in block)
    gemma = gemma.split("[models.source]")[0].replace('filename = "gemma-3-270m.Q4_K_M.gguf"',
                                                      f'file = "{models_dir / "gemma-3-270m.Q4_K_M.gguf"}"')
    priced = "[[models]]" + gemma + '\n[models.pricing]\nprompt = "0.001"\ncompletion = 0.002\n'
    other = "[[models]]" + gemma.replace(f'id = "{GEMMA}"', f'id = "{OTHER}"').replace("parallel = 4", "parallel = 1")
    return priced + "\n" + other


class Gateway:
    def __init__(self, kind: str, folder: Path, models_dir: Path, database_url: str | None,
                 clock_file: Path | None = None, start: bool = True) -> None:
        self.kind, self.folder, self.database_url = kind, folder, database_url
        folder.mkdir(parents=True, exist_ok=True)
        self.clock_file = clock_file or folder / "clock-offset"
        if not self.clock_file.exists():
            self.clock_file.write_text("0")
        library = folder / "library.toml"
        library.write_text(library_toml(models_dir))
        env = {"INFERD_TEST_CLOCK_FILE": str(self.clock_file), "INFERD_STORE_BUSY_TIMEOUT_MS": "500",
               "INFERD_SPOOL_RETRY_S": "0.2"}
        if database_url:
            env["INFERD_DATABASE_URL"] = database_url
        self.server = Server(folder / "data", models_dir, library=library, env=env)
        self.url = self.server.url
        self.admin = self.default = ""
        if start:
            try:
                self.server.wait_health()
            except BaseException:
                self.server.stop()
                raise
            self.admin, self.default = self.first_keys()

    def first_keys(self) -> tuple[str, str]:
        log = self.server.log()
        admin = log.split("created management key 'admin'", 1)[1].splitlines()[1].strip()
        default = log.split("created key 'default'. It is shown only now:\n", 1)[1].splitlines()[0].strip()
        return admin, default

    # the test clock: only ever moved forward, so other tests' windows are never disturbed
    def now(self) -> float:
        return time.time() + float(self.clock_file.read_text() or 0)

    def advance(self, seconds: float) -> None:
        self.clock_file.write_text(str(float(self.clock_file.read_text() or 0) + seconds))

    def manage(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + "/api/v1" + path, headers={"Authorization": f"Bearer {self.admin}"},
                             timeout=60, **kwargs)

    def key(self, **fields: Any) -> tuple[str, dict[str, Any]]:
        """A new ordinary key with these fields (name defaults to a unique one): (secret, data)."""
        fields.setdefault("name", f"t-{time.monotonic_ns()}")
        response = self.manage("POST", "/keys", json=fields)
        assert response.status_code == 201, response.text
        return response.json()["key"], response.json()["data"]

    def chat(self, secret: str, **body: Any) -> httpx.Response:
        payload = {"model": GEMMA, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, **body}
        return httpx.post(self.url + "/api/v1/chat/completions", json=payload,
                          headers={"Authorization": f"Bearer {secret}"}, timeout=120)

    def records(self, key_hash: str) -> list[dict[str, Any]]:
        sql = ("SELECT u.* FROM usage u JOIN api_keys k ON k.id = u.key_id WHERE k.hash = {} "
               "ORDER BY u.admitted_at")
        if self.database_url:
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
                return list(conn.execute(sql.format("%s"), (key_hash,)).fetchall())
        db = sqlite3.connect(self.folder / "data" / "inferd.sqlite3")
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql.format("?"), (key_hash,)).fetchall()]
        finally:
            db.close()

    def settled(self, key_hash: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The key's records once ``count`` of them exist and none is in flight."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.records(key_hash)
            if len(rows) >= count and all(r["status"] != "in_flight" for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"records of {key_hash[:8]} not settled: {rows}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()
