"""Flavours: how a generation request is written for each kind of OpenAI-compatible server.

The servers agree on the OpenAI core (messages, temperature, top_p, max_tokens, streaming) and
differ on the rest: llama.cpp calls the penalty ``repeat_penalty`` and needs its window and
sampler order; vLLM and SGLang take ``repetition_penalty`` and turn ``top_k`` off with -1; a
plain OpenAI-compatible server takes none of them. A flavour names what it can send
(``sends``), and the library refuses an entry that lists a parameter its flavour cannot send.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import APIError, ContextLengthExceeded, InvalidRequest
from .base import GenerationRequest, Sampling
from .upstream import Refusal, standard_refusal

CORE = ("temperature", "top_p", "max_tokens", "stream")
SEED_SAMPLING = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repetition_penalty", "stream")
LLAMACPP_SAMPLERS = ["penalties", "temperature", "top_k", "top_p", "min_p"]  # the OpenAI/HF order


class Flavour:
    name: ClassVar[str]
    sends: ClassVar[tuple[str, ...]] = SEED_SAMPLING
    continues: ClassVar[bool] = True  # can continue an unfinished assistant turn (reasoning budgets need it)

    def body(self, request: GenerationRequest, model: str | None, context_length: int) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": [flatten(m) for m in request.messages], "stream": True,
                                "stream_options": {"include_usage": True}, **self.sampling(request.sampling,
                                                                                          context_length)}
        if model:
            body["model"] = model
        if request.chat_template_kwargs:
            body["chat_template_kwargs"] = request.chat_template_kwargs
        if request.continue_message is not None:
            body["messages"] = [*body["messages"], request.continue_message]
            body.update(self.continuation())
        return body

    def sampling(self, s: Sampling, context_length: int) -> dict[str, Any]:
        fields: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p}
        if s.max_tokens is not None:
            fields["max_tokens"] = s.max_tokens
        return fields

    def continuation(self) -> dict[str, Any]:
        """Body fields that make the server continue the last (assistant) message instead of answering it."""
        return {"continue_final_message": True, "add_generation_prompt": False}

    def refusal(self, name: str) -> Refusal:
        return standard_refusal(name)


class OpenAIFlavour(Flavour):
    """Any OpenAI-compatible server: only the OpenAI core is sent."""

    name = "openai"
    sends = CORE
    continues = False


class VllmFlavour(Flavour):
    """vLLM (and SGLang, which takes the same names): HF-style multiplicative repetition penalty."""

    name = "vllm"

    def sampling(self, s: Sampling, context_length: int) -> dict[str, Any]:
        top_k = s.top_k if s.top_k > 0 else -1
        fields = {**super().sampling(s, context_length), "top_k": top_k, "min_p": s.min_p,
                  "repetition_penalty": s.repetition_penalty}
        if s.top_p == 0:  # "only the most likely token": vLLM takes top_p in (0, 1] only
            fields.update(top_p=1.0, top_k=1)
        return fields

    def refusal(self, name: str) -> Refusal:
        standard = standard_refusal(name)

        def refuse(status: int, error: dict[str, Any]) -> APIError:
            # vLLM names what is over the limit: the prompt alone does not fit the context
            if status == 400 and error.get("param") == "input_tokens":
                return ContextLengthExceeded(str(error.get("message", "The messages do not fit the context.")),
                                             param="messages")
            return standard(status, error)
        return refuse


class SglangFlavour(VllmFlavour):
    name = "sglang"


class InferdFlavour(Flavour):
    """Another inferd: the seed's own names."""

    name = "inferd"
    continues = False

    def sampling(self, s: Sampling, context_length: int) -> dict[str, Any]:
        return {**super().sampling(s, context_length), "top_k": s.top_k, "min_p": s.min_p,
                "repetition_penalty": s.repetition_penalty}


class LlamaCppFlavour(Flavour):
    """llama.cpp's server (``llama-server``, or the one inside inferd's llama.cpp child)."""

    name = "llamacpp"

    def sampling(self, s: Sampling, context_length: int) -> dict[str, Any]:
        return {
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
            "repeat_penalty": s.repetition_penalty,
            # the whole context (prompt included) is the penalty window, not llama.cpp's 64 tokens
            "repeat_last_n": context_length if s.repetition_penalty != 1.0 else 0,
            "n_predict": s.max_tokens if s.max_tokens is not None else -1,
            "samplers": LLAMACPP_SAMPLERS,
            "reasoning_format": "none",  # raw text: inferd's reasoning layer parses it, the same for every family
        }

    def continuation(self) -> dict[str, Any]:
        return {"continue_final_message": "content", "add_generation_prompt": False}

    def refusal(self, name: str) -> Refusal:
        standard = standard_refusal(name)

        def refuse(status: int, error: dict[str, Any]) -> APIError:
            if error.get("type") == "exceed_context_size_error":
                return ContextLengthExceeded(
                    f"This model's maximum context length is {error.get('n_ctx')} tokens, but the messages take "
                    f"{error.get('n_prompt_tokens')} tokens. Reduce the length of the messages.", param="messages")
            if status == 400:
                return InvalidRequest(str(error.get("message", "invalid request")), param="messages")
            return standard(status, error)
        return refuse


FLAVOURS: dict[str, type[Flavour]] = {f.name: f for f in (OpenAIFlavour, VllmFlavour, SglangFlavour, InferdFlavour,
                                                          LlamaCppFlavour)}


def flatten(message: dict[str, Any]) -> dict[str, Any]:
    """Text-only part arrays become one string, which every chat template understands."""
    content = message.get("content")
    if isinstance(content, list) and all(p.get("type") == "text" for p in content):
        return {**message, "content": "".join(p["text"] for p in content)}
    return message
