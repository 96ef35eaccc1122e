"""``python -m inferd.engines.warden GRACE -- COMMAND...``: the small process between inferd and an engine.

It starts COMMAND in a process group of its own and makes sure that group never outlives inferd:
when inferd dies (even by SIGKILL) the kernel closes the pipe on the warden's stdin and sends it
SIGTERM; either way the warden stops the whole group (SIGTERM, then SIGKILL after GRACE seconds).
vLLM's engine core and workers are children of its API server, so killing the group reaches
them too. When COMMAND exits on its own, the warden clears what is left of its group and exits
with COMMAND's status (128 + signal number for a signal), so inferd's supervisor sees the crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Sequence

from .procs import die_with_parent

POLL_S = 0.2  # how often the warden looks at its engine and its stop flag
PARENT_ENV = "INFERD_WARDEN_PARENT"  # inferd's pid: if the warden's parent is already another, inferd is gone


def main(argv: Sequence[str]) -> int:
    grace, command = float(argv[0]), list(argv[2:])
    die_with_parent(signal.SIGTERM)
    if str(os.getppid()) != os.environ.get(PARENT_ENV, str(os.getppid())):
        return 1  # inferd died before the kernel could be told to signal us
    # a plain flag, not a threading.Event: a signal handler that takes a lock the interrupted code
    # holds (Event.wait holds the Event's) deadlocks; seen: a warden that never stopped its engine
    stop = _Stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop.request)
    threading.Thread(target=_watch_parent_pipe, args=(stop,), daemon=True).start()
    child = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
    while child.poll() is None and not stop.requested:
        time.sleep(POLL_S)
    if child.poll() is None:
        _stop_group(child, grace)
    _signal_group(child.pid, signal.SIGKILL)  # anything the engine left behind in its group
    code = child.returncode
    return code if code >= 0 else 128 - code


class _Stop:
    """Set from a signal handler or the pipe watcher; read by the main loop. No lock anywhere."""

    requested = False

    def request(self, *_: object) -> None:
        self.requested = True


def _watch_parent_pipe(stop: _Stop) -> None:
    """inferd holds the other end of stdin; end of file means inferd is gone."""
    while os.read(sys.stdin.fileno(), 4096):
        pass
    stop.request()


def _stop_group(child: subprocess.Popen, grace: float) -> None:
    _signal_group(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
