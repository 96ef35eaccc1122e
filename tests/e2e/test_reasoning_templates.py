"""Reasoning policies on rendered prompts: the real llama.cpp engine (a child process) renders
the chat templates a test writes with the kwargs each style decides."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

from inferd.chat.reasoning import plan_reasoning
from inferd.chat.reasoning.styles import DEFAULT_BUDGETS, Harmony, ThinkTags
from inferd.engines.llamacpp import LlamaCppEngine
from inferd.library import ModelSpec
from inferd.settings import Settings

from ..harness import Server
from .test_reasoning import HARMONY_TEMPLATE, HYBRID_TEMPLATE

MESSAGES = [{"role": "user", "content": "hi"}]


LOOP = asyncio.new_event_loop()  # the engines' clients and supervisors live on one loop


def _engine(models_dir: Path, template: str) -> LlamaCppEngine:
    spec = ModelSpec(id="render", engine="llamacpp", context_length=256, parallel=1, filename="x",
                     file=models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf", chat_template=template)
    engine = LlamaCppEngine(spec, Settings(threads=1))
    LOOP.run_until_complete(engine.start())  # its child process
    return engine




@pytest.fixture(scope="module")
def engines(models_dir: Path, server: Server) -> Iterator[dict[str, LlamaCppEngine]]:
    loaded = {"harmony": _engine(models_dir, HARMONY_TEMPLATE), "think": _engine(models_dir, HYBRID_TEMPLATE)}
    yield loaded
    for engine in loaded.values():
        LOOP.run_until_complete(engine.close())


def render(engine: LlamaCppEngine, style, **params: object) -> str:
    _, kwargs = plan_reasoning(style, DEFAULT_BUDGETS, (), params, {})
    return LOOP.run_until_complete(engine.render_prompt(MESSAGES, kwargs))


@pytest.mark.parametrize("effort,native", [("none", "low"), ("minimal", "low"), ("low", "low"),
                                           ("medium", "medium"), ("high", "high"), ("xhigh", "high")])
def test_harmony_effort_lands_in_the_system_message(engines, effort: str, native: str) -> None:
    prompt = render(engines["harmony"], Harmony(), reasoning_effort=effort)
    assert f"Reasoning: {native}\n" in prompt and prompt.endswith("<|start|>assistant")


def test_harmony_default_effort_is_medium(engines) -> None:
    assert "Reasoning: medium\n" in render(engines["harmony"], Harmony())


@pytest.mark.parametrize("params,thinks", [
    ({}, True), ({"reasoning_effort": "none"}, False), ({"chat_template_kwargs": {"thinking": False}}, False),
    ({"chat_template_kwargs": {"enable_thinking": False}}, False),
    ({"reasoning_effort": "none", "chat_template_kwargs": {"thinking": True}}, True),
])
def test_think_tags_switch_renders_or_omits_the_thinking_block(engines, params: dict, thinks: bool) -> None:
    prompt = render(engines["think"], ThinkTags(opens_in_prompt=True), **params)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n") == thinks
    assert ("<think>" in prompt) == thinks
