"""Prompt processing (prefill) rate of llama.cpp, cold and behind a cached conversation prefix: the
service-time figure benchmarks/fleet_sim.py needs besides the decode step times bench.py and
engines.py measure.

One xllamacpp.Server in this process (1 slot, as many threads as CPUs, inferd's engine settings),
greedy, ``max_tokens`` 1. Per prompt size: a unique prompt of about N tokens (cold: only the chat
template's preamble can be cached), then the same conversation's next turn (the first prompt, a short
assistant answer and a new user message), whose prefix the slot still holds. llama.cpp's own
``timings`` give the prompt tokens it evaluated and the time it took.

    .venv/bin/python benchmarks/prefill_probe.py --gguf PATH [--sizes 8,32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import secrets
from typing import Any

SENTENCE = ("The gateway receives a request, checks the key, validates the body, picks the engine and streams "
            "the answer back. ")  # about 23 tokens
SAMPLING = {"temperature": 0, "top_k": 0, "top_p": 1, "min_p": 0, "max_tokens": 1, "n_predict": 1}


def load(gguf: str, threads: int) -> Any:
    import xllamacpp as x

    p = x.CommonParams()
    p.model.path = gguf
    p.n_ctx, p.n_parallel, p.ctx_shift = 8192, 1, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
    p.api_keys = [secrets.token_urlsafe(16)]
    return x.Server(p)


def prefill(server: Any, messages: list[dict[str, str]]) -> tuple[int, int, float]:
    """Prompt tokens, tokens evaluated (not cached), seconds llama.cpp spent on them."""
    reply = server.handle_chat_completions({"messages": messages, **SAMPLING})
    timings = reply["timings"]
    return int(reply["usage"]["prompt_tokens"]), int(timings["prompt_n"]), float(timings["prompt_ms"]) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--sizes", default="8,32", help="prompt sizes in sentences of ~23 tokens")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    server = load(args.gguf, args.threads)
    print("| turn | prompt tokens | evaluated | ms | evaluated tokens/s |\n|---|---|---|---|---|")
    for sentences in (int(s) for s in args.sizes.split(",")):
        for _ in range(args.repeats):
            first = [{"role": "user", "content": f"[{secrets.token_hex(4)}] " + SENTENCE * sentences + "Summarise it."}]
            second = first + [{"role": "assistant", "content": "It routes requests to engines and streams answers."},
                              {"role": "user", "content": "Now explain how it picks the engine, and what happens when "
                                                          "one fails. Keep it short please."}]
            for label, messages in (("cold", first), ("next turn", second)):
                total, evaluated, seconds = prefill(server, messages)
                print(f"| {label} | {total} | {evaluated} | {seconds * 1000:.0f} | {evaluated / seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
