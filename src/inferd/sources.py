"""Model files that ship as chunks inside PyPI packages: assemble once, verify, reuse.

Chunks are located through package metadata (``importlib.metadata``); the packages'
own code is never imported. A verified file gets a small stamp (size, mtime, sha256)
beside it so later starts reuse it without hashing half a gigabyte again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Callable, Iterator

from .errors import ModelSourceError
from .library import ModelSpec, PackageSource

BLOCK = 4 * 1024 * 1024
Progress = Callable[[str, int, int], None]


def chunk_paths(source: PackageSource) -> list[Path]:
    """The data file of each chunk package, in order; a clear error names a broken package."""
    paths = []
    for name in source.packages:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise ModelSourceError(_reinstall(name, "is not installed")) from None
        data = [f for f in (dist.files or []) if "/data/" in f"/{f}" and f.suffix not in {".py", ".md", ".html"}
                and "dist-info" not in str(f) and f.name != "SHA256SUMS"]
        if len(data) != 1 or not Path(dist.locate_file(data[0])).is_file():
            raise ModelSourceError(_reinstall(name, "is missing its data file"))
        paths.append(Path(dist.locate_file(data[0])))
    return paths


def _reinstall(package: str, problem: str) -> str:
    return f"model package '{package}' {problem}; reinstall it: pip install --force-reinstall {package}"


def ensure_model_file(spec: ModelSpec, models_dir: Path, progress: Progress | None = None) -> Path:
    """Return a verified model file for ``spec``, assembling it from its packages if needed."""
    target = spec.model_path(models_dir)
    if spec.source is None:
        if not target.exists() or target.is_dir():
            raise ModelSourceError(f"model '{spec.id}': file {target} does not exist")
        return target
    if _stamp_matches(target, spec.source):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock")):  # entries (or servers) sharing a file take turns
        if not _stamp_matches(target, spec.source):
            _assemble(spec, spec.source, target, progress or ProgressPrinter())
    return target


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _assemble(spec: ModelSpec, source: PackageSource, target: Path, progress: Progress) -> None:
    parts = chunk_paths(source)
    total = sum(p.stat().st_size for p in parts)
    if total != source.size:
        raise ModelSourceError(
            f"model '{spec.id}': its packages hold {total} bytes, expected {source.size}; reinstall: "
            f"pip install --force-reinstall {' '.join(source.packages)}")
    digest, done, partial = hashlib.sha256(), 0, target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as chunk:
                while block := chunk.read(BLOCK):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    progress(spec.id, done, total)
    if digest.hexdigest() != source.sha256:
        partial.unlink(missing_ok=True)
        raise ModelSourceError(
            f"model '{spec.id}': assembled file has sha256 {digest.hexdigest()}, expected {source.sha256}; "
            f"reinstall: pip install --force-reinstall {' '.join(source.packages)}")
    os.replace(partial, target)
    _write_stamp(target, source.sha256)


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    _stamp_path(target).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}))


def _stamp_matches(target: Path, source: PackageSource) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": source.sha256} and st.st_size == source.size


class ProgressPrinter:
    """Prints assembly progress to stderr in steps of 10%."""

    def __init__(self) -> None:
        self._last = -1

    def __call__(self, model_id: str, done: int, total: int) -> None:
        decile = done * 10 // max(total, 1)
        if decile == self._last:
            return
        self._last = decile
        print(f"assembling {model_id}: {done * 100 // total}% ({done >> 20} of {total >> 20} MiB)",
              file=sys.stderr, flush=True)
