"""Process facts from Linux ``/proc``: a process's descendants and their resident memory.

Elsewhere these answer ``None``/empty: supervision still works, only the figures are missing.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

PROC = Path("/proc")
PR_SET_PDEATHSIG = 1


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from the parent links in /proc."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.glob("[0-9]*/stat"):
        ppid = _ppid(entry)
        if ppid is not None:
            parents.setdefault(ppid, []).append(int(entry.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def tree_rss(pid: int) -> int | None:
    """Resident bytes of ``pid`` and all its descendants; None where /proc is unavailable."""
    if not (PROC / str(pid)).exists():
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(_rss_pages(p) for p in [pid, *descendants(pid)]) * page


def _ppid(stat: Path) -> int | None:
    try:
        text = stat.read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: fields restart after the last ')'
    return int(text[text.rindex(")") + 2:].split()[1])


def _rss_pages(pid: int) -> int:
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only; else a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass
