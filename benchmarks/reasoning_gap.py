"""The cost of a forced close: the gap between the last reasoning delta and the first answer delta.

When a reasoning budget is spent, inferd writes the end marker and continues the turn in a
second engine call (phase 2). This measures that boundary against the ordinary inter-token gap,
on the packaged Qwen model configured as a think-tags model (the tests' template), budget 16.

    .venv/bin/python benchmarks/reasoning_gap.py [models-dir]
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's tests/ helpers

import httpx

from tests.e2e.test_reasoning import thinker_entry
from tests.harness import Server, library_server

REQUESTS = 6


def gaps_of_one_stream(srv: Server, key: str, number: int) -> tuple[list[float], list[float]]:
    """(the reasoning -> answer gap, the other inter-delta gaps) of one streamed request, in ms."""
    question = [{"role": "user", "content": f"Is {number} a prime number? Think about it carefully."}]
    body = {"model": "t", "messages": question, "max_tokens": 40, "stream": True, "reasoning_effort": "minimal"}
    boundary: list[float] = []
    others: list[float] = []
    last, previous = None, None
    with httpx.stream("POST", srv.url + "/api/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        for line in response.iter_lines():
            choices = json.loads(line[6:])["choices"] if line.startswith("data: {") else []
            delta = choices[0]["delta"] if choices else {}
            kind = "reasoning" if delta.get("reasoning_content") else "content" if delta.get("content") else None
            if kind is None:
                continue
            now = time.perf_counter()
            if last is not None:
                (boundary if (previous, kind) == ("reasoning", "content") else others).append((now - last) * 1000)
            last, previous = now, kind
    return boundary, others


def main() -> None:
    models = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".local/share/inferd/models"
    toml = thinker_entry(models, "t", {"minimal": 16}, parallel=2)
    with library_server(Path(tempfile.mkdtemp()), models, toml) as srv:
        key = srv.create_key("gap")
        boundary, others = [], []
        for i in range(REQUESTS):
            b, o = gaps_of_one_stream(srv, key, 17 + 2 * i)
            boundary += b
            others += o
    print(f"boundary gap ms: {[round(g) for g in boundary]}  median ITL ms: {statistics.median(others):.1f}")


if __name__ == "__main__":
    main()
