"""``python -m inferd.engines.llamacpp_child PORT``: one llama.cpp server (xllamacpp) in its own process.

Run by inferd's supervisor under a warden, never by hand: the configuration comes in
``INFERD_LLAMACPP_CONFIG`` (JSON) and the listener's key in ``INFERD_ENGINE_KEY``, both removed
from the environment before llama.cpp starts. The listener binds 127.0.0.1:PORT; ``GET /health``
answers 200 once the model is loaded.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from .procs import die_with_parent

# llama.cpp's CPU backend uses OpenMP. When several engines share the cores, libgomp's default sleeps
# between decode steps (measured on 2 cores with two models in one process: 47 ms per token instead
# of 34 ms). Active waiting bounded to ~20 ms of spinning keeps the speed and costs no CPU while idle
# (ACTIVE alone spins for minutes after each burst). libgomp reads these when it loads.
OMP_ENV = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "2000000"}


def params(xllamacpp: Any, config: dict[str, Any], port: int, key: str) -> Any:
    p = xllamacpp.CommonParams()
    p.model.path = config["model"]
    p.n_parallel = config["parallel"]
    p.n_ctx = config["context_length"] * config["parallel"]  # llama.cpp splits n_ctx evenly across slots
    threads = config["threads"] or os.cpu_count() or 1
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.ctx_shift = False  # a full context ends the generation (finish_reason "length")
    p.warmup = False
    # llama.cpp keeps finished prompts' KV state in host memory for reuse (8 GiB by default): memory that
    # grows with every distinct prompt, aborted ones included; bounded by INFERD_PROMPT_CACHE_MIB, off by default
    p.cache_ram_mib = config.get("prompt_cache_mib", 0)
    p.api_keys = [key]
    p.ui = False
    p.endpoint_slots = False
    p.hostnames = ["127.0.0.1"]
    p.port = port
    p.n_threads_http = config["http_threads"]
    p.verbosity = 3 if config["debug"] else 1  # llama.cpp's per-request log only in debug
    if config["chat_template"]:
        p.chat_template = config["chat_template"]
    if config["mmproj"]:
        p.mmproj.path = config["mmproj"]
    if config.get("ubatch"):
        p.n_ubatch = config["ubatch"]  # 1: every forward pass holds one token (reproducible mode)
    return p


def main(argv: list[str]) -> int:
    die_with_parent(signal.SIGKILL)  # the warden; it also kills our process group
    config = json.loads(os.environ.pop("INFERD_LLAMACPP_CONFIG"))
    key = os.environ.pop("INFERD_ENGINE_KEY")
    for name, value in OMP_ENV.items():
        os.environ.setdefault(name, value)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait, in every thread
    import xllamacpp

    try:
        server = xllamacpp.Server(params(xllamacpp, config, int(argv[0]), key))
    except RuntimeError as exc:
        print(f"inferd: llama.cpp could not load {config['model']} ({exc}); INFERD_LOG_LEVEL=debug shows "
              "llama.cpp's own log", file=sys.stderr, flush=True)
        return 3
    print(f"inferd: model {config['id']}: llama.cpp engine listening (pid {os.getpid()})", file=sys.stderr, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    # nothing to save: in-flight requests were drained, or inferd is ending them; llama.cpp's own
    # teardown (the server's destructor) is skipped
    os._exit(0 if server else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
