"""A local file of usage records the database could not take, replayed when it can.

Each process appends to its own file under ``<data_dir>/spool/`` (JSON lines, fsynced) and holds
an exclusive lock on it while it lives; files left by processes that died are replayed by the
next one that finds them unlocked. Settlements are idempotent, so a record replayed twice still
counts once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import IO, Iterator

from ..store.records import UsageRecord


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"usage-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._file: IO[str] | None = None
        self.count = 0  # records in this process's own file

    def append(self, records: list[UsageRecord]) -> None:
        """Persist records (raises OSError if the disk refuses them too)."""
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a+", encoding="utf-8")
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write("".join(json.dumps(r.to_json()) + "\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.count += len(records)

    def own(self) -> list[UsageRecord]:
        if self._file is None or not self.count:
            return []
        self._file.seek(0)
        return _parse(self._file.read())

    def clear_own(self) -> None:
        if self._file is not None:
            self._file.truncate(0)
            self._file.seek(0)
            os.fsync(self._file.fileno())
        self.count = 0

    @contextlib.contextmanager
    def orphans(self) -> Iterator[list[tuple[Path, list[UsageRecord]]]]:
        """Spool files of other processes that are gone (unlocked); deleted if the block succeeds."""
        taken: list[tuple[Path, IO[str], list[UsageRecord]]] = []
        try:
            for path in sorted(self.folder.glob("usage-*.jsonl")) if self.folder.is_dir() else []:
                if path == self.path:
                    continue
                handle = path.open("r", encoding="utf-8")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    continue
                taken.append((path, handle, _parse(handle.read())))
            yield [(path, records) for path, _, records in taken]
            for path, _, _ in taken:
                path.unlink(missing_ok=True)
        finally:
            for _, handle, _ in taken:
                handle.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if not self.count:
                self.path.unlink(missing_ok=True)


def _parse(text: str) -> list[UsageRecord]:
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, TypeError):  # a torn last line (crash mid-write) is skipped
            records.append(UsageRecord(**json.loads(line)))
    return records
