"""``python tests/llama_server.py GGUF PORT KEY``: llama.cpp's own HTTP server (xllamacpp), as a peer.

A plain llama.cpp server, written without inferd's code, for tests of the ``openai`` engine in
front of it: llama.cpp's defaults, one slot, the model's own chat template, the key required.
"""

from __future__ import annotations

import signal
import sys

import xllamacpp


def main(gguf: str, port: str, key: str) -> None:
    params = xllamacpp.CommonParams()
    params.model.path = gguf
    params.n_parallel = 1
    params.n_ctx = 2048
    params.warmup = False
    params.api_keys = [key]
    params.ui = False
    params.hostnames = ["127.0.0.1"]
    params.port = int(port)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    server = xllamacpp.Server(params)
    print(f"llama.cpp listening on {server.listening_address}", flush=True)
    signal.sigwait({signal.SIGTERM})


if __name__ == "__main__":
    main(*sys.argv[1:])
