"""Sampling parameters: API defaults, then the model's defaults, then what the client sent."""

from __future__ import annotations

from typing import Any

from ..engines.base import Sampling
from ..errors import UnsupportedParameter
from ..library import ModelSpec

API_DEFAULTS: dict[str, Any] = {
    "temperature": 1.0,  # seed: defaults to 1
    "top_p": 1.0,  # seed: defaults to 1
    "top_k": 0,  # 0: off
    "min_p": 0.0,  # 0: off
    "repetition_penalty": 1.0,  # 1.0: no penalty
    "max_tokens": None,  # up to the context
    "reasoning_effort": "medium",  # seed: defaults to medium
    "presence_penalty": 0.0,  # OpenAI: defaults to 0
    "frequency_penalty": 0.0,  # OpenAI: defaults to 0
}
# engines sample in float32: a positive value below its smallest normal number would reach them as 0
FLOAT32_TINY = 1.1754943508222875e-38


def _positive(value: float) -> float:
    """A value the contract keeps above 0, still above 0 in float32 (the seed allows any repetition_penalty > 0)."""
    return max(value, FLOAT32_TINY)


def ignored_parameters(spec: ModelSpec, given: dict[str, Any], unknown: tuple[str, ...]) -> list[str]:
    """Parameters the model does not honour (seed ones it lacks, plus fields outside the contract)."""
    return [name for name in given if not spec.supports(name)] + list(unknown)


def enforce_policy(spec: ModelSpec, ignored: list[str], strict: bool) -> None:
    if strict and ignored:
        raise UnsupportedParameter(
            f"Model '{spec.id}' does not support the parameter '{ignored[0]}' (it supports: "
            f"{', '.join(spec.supported_parameters)}). This server rejects unsupported parameters.",
            param=ignored[0])


def honoured_parameters(spec: ModelSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters the client sent that this model honours."""
    return {name: value for name, value in given.items() if spec.supports(name)}


def sampling(spec: ModelSpec, given: dict[str, Any]) -> Sampling:
    merged = {**API_DEFAULTS, **spec.defaults, **honoured_parameters(spec, given)}
    return Sampling(
        temperature=float(merged["temperature"]),
        top_p=float(merged["top_p"]),
        top_k=int(merged["top_k"]),
        min_p=float(merged["min_p"]),
        repetition_penalty=_positive(float(merged["repetition_penalty"])),
        max_tokens=merged["max_tokens"],
        seed=merged.get("seed"),
        presence_penalty=float(merged["presence_penalty"]),
        frequency_penalty=float(merged["frequency_penalty"]),
        logit_bias=tuple(sorted((merged.get("logit_bias") or {}).items())),
        ignore_eos=bool(merged.get("ignore_eos", False)),
    )
