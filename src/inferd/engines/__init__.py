"""Engines, chosen by name from a table of import strings; a backend is imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..library import ModelSpec
    from ..settings import Settings
    from .base import Engine

ENGINES = {
    "llamacpp": "inferd.engines.llamacpp:LlamaCppEngine",
}


def load_engine(spec: "ModelSpec", model_path, settings: "Settings") -> "Engine":
    """Build (and load: blocking) the engine named by the spec."""
    try:
        target = ENGINES[spec.engine]
    except KeyError:
        raise ValueError(f"model '{spec.id}': unknown engine '{spec.engine}' (known: {', '.join(ENGINES)})") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(spec, model_path, settings)
