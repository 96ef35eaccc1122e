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
    "vllm": "inferd.engines.vllm:VllmEngine",
    "openai": "inferd.engines.openai:OpenAIEngine",
    "routed": "inferd.engines.router:RoutedEngine",  # several of the above behind one model id
}


def load_engine(spec: "ModelSpec", settings: "Settings") -> "Engine":
    """The engine the spec names, not started yet (``await engine.start()``)."""
    module, _, name = ENGINES[spec.engine].partition(":")
    return getattr(importlib.import_module(module), name)(spec, settings)
