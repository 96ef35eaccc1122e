"""The provider layer of a running server: store, clock, key verifier, admission gate, usage ledger."""

from __future__ import annotations

from ..library import Library
from ..settings import Settings
from ..store import open_store
from .clock import clock_for
from .gate import Gate
from .keyring import KeyVerifier
from .ledger import UsageLedger
from .spool import Spool


class Provider:
    def __init__(self, settings: Settings, library: Library) -> None:
        self.clock = clock_for(settings.test_clock_file)
        self.store = open_store(settings.database_url, settings.db_path, settings.store_busy_timeout_ms)
        self.ledger = UsageLedger(self.store, Spool(settings.data_dir / "spool"), retry_s=settings.spool_retry_s)
        self.verifier = KeyVerifier(self.store, self.clock)
        self.gate = Gate(self.store, self.ledger, library, self.clock, settings.admission_lease_s)
        self.library = library

    async def start(self) -> None:
        await self.ledger.start()

    async def close(self) -> None:
        await self.ledger.close()
        self.store.close()
