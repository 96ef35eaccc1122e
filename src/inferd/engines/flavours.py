"""Flavours: how a generation request is written for each kind of OpenAI-compatible server.

The servers agree on the OpenAI core (messages, temperature, top_p, max_tokens, streaming) and
differ on the rest: llama.cpp calls the penalty ``repeat_penalty`` and needs its window and
sampler order; vLLM and SGLang take ``repetition_penalty`` and turn ``top_k`` off with -1; a
plain OpenAI-compatible server takes none of them. A flavour names what it can send
(``sends``), and the library refuses an entry that lists a parameter its flavour cannot send.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ..errors import APIError, ContextLengthExceeded, InvalidRequest
from .base import Constraint, GenerationRequest, Sampling, TokenLogprob, ToolCallDelta
from .upstream import Refusal, standard_refusal

CORE = ("temperature", "top_p", "max_tokens", "stream")
SEED_SAMPLING = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repetition_penalty", "stream")
LLAMACPP_SAMPLERS = ["penalties", "temperature", "top_k", "top_p", "min_p"]  # the OpenAI/HF order
# handled above the engine for every flavour: n is a fan-out, user goes to the usage record
ABOVE_ENGINE = ("n", "user")
# OpenAI's own request fields beyond the core
OPENAI_EXTRAS = ("stop", "seed", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
                 "response_format", "tools", "tool_choice", "parallel_tool_calls")
ALL_EXTRAS = OPENAI_EXTRAS + ABOVE_ENGINE + ("ignore_eos",)


class Flavour:
    name: ClassVar[str]
    sends: ClassVar[tuple[str, ...]] = SEED_SAMPLING + ALL_EXTRAS
    continues: ClassVar[bool] = True  # can continue an unfinished assistant turn (reasoning budgets need it)
    # the server handles tools and response_format itself (they go as sent, its tool_calls come back);
    # otherwise inferd renders tools through the chat template, constrains with a grammar and parses
    native: ClassVar[bool] = False

    def body(self, request: GenerationRequest, model: str | None, context_length: int) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": [flatten(m) for m in request.messages], "stream": True,
                                "stream_options": {"include_usage": True}, **self.sampling(request.sampling,
                                                                                          context_length)}
        if model:
            body["model"] = model
        kwargs = request.template_kwargs
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        if request.continue_message is not None:
            body["messages"] = [*body["messages"], request.continue_message]
            body.update(self.continuation())
        body.update(self.extras(request))
        if request.constraint is not None:
            body.update(self.constrain(request.constraint))
        return body

    def extras(self, request: GenerationRequest) -> dict[str, Any]:
        """The OpenAI extras under OpenAI's names (what a server that takes them as OpenAI does gets)."""
        s = request.sampling
        fields: dict[str, Any] = {"stop": list(request.stop)} if request.stop else {}
        if s.seed is not None:
            fields["seed"] = s.seed
        fields.update({k: v for k, v in (("presence_penalty", s.presence_penalty),
                                         ("frequency_penalty", s.frequency_penalty)) if v})
        if s.logit_bias:
            fields["logit_bias"] = {str(token): bias for token, bias in s.logit_bias}
        if request.logprobs is not None:
            fields.update(logprobs=True, top_logprobs=request.logprobs)
        if s.ignore_eos and "ignore_eos" in self.sends:
            fields["ignore_eos"] = True
        return {**fields, **request.native}

    def constrain(self, constraint: Constraint) -> dict[str, Any]:
        """How the server is told to follow a grammar."""
        raise NotImplementedError(f"the {self.name} flavour cannot constrain output with a grammar")

    def token_logprobs(self, raw: dict[str, Any] | None, top: int | None) -> tuple[TokenLogprob, ...]:
        """``choices[].logprobs`` of a stream chunk in OpenAI's shape, as inferd's tokens."""
        if not raw or top is None:
            return ()
        return tuple(_token(entry, "logprob", "top_logprobs", top) for entry in raw.get("content") or ())

    def tool_calls(self, delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
        """``delta.tool_calls`` of a stream chunk (servers that parse calls themselves)."""
        calls = []
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            calls.append(ToolCallDelta(index=int(call.get("index") or 0), id=call.get("id"), name=function.get("name"),
                                       arguments=function.get("arguments") or ""))
        return tuple(calls)

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
    """Any OpenAI-compatible server: the OpenAI core and OpenAI's own extras, under their names."""

    name = "openai"
    sends = CORE + OPENAI_EXTRAS + ABOVE_ENGINE
    continues = False
    native = True


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

    def constrain(self, constraint: Constraint) -> dict[str, Any]:
        # vLLM >= 0.10.2 (structured outputs; xgrammar reads GBNF); older vLLM named it guided_grammar
        return {"structured_outputs": {"grammar": constraint.grammar}}


class SglangFlavour(VllmFlavour):
    name = "sglang"

    def constrain(self, constraint: Constraint) -> dict[str, Any]:
        return {"ebnf": constraint.grammar}  # SGLang's grammar field (xgrammar backend)


class InferdFlavour(Flavour):
    """Another inferd: the seed's own names, and the extras as inferd takes them."""

    name = "inferd"
    continues = False
    native = True

    def sampling(self, s: Sampling, context_length: int) -> dict[str, Any]:
        return {**super().sampling(s, context_length), "top_k": s.top_k, "min_p": s.min_p,
                "repetition_penalty": s.repetition_penalty}


class LlamaCppFlavour(Flavour):
    """llama.cpp's server (``llama-server``, or the one inside inferd's llama.cpp child)."""

    name = "llamacpp"

    def sampling(self, s: Sampling, context_length: int) -> dict[str, Any]:
        penalised = s.repetition_penalty != 1.0 or s.presence_penalty or s.frequency_penalty
        return {
            "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
            "repeat_penalty": s.repetition_penalty,
            # the whole context (prompt included) is the penalty window, not llama.cpp's 64 tokens
            "repeat_last_n": context_length if penalised else 0,
            "n_predict": s.max_tokens if s.max_tokens is not None else -1,
            "samplers": LLAMACPP_SAMPLERS,
            "reasoning_format": "none",  # raw text: inferd's reasoning layer parses it, the same for every family
        }

    def continuation(self) -> dict[str, Any]:
        return {"continue_final_message": "content", "add_generation_prompt": False}

    def extras(self, request: GenerationRequest) -> dict[str, Any]:
        fields = super().extras(request)
        fields.pop("logprobs", None)
        fields.pop("top_logprobs", None)
        if request.logprobs is not None:  # of the sampled distribution; llama.cpp sends none for 0, so ask for 1
            fields.update(n_probs=max(request.logprobs, 1), post_sampling_probs=True)
        if request.sampling.logit_bias:  # -100 bans the token outright (llama.cpp: false)
            fields["logit_bias"] = [[t, False if b <= -100 else b] for t, b in request.sampling.logit_bias]
        return fields

    def constrain(self, constraint: Constraint) -> dict[str, Any]:
        return {"grammar": constraint.grammar}

    def token_logprobs(self, raw: dict[str, Any] | None, top: int | None) -> tuple[TokenLogprob, ...]:
        if not raw or top is None:
            return ()
        return tuple(_token(entry, "prob", "top_probs", top) if "prob" in entry else
                     _token(entry, "logprob", "top_logprobs", top) for entry in raw.get("content") or ())

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


def _token(entry: dict[str, Any], key: str, top_key: str, top: int) -> TokenLogprob:
    """One token's entry; ``prob`` entries (llama.cpp's post-sampling probabilities) become logprobs."""
    def value(item: dict[str, Any]) -> float:
        v = float(item.get(key) or 0.0)
        return (math.log(v) if v > 0 else -9999.0) if key == "prob" else v

    def text_bytes(item: dict[str, Any]) -> tuple[int, ...]:
        return tuple(item.get("bytes") or item.get("token", "").encode())

    alternatives = tuple((a.get("token", ""), value(a), text_bytes(a)) for a in (entry.get(top_key) or ())[:top])
    return TokenLogprob(token=entry.get("token", ""), logprob=value(entry), bytes=text_bytes(entry), top=alternatives)


def flatten(message: dict[str, Any]) -> dict[str, Any]:
    """Text-only part arrays become one string, which every chat template understands."""
    content = message.get("content")
    if isinstance(content, list) and all(p.get("type") == "text" for p in content):
        return {**message, "content": "".join(p["text"] for p in content)}
    return message
