"""A tiny random vision-language model for tests: a llama-arch GGUF plus a llava-style mmproj GGUF.

``write_tiny_vlm(directory)`` writes ``tiny-vlm.gguf`` (the language model) and
``tiny-vlm-mmproj.gguf`` (the vision projector) in a few milliseconds; llama.cpp loads them with
``CommonParams.model.path`` and ``CommonParams.mmproj.path``. The weights are random (numpy, from
``seed``), so the text is nonsense, but it is deterministic and it depends on the image pixels.

Shape of the model (see the constants below):
- tokenizer: byte-level ``gpt2`` BPE with all 256 byte tokens (any input text tokenizes), a few
  merges, and the ChatML tokens ``<|im_start|>``, ``<|im_end|>`` (end of generation) and
  ``<|endoftext|>``. No BOS token is added.
- generation only ever produces printable ASCII, newlines and merged tokens: one dimension of the
  residual stream is held constant and the output matrix gives every other token (bytes outside
  ASCII, control bytes, the special tokens) a logit tens of units lower. So outputs are valid UTF-8
  strings and a generation never ends by itself: it runs to ``max_tokens`` (finish "length").
- vision: 32x32 images, patches of 8, so every image is ``TOKENS_PER_IMAGE`` = (32/8)^2 = 16 tokens
  in the prompt. llama.cpp resizes any input image to 32x32 first.
- ``tokenizer.chat_template``: ChatML over string content. llama.cpp turns a message with image parts
  into one string holding a media marker per image before the template sees it, so the template
  needs nothing for images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD = 64          # language model width (the projector's output width must match)
N_HEAD = 4
N_LAYER = 2
N_FF = 128
N_CTX_TRAIN = 4096

IMAGE_SIZE = 32
PATCH_SIZE = 8
V_EMBD = 32          # ViT width
V_FF = 48            # keep it != V_EMBD: llama.cpp guesses the FFN orientation from the shapes
V_HEAD = 4
V_LAYER = 2          # the llava graph runs the first V_LAYER - 1 blocks
TOKENS_PER_IMAGE = (IMAGE_SIZE // PATCH_SIZE) ** 2

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
MERGES = (("Ġ", "t"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("Ġ", "a"), ("o", "n"), ("r", "e"))
LOGIT_PENALTY = 50.0  # how far below the others a token that must never be generated sits

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tiny_vlm(directory: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write the language model and its mmproj into ``directory``; returns (model, mmproj) paths."""
    import gguf  # test-only dependency

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    model_path = directory / "tiny-vlm.gguf"
    mmproj_path = directory / "tiny-vlm-mmproj.gguf"
    _write_language_model(gguf, model_path, rng)
    _write_projector(gguf, mmproj_path, rng)
    return model_path, mmproj_path


def _byte_symbols() -> list[str]:
    """The gpt2 byte-level alphabet: byte b is shown as this character (printable bytes as themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _vocabulary() -> tuple[list[str], list[int], list[bool]]:
    """Tokens, their gguf token types, and whether each may be generated."""
    symbols = _byte_symbols()
    tokens = list(symbols)
    allowed = [b == ord("\n") or ord(" ") <= b <= ord("~") for b in range(256)]
    for left, right in MERGES:
        tokens.append(left + right)
        allowed.append(True)
    types = [1] * len(tokens)  # NORMAL
    for special in SPECIAL_TOKENS:
        tokens.append(special)
        types.append(3)  # CONTROL: parsed in the prompt, never a byte sequence
        allowed.append(False)
    return tokens, types, allowed


def _normal(rng: np.random.Generator, *shape: int, scale: float) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _write_language_model(gguf, path: Path, rng: np.random.Generator) -> None:
    tokens, types, allowed = _vocabulary()
    n_vocab = len(tokens)
    arch = "llama"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_string("general.name", "tiny-vlm")
    w.add_uint32(f"{arch}.context_length", N_CTX_TRAIN)
    w.add_uint32(f"{arch}.embedding_length", N_EMBD)
    w.add_uint32(f"{arch}.block_count", N_LAYER)
    w.add_uint32(f"{arch}.feed_forward_length", N_FF)
    w.add_uint32(f"{arch}.attention.head_count", N_HEAD)
    w.add_uint32(f"{arch}.attention.head_count_kv", N_HEAD)
    w.add_uint32(f"{arch}.rope.dimension_count", N_EMBD // N_HEAD)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32(f"{arch}.vocab_size", n_vocab)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "default")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_array("tokenizer.ggml.merges", [f"{a} {b}" for a, b in MERGES])
    w.add_uint32("tokenizer.ggml.bos_token_id", tokens.index("<|endoftext|>"))
    w.add_uint32("tokenizer.ggml.eos_token_id", tokens.index("<|im_end|>"))
    w.add_uint32("tokenizer.ggml.padding_token_id", tokens.index("<|endoftext|>"))
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_string("tokenizer.chat_template", CHAT_TEMPLATE)

    # Dimension 0 of the residual stream is a constant 1: token embeddings (and the projector's
    # output) set it, and no layer writes to it. Through the output matrix it becomes a per-token
    # logit bias that keeps non-ASCII bytes and the special tokens out of every generation.
    embd = _normal(rng, n_vocab, N_EMBD, scale=1.0)
    embd[:, 0] = 1.0
    w.add_tensor("token_embd.weight", embd)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    out = _normal(rng, n_vocab, N_EMBD, scale=0.3)  # logits of a few units: sampling varies
    out[:, 0] = np.where(np.array(allowed), 0.0, -LOGIT_PENALTY)
    w.add_tensor("output.weight", out)
    attn_scale, ff_scale = N_EMBD ** -0.5, N_FF ** -0.5
    for i in range(N_LAYER):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v"):
            w.add_tensor(f"{p}.{name}.weight", _normal(rng, N_EMBD, N_EMBD, scale=attn_scale))
        attn_out = _normal(rng, N_EMBD, N_EMBD, scale=attn_scale)
        attn_out[0] = 0.0  # keep the constant dimension constant
        w.add_tensor(f"{p}.attn_output.weight", attn_out)
        w.add_tensor(f"{p}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_gate.weight", _normal(rng, N_FF, N_EMBD, scale=attn_scale))
        w.add_tensor(f"{p}.ffn_up.weight", _normal(rng, N_FF, N_EMBD, scale=attn_scale))
        down = _normal(rng, N_EMBD, N_FF, scale=ff_scale)
        down[0] = 0.0
        w.add_tensor(f"{p}.ffn_down.weight", down)
    _finish(w)


def _write_projector(gguf, path: Path, rng: np.random.Generator) -> None:
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_string("general.name", "tiny-vlm-mmproj")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "mlp")
    w.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    w.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    w.add_uint32("clip.vision.embedding_length", V_EMBD)
    w.add_uint32("clip.vision.feed_forward_length", V_FF)
    w.add_uint32("clip.vision.projection_dim", N_EMBD)
    w.add_uint32("clip.vision.attention.head_count", V_HEAD)
    w.add_uint32("clip.vision.block_count", V_LAYER)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_bool("clip.use_gelu", True)

    n_patches = TOKENS_PER_IMAGE
    # conv kernel, ggml ne = (patch, patch, 3, V_EMBD)
    kernel = _normal(rng, V_EMBD, 3, PATCH_SIZE, PATCH_SIZE, scale=(3 * PATCH_SIZE**2) ** -0.5)
    w.add_tensor("v.patch_embd.weight", kernel)
    w.add_tensor("v.patch_embd.bias", np.zeros(V_EMBD, dtype=np.float32))
    w.add_tensor("v.position_embd.weight", _normal(rng, n_patches, V_EMBD, scale=0.1))
    s = V_EMBD ** -0.5
    for i in range(V_LAYER):
        p = f"v.blk.{i}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"{p}.{name}.weight", _normal(rng, V_EMBD, V_EMBD, scale=s))
            w.add_tensor(f"{p}.{name}.bias", np.zeros(V_EMBD, dtype=np.float32))
        for name in ("ln1", "ln2"):
            w.add_tensor(f"{p}.{name}.weight", np.ones(V_EMBD, dtype=np.float32))
            w.add_tensor(f"{p}.{name}.bias", np.zeros(V_EMBD, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_up.weight", _normal(rng, V_FF, V_EMBD, scale=s))
        w.add_tensor(f"{p}.ffn_up.bias", np.zeros(V_FF, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_down.weight", _normal(rng, V_EMBD, V_FF, scale=V_FF ** -0.5))
        w.add_tensor(f"{p}.ffn_down.bias", np.zeros(V_EMBD, dtype=np.float32))
    # llava projector: V_EMBD -> N_EMBD -> gelu -> N_EMBD; output dimension 0 is the constant 1
    w.add_tensor("mm.0.weight", _normal(rng, N_EMBD, V_EMBD, scale=s))
    w.add_tensor("mm.0.bias", np.zeros(N_EMBD, dtype=np.float32))
    mm2 = _normal(rng, N_EMBD, N_EMBD, scale=0.2)
    mm2[0] = 0.0
    bias2 = np.zeros(N_EMBD, dtype=np.float32)
    bias2[0] = 1.0
    w.add_tensor("mm.2.weight", mm2)
    w.add_tensor("mm.2.bias", bias2)
    _finish(w)


def _finish(w) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
