"""Assembling a packaged model: located through package metadata, verified, reused by its stamp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferd.errors import ModelSourceError
from inferd.library import load_library
from inferd.sources import chunk_paths, ensure_model_file

GEMMA = next(spec for spec in load_library() if spec.id == "gemma-3-270m")


def test_chunks_are_found_through_package_metadata() -> None:
    paths = chunk_paths(GEMMA.source)
    assert [p.name for p in paths] == [f"gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)]
    assert sum(p.stat().st_size for p in paths) == GEMMA.source.size


def test_assembled_once_then_reused_until_the_file_changes(tmp_path: Path) -> None:
    calls: list[int] = []

    def record(model_id: str, done: int, total: int) -> None:
        calls.append(done)

    path = ensure_model_file(GEMMA, tmp_path, record)
    assert path.stat().st_size == GEMMA.source.size and calls[-1] == GEMMA.source.size
    calls.clear()
    assert ensure_model_file(GEMMA, tmp_path, record) == path
    assert calls == []  # the stamp matched: no re-reading, no re-hashing
    os.utime(path, ns=(0, 0))  # any change of the file voids the stamp
    ensure_model_file(GEMMA, tmp_path, record)
    assert calls and calls[-1] == GEMMA.source.size
    assert not list(tmp_path.glob("*.partial"))


def test_missing_own_file_is_a_clear_error(tmp_path: Path) -> None:
    from dataclasses import replace

    spec = replace(GEMMA, source=None, file=tmp_path / "absent.gguf")
    with pytest.raises(ModelSourceError, match="absent.gguf does not exist"):
        ensure_model_file(spec, tmp_path)
