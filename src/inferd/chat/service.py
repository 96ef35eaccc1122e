"""What a chat completion means: model lookup, parameter policy, defaults, engine call, usage."""

from __future__ import annotations

import json
from typing import AsyncIterator, Callable, Protocol

from ..api.schemas import ChatRequest
from ..engines.base import Delta, GenerationRequest, Usage
from ..engines.flavours import FLAVOURS
from ..engines.pool import EnginePool
from ..errors import InvalidRequest, QuotaExceeded, RateLimited
from ..library import Library, ModelSpec
from ..provider.gate import Admission, Gate
from ..provider.meter import Meter
from ..settings import Settings
from ..store import KeyRecord, UsageRecord
from .choices import acquire_places, release_places
from .chunks import ChoiceBodies, Envelope
from .extras import plan_extras
from .media import MediaPreparer
from .params import enforce_policy, honoured_parameters, ignored_parameters, sampling
from .reasoning import ReasoningPlan, plan_reasoning
from .reasoning.run import ReasoningRun


class Observer(Protocol):
    """Who is told how requests end (the metrics): refusals by a key's limits, and settled generations."""

    def rejected(self, model: str, status: int, reason: str) -> None: ...

    def settled(self, rec: UsageRecord, meter: Meter) -> None: ...


class Unobserved:
    def rejected(self, model: str, status: int, reason: str) -> None:
        pass

    def settled(self, rec: UsageRecord, meter: Meter) -> None:
        pass


class ChatService:
    def __init__(self, library: Library, pool: EnginePool, gate: Gate, settings: Settings,
                 observer: Observer | None = None) -> None:
        self._library = library
        self._pool = pool
        self._gate = gate
        self._settings = settings
        self._media = MediaPreparer(settings)
        self._observer: Observer = observer if observer is not None else Unobserved()

    async def start(self, key: KeyRecord, chat: ChatRequest) -> "Completion":
        """Validate against the model, admit the key, start generating; errors raise before any output."""
        completion = await self.prepare(key, chat)
        await completion.open()
        return completion

    async def prepare(self, key: KeyRecord, chat: ChatRequest) -> "Completion":
        """Validate against the model, admit the key and take its place; ``open()`` on the result starts
        generating."""
        spec = self._gate.model(key, chat.model)
        _check_modalities(spec, chat)
        ignored = ignored_parameters(spec, chat.params, chat.unknown)
        enforce_policy(spec, ignored, self._settings.strict_params)
        plan, kwargs = plan_reasoning(spec.reasoning, spec.reasoning_budgets, spec.template_kwargs,
                                      honoured_parameters(spec, chat.params), spec.defaults)
        chosen = sampling(spec, chat.params)
        extras = plan_extras(spec, honoured_parameters(spec, chat.params), FLAVOURS[spec.flavour].native)
        try:
            admission = await self._gate.admit(key, spec, chat.messages, chosen.max_tokens, chat.user,
                                               choices=extras.n)  # before any slot
        except (RateLimited, QuotaExceeded) as exc:
            self._observer.rejected(spec.id, exc.status, exc.type)
            raise
        try:
            # before taking a slot: fetching may be slow
            media = await self._media.prepare(spec, chat.messages) if chat.modalities != {"text"} else None
            request = extras.request(GenerationRequest(messages=media.messages if media else chat.messages,
                                                       sampling=chosen, chat_template_kwargs=kwargs,
                                                       fit_tokens=chosen.max_tokens))
            engine = acquire_places(self._pool, spec, extras.n)
        except BaseException as exc:
            admission.meter.on_error(exc)
            admission.settle(None)  # no generation started: nothing for the generation metrics
            raise
        deltas = extras.choices().deltas(lambda r: ReasoningRun(engine, r, plan).deltas(), request)
        names = reasoning_names(self._settings.reasoning_field) if plan.style.reasons and plan.separate else ()
        completion = Completion(Envelope(model=spec.id), deltas, names,
                                lambda usage: self._finish(spec, admission, usage, extras.n), admission.meter,
                                n=extras.n, logprobs=extras.logprobs is not None)
        completion.headers = {**_headers(ignored, plan), **admission.headers}
        if media and media.frames_per_video:
            completion.headers["X-Inferd-Video-Frames"] = ", ".join(map(str, media.frames_per_video))
        return completion

    def _finish(self, spec: ModelSpec, admission: Admission, usage: Usage | None, places: int = 1) -> None:
        release_places(self._pool, spec, places)
        record = admission.settle(usage)
        if record is not None:
            self._observer.settled(record, admission.meter)


def _headers(ignored: list[str], plan: ReasoningPlan) -> dict[str, str]:
    # field names are the client's: JSON-escaped, so any name is one printable ASCII header value
    headers = {"X-Inferd-Ignored-Params": ", ".join(json.dumps(n)[1:-1] for n in ignored)} if ignored else {}
    if described := plan.describe():
        headers["X-Inferd-Reasoning"] = described
    return headers


def reasoning_names(setting: str) -> tuple[str, ...]:
    """The message fields reasoning goes to: clients disagree, so both unless a setting picks one."""
    return ("reasoning_content", "reasoning") if setting == "both" else (setting,)


def _check_modalities(spec: ModelSpec, chat: ChatRequest) -> None:
    missing = sorted(chat.modalities - set(spec.input_modalities))
    if missing:
        raise InvalidRequest(f"Model '{spec.id}' does not accept {missing[0]} input (it accepts: "
                             f"{', '.join(spec.input_modalities)}).", param="messages", code="unsupported_modality")


class Completion:
    """One generation in flight: read it as stream chunks or as one body, then it closes itself."""

    headers: dict[str, str]

    def __init__(self, envelope: Envelope, deltas: AsyncIterator[Delta], reasoning_names: tuple[str, ...],
                 on_done: Callable[[Usage | None], None], meter: Meter | None = None, *, n: int = 1,
                 logprobs: bool = False) -> None:
        self.envelope = envelope
        self.meter = meter if meter is not None else Meter()  # what was generated, for usage if cut short
        self._deltas = deltas
        self._names = reasoning_names  # empty: the model does not reason, or reasoning stays inline
        self._on_done: Callable[[Usage | None], None] | None = on_done
        self._first: Delta | None = None
        self._usage: Usage | None = None
        self._n = n
        self._logprobs = logprobs

    async def open(self) -> None:
        """Wait for the first delta (the queue and the prefill); an error here closes the completion."""
        try:
            self._first = await anext(self._deltas)
            self.meter.on_delta(self._first)
        except BaseException as exc:
            self.meter.on_error(exc)
            await self.aclose()
            raise

    async def _all(self) -> AsyncIterator[Delta]:
        try:
            if self._first is not None:
                yield self._first
            async for delta in self._deltas:
                self.meter.on_delta(delta)
                yield delta
        except BaseException as exc:
            self.meter.on_error(exc)
            raise
        finally:
            await self.aclose()

    async def chunks(self, include_usage: bool) -> AsyncIterator[dict]:
        for index in range(self._n):
            yield self.envelope.chunk({"role": "assistant", "content": ""}, index=index)
        async for delta in self._all():
            for chunk in self.envelope.delta_chunks(delta, self._names):
                yield chunk
            if delta.finish_reason is not None:
                self._usage = delta.usage or self._usage
                yield self.envelope.chunk({}, delta.finish_reason, index=delta.index)
                if include_usage and delta.usage is not None:
                    yield self.envelope.usage_chunk(delta.usage)

    async def body(self) -> dict:
        choices = ChoiceBodies(self._names, self._logprobs)
        usage = Usage(0, 0)
        async for delta in self._all():
            choices.add(delta)
            if delta.finish_reason is not None and delta.usage is not None:
                usage = self._usage = delta.usage
        return self.envelope.completion_of(choices.choices(), usage)

    async def aclose(self) -> None:
        if self._on_done is None:
            return
        done, self._on_done = self._on_done, None
        try:
            await self._deltas.aclose()
        finally:
            done(self._usage)
