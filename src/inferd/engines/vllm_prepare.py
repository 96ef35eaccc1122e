"""``python -m inferd.engines.vllm_prepare probe | convert GGUF OUT``: vLLM's slow set-up, out of the API process.

Run by inferd's ``vllm`` engine as a child process, so that torch and transformers are never
imported into the API process:

- ``probe`` prints (as a JSON list) which of vLLM's optional companions (``torchvision``,
  ``torchaudio``, ``torchcodec``) fail to import beside the installed torch; inferd marks those
  absent in every vLLM process (``vllm_site/sitecustomize.py``).
- ``convert GGUF OUT`` turns a GGUF file into a Hugging Face model folder vLLM can serve offline
  (bf16 safetensors, tokenizer, chat template), written beside OUT and renamed to OUT when
  complete, with progress on stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from .procs import die_with_parent

OPTIONAL = ("torchvision", "torchaudio", "torchcodec")


def probe() -> list[str]:
    """The optional modules that are installed but do not import (their wheels do not match this torch)."""
    import torch  # noqa: F401  - they fail against it, not alone

    broken = []
    for name in OPTIONAL:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - any failure means: not usable here
            broken.append(name)
    return broken


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.monotonic()
    say(f"reading the tokenizer and chat template of {gguf.name}", started)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say("de-quantizing the weights to bf16 (the slow part)", started)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # loaded from GGUF, the model still says so: saving would fail (the quantizer) or the saved
    # config would claim GGUF quantization vLLM then looks for
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    say(f"writing safetensors to {out}", started)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, out)
    say("done", started)


def say(step: str, started: float) -> None:
    print(f"inferd: converting for vLLM [{time.monotonic() - started:5.1f} s] {step}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    die_with_parent(signal.SIGKILL)  # never outlive inferd
    if argv[:1] == ["probe"]:
        print(json.dumps(probe()), flush=True)
        return 0
    if argv[:1] == ["convert"] and len(argv) == 3:
        convert(Path(argv[1]), Path(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
