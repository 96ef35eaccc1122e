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
from tests.harness import library_server
from tests.e2e.test_reasoning import HYBRID_TEMPLATE, QUESTION
models = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".local/share/inferd/models"
toml = f'''[[models]]
id = "t"
file = "{models / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"}"
context_length = 1024
parallel = 2
defaults = {{ temperature = 0.0 }}
chat_template = {json.dumps(HYBRID_TEMPLATE)}
[models.reasoning]
style = "think-tags"
opens_in_prompt = true
budgets = {{ minimal = 16 }}
'''
with library_server(Path(tempfile.mkdtemp()), models, toml) as srv:
    key = srv.create_key("gap")
    gaps, itls = [], []
    for i in range(6):
        q = [{"role": "user", "content": f"Is {17 + 2*i} a prime number? Think about it carefully."}]
        last, kind_prev, stamps = None, None, []
        with httpx.stream("POST", srv.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "t", "messages": q, "max_tokens": 40, "stream": True, "reasoning_effort": "minimal"}, timeout=60) as r:
            for line in r.iter_lines():
                if not line.startswith("data: {"): continue
                d = json.loads(line[6:])["choices"]
                if not d: continue
                delta = d[0]["delta"]
                kind = "r" if delta.get("reasoning_content") else "c" if delta.get("content") else None
                if kind is None: continue
                now = time.perf_counter()
                if last is not None:
                    (gaps if (kind_prev, kind) == ("r", "c") else itls).append((now - last) * 1000)
                last, kind_prev = now, kind
    print(f"boundary gap ms: {[round(g) for g in gaps]}  median ITL ms: {statistics.median(itls):.1f}")
