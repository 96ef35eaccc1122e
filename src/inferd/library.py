"""The Model Library: model id -> ModelSpec (engine, file, capabilities, defaults).

The library is data: a TOML file. The packaged default lives beside this module
(``models.toml``); ``--library FILE`` replaces it with the user's own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from .chat.reasoning.styles import EFFORTS, NoReasoning, ReasoningStyle, build_style
from .chat.tools.policies import Hermes, ToolPolicy, build_policy
from .engines.flavours import FLAVOURS
from .engines.routing import POLICIES
from .errors import ModelNotFound
from .provider.pricing import Pricing, parse_pricing

SEED_SAMPLING = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repetition_penalty")
SEED_PARAMETERS = SEED_SAMPLING + (
    "reasoning_effort", "separate_reasoning", "chat_template_kwargs", "stream",
)
# the OpenAI extras a model may list (each flavour says which of them it can send)
EXTRA_PARAMETERS = ("stop", "seed", "n", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty",
                    "logit_bias", "response_format", "tools", "tool_choice", "parallel_tool_calls", "ignore_eos",
                    "user")
MODALITIES = ("text", "image", "video")
REASONING_PARAMETERS = ("reasoning_effort", "separate_reasoning", "chat_template_kwargs")
# template variables a client may never set through chat_template_kwargs, whatever the library says
RESERVED_TEMPLATE_KWARGS = ("messages", "tools", "chat_template", "tokenize", "add_generation_prompt",
                            "continue_final_message", "documents", "bos_token", "eos_token", "raise_exception")


@dataclass(frozen=True)
class PackageSource:
    """A model file split into chunks that ship as data files of PyPI packages."""

    packages: tuple[str, ...]
    sha256: str
    size: int


ENGINE_KINDS = ("llamacpp", "vllm", "openai")


@dataclass(frozen=True)
class UpstreamOptions:
    """``[models.upstream]`` of an ``openai`` entry: an OpenAI-compatible server inferd does not run."""

    url: str  # its OpenAI base URL, e.g. http://10.0.0.5:8000/v1
    flavour: str = "openai"  # parameter translation: openai | vllm | sglang | llamacpp | inferd
    model: str | None = None  # the model's name there; default: the entry's id
    api_key_env: str | None = None  # environment variable holding the key for it (never in this file)
    connect_timeout: float = 10.0
    first_byte_timeout: float | None = 300.0  # queue + prefill
    idle_timeout: float | None = 120.0  # between two events of a stream


# vLLM arguments inferd writes from the entry (loopback listener, its own key, the model and its limits)
VLLM_ARGS_SET_BY_INFERD = ("--host", "--port", "--api-key", "--model", "--served-model-name", "--max-model-len",
                           "--max-num-seqs", "--uds", "--root-path")


@dataclass(frozen=True)
class VllmOptions:
    """``[models.vllm]`` of a ``vllm`` entry: how inferd starts vLLM's OpenAI server for it."""

    model: Path | None = None  # a Hugging Face model folder; default: the entry's GGUF, converted once
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    extra_args: tuple[str, ...] = ()  # further command-line arguments for vLLM, as given
    env: dict[str, str] = field(default_factory=dict)  # e.g. VLLM_CPU_KVCACHE_SPACE = "2"
    start_timeout: float = 1200.0  # seconds until ready (vLLM compiles on its first start)


@dataclass(frozen=True)
class RoutingOptions:
    """``[models.routing]`` of an entry with several backends (engines/routing.py holds the policies)."""

    policy: str = "prefix_affinity"  # round_robin | least_outstanding | prefix_affinity
    prefer: bool = False  # the lowest-ranked backend while it has a free slot, then least-outstanding
    health_interval: float = 5.0  # seconds between active health checks of each backend
    failures_to_open: int = 3  # consecutive failures (errors, timeouts) that open a backend's circuit
    cool_off: float = 10.0  # seconds an open circuit waits before one probe request
    affinity_threshold: float = 0.25  # how much busier (share of capacity) the prefix's backend may be


@dataclass(frozen=True)
class BackendSpec:
    """One of several engines serving one model id: ``spec`` is that engine as a single-engine entry."""

    name: str
    spec: "ModelSpec"
    queue: int | None = None  # requests waiting beyond its slots; None: the server's max_queue
    rank: int = 0  # preference, lowest first (with routing.prefer)

    def capacity(self, max_queue: int) -> int:
        return self.spec.parallel + (max_queue if self.queue is None else self.queue)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    engine: str
    context_length: int
    parallel: int
    filename: str
    file: Path | None = None  # an existing GGUF; else assembled from ``source``
    source: PackageSource | None = None
    input_modalities: tuple[str, ...] = ("text",)
    supported_parameters: tuple[str, ...] = SEED_SAMPLING + ("stream",)
    defaults: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    owned_by: str = "inferd"
    created: int = 0
    reasoning: ReasoningStyle = field(default_factory=NoReasoning)
    reasoning_budgets: dict[str, int | None] = field(default_factory=dict)  # per effort; None: unlimited
    template_kwargs: tuple[str, ...] = ()  # further chat_template_kwargs names clients may set
    mmproj: Path | None = None  # llama.cpp's vision projector GGUF, for image and video input
    video_fps: float = 1.0  # frames sampled per second of video, unless the request says otherwise
    video_max_frames: int = 8  # frames per video, unless the request says otherwise
    video_timestamps: bool = False  # write each frame's time ("[1.0s]") before it, for families that expect it
    upstream: UpstreamOptions | None = None  # engine "openai"
    vllm: VllmOptions | None = None  # engine "vllm"
    pricing: Pricing = field(default_factory=Pricing)  # per-token prices ([models.pricing]); free by default
    tool_policy: ToolPolicy = field(default_factory=Hermes)  # [models.tools] format: how the family calls tools
    # temperature 0 or a seed gives the same output whatever the load and the prompt cache (costs speed;
    # see benchmarks/README.md)
    reproducible: bool = False
    # engine "routed": several engines behind this id ([[models.backends]]), and how requests are spread
    backends: tuple[BackendSpec, ...] = ()
    routing: RoutingOptions | None = None

    @property
    def flavour(self) -> str:
        """The protocol dialect inferd speaks to this model's engine (engines/flavours.py)."""
        if self.backends:
            return self.backends[0].spec.flavour  # the backends agree on what matters (see _routed)
        return self.upstream.flavour if self.upstream is not None else self.engine

    def capacity(self, max_queue: int) -> int:
        """Requests the model takes at once: slots plus waiting places, over all its backends."""
        if self.backends:
            return sum(b.capacity(max_queue) for b in self.backends)
        return self.parallel + max_queue

    def model_path(self, models_dir: Path) -> Path:
        return self.file if self.file is not None else models_dir / self.filename

    def supports(self, parameter: str) -> bool:
        return parameter in self.supported_parameters


class Library:
    def __init__(self, specs: list[ModelSpec]) -> None:
        self._specs = {spec.id: spec for spec in specs}

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._specs[model_id]
        except KeyError:
            raise ModelNotFound(
                f"The model '{model_id}' does not exist. Available models: {', '.join(self._specs)}.",
                param="model",
            ) from None


def load_library(path: Path | None = None) -> Library:
    if path is None:
        text = files("inferd").joinpath("models.toml").read_text(encoding="utf-8")
        base = Path.cwd()
    else:
        text = Path(path).read_text(encoding="utf-8")
        base = Path(path).resolve().parent
    data = tomllib.loads(text)
    return Library([_spec(entry, base) for entry in data.get("models", [])])


def _spec(entry: dict[str, Any], base: Path) -> ModelSpec:
    if "backends" in entry:
        return _routed(dict(entry), base)
    entry = dict(entry)
    model_id = entry.pop("id", None)
    missing = [key for key in ("id", "context_length") if key not in entry and not (key == "id" and model_id)]
    if missing:
        raise ValueError(f"library entry '{model_id or '?'}': missing required key(s) {missing}")
    kind = entry.pop("engine", "llamacpp")
    if kind not in ENGINE_KINDS:
        raise ValueError(f"library entry '{model_id}': unknown engine '{kind}' (known: {', '.join(ENGINE_KINDS)})")
    source, file = entry.pop("source", None), entry.pop("file", None)
    entry.update(_engine_options(model_id, kind, entry.pop("upstream", None), entry.pop("vllm", None), base))
    _check_weights(model_id, kind, file is not None, source is not None, entry.get("vllm"))
    template_file = entry.pop("chat_template_file", None)
    if template_file is not None:
        entry["chat_template"] = (base / template_file).read_text(encoding="utf-8")
    path = (base / Path(file).expanduser()) if file is not None else None
    entry.update(_reasoning(model_id, entry.pop("reasoning", {"style": "none"})))
    entry.update(_tools(model_id, entry.pop("tools", {"format": "hermes"})))
    if entry.get("mmproj") is not None:
        entry["mmproj"] = base / Path(entry["mmproj"]).expanduser()
    _check_names(model_id, entry)
    entry["pricing"] = parse_pricing(model_id, entry.pop("pricing", {}))
    if float(entry.get("video_fps", 1.0)) <= 0 or int(entry.get("video_max_frames", 1)) < 1:
        raise ValueError(f"library entry '{model_id}': video_fps must be > 0 and video_max_frames >= 1")
    extra = sorted(set(entry) - {f.name for f in fields(ModelSpec)})
    if extra:
        raise ValueError(f"library entry '{model_id}': unknown keys {extra}")
    supported = _supported(model_id, entry.pop("supported_parameters", None), entry["reasoning"], entry.get("upstream"),
                           kind)
    return ModelSpec(
        id=model_id,
        engine=kind,
        context_length=int(entry.pop("context_length")),
        parallel=int(entry.pop("parallel", 1)),
        filename=entry.pop("filename", path.name if path else f"{model_id}.gguf"),
        file=path,
        source=PackageSource(tuple(source["packages"]), source["sha256"], int(source["size"])) if source else None,
        input_modalities=tuple(entry.pop("input_modalities", ("text",))),
        supported_parameters=supported,
        defaults=dict(entry.pop("defaults", {})),
        **entry,
    )


BACKEND_KEYS = ("name", "engine", "parallel", "queue", "rank", "upstream", "vllm")


def _routed(entry: dict[str, Any], base: Path) -> ModelSpec:
    """An entry with ``[[models.backends]]``: each backend is the entry's own keys plus its table's (engine,
    parallel, upstream or vllm), built and checked as a single-engine entry; the model is ``routed``."""
    model_id, tables = entry.get("id", "?"), entry.pop("backends")
    routing = _typed(model_id, "routing", RoutingOptions, dict(entry.pop("routing", {})))
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"library entry '{model_id}': [[models.backends]] must be a list of tables")
    if set(entry) & {"engine", "upstream", "vllm"}:
        raise ValueError(f"library entry '{model_id}': with [[models.backends]], 'engine', [models.upstream] and "
                         "[models.vllm] belong in each backend")
    if routing.policy not in POLICIES:
        raise ValueError(f"library entry '{model_id}': unknown routing policy '{routing.policy}' (known: "
                         f"{', '.join(POLICIES)})")
    backends = [_backend(model_id, i, entry, dict(t), base) for i, t in enumerate(tables)]
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ValueError(f"library entry '{model_id}': backend names must differ (got {names})")
    first = backends[0].spec
    flavours = [FLAVOURS[b.spec.flavour] for b in backends]
    if len({(f.native, f.continues) for f in flavours}) > 1:
        raise ValueError(f"library entry '{model_id}': its backends must agree on whether the server handles tools "
                         f"itself and can continue a turn (flavours: {', '.join(f.name for f in flavours)})")
    supported = tuple(p for p in first.supported_parameters if all(b.spec.supports(p) for b in backends))
    return replace(first, engine="routed", parallel=sum(b.spec.parallel for b in backends), upstream=None, vllm=None,
                   supported_parameters=supported, backends=tuple(backends), routing=routing)


def _backend(model_id: str, index: int, entry: dict[str, Any], table: dict[str, Any], base: Path) -> BackendSpec:
    unknown = sorted(set(table) - set(BACKEND_KEYS))
    if unknown:
        raise ValueError(f"library entry '{model_id}': a backend takes {', '.join(BACKEND_KEYS)}; got {unknown}")
    name = str(table.pop("name", f"{table.get('engine', 'llamacpp')}-{index}"))
    queue, rank = table.pop("queue", None), int(table.pop("rank", 0))
    if queue is not None and (not isinstance(queue, int) or queue < 0):
        raise ValueError(f"library entry '{model_id}': backend '{name}' queue must be an integer >= 0")
    single = {**entry, **table}
    if table.get("engine") == "openai" or dict(table.get("vllm") or {}).get("model"):  # not this backend's weights
        single.pop("file", None), single.pop("source", None)
    try:
        spec = _spec(single, base)
    except ValueError as exc:
        raise ValueError(f"{exc} (backend '{name}')") from None
    return BackendSpec(name=name, spec=spec, queue=queue, rank=rank)


def _check_weights(model_id: str, kind: str, has_file: bool, has_source: bool, vllm: VllmOptions | None) -> None:
    """llama.cpp needs a GGUF (``file`` or ``source``); vLLM a GGUF to convert or its own folder; openai none."""
    if kind == "openai":
        if has_file or has_source:
            raise ValueError(f"library entry '{model_id}': an 'openai' engine serves no local file; drop "
                             "'file'/'source' (the model lives at [models.upstream] url)")
        return
    if kind == "vllm" and vllm is not None and vllm.model is not None:
        if has_file or has_source:
            raise ValueError(f"library entry '{model_id}': give either [models.vllm] model (a Hugging Face folder) "
                             "or 'file'/'source' (a GGUF inferd converts), not both")
        return
    if has_file == has_source:
        raise ValueError(f"library entry '{model_id}': give exactly one of 'file' or 'source'")


def _engine_options(model_id: str, kind: str, upstream: Any, vllm: Any, base: Path) -> dict[str, Any]:
    """``[models.upstream]`` (engine openai) or ``[models.vllm]`` (engine vllm), typed and checked."""
    if upstream is not None and kind != "openai" or vllm is not None and kind != "vllm":
        raise ValueError(f"library entry '{model_id}': [models.upstream] belongs to engine 'openai' and "
                         "[models.vllm] to engine 'vllm'")
    if kind == "openai":
        if not isinstance(upstream, dict) or not upstream.get("url"):
            raise ValueError(f"library entry '{model_id}': engine 'openai' needs [models.upstream] with a 'url'")
        options = _typed(model_id, "upstream", UpstreamOptions, upstream)
        if options.flavour not in FLAVOURS:
            raise ValueError(f"library entry '{model_id}': unknown upstream flavour '{options.flavour}' "
                             f"(known: {', '.join(FLAVOURS)})")
        return {"upstream": options}
    if kind == "vllm":
        table = dict(vllm or {})
        if table.get("model") is not None:
            table["model"] = base / Path(table["model"]).expanduser()
        table["extra_args"] = tuple(str(a) for a in table.get("extra_args", ()))
        table["env"] = {str(k): str(v) for k, v in dict(table.get("env", {})).items()}
        taken = [a for a in table["extra_args"] if a.split("=", 1)[0] in VLLM_ARGS_SET_BY_INFERD]
        if taken:
            raise ValueError(f"library entry '{model_id}': [models.vllm] extra_args may not set {taken}: inferd sets "
                             "them (the listener, the key and the model come from the entry)")
        return {"vllm": _typed(model_id, "vllm", VllmOptions, table)}
    return {}


def _typed(model_id: str, table: str, cls: type, values: dict[str, Any]) -> Any:
    try:
        return cls(**values)
    except TypeError:
        known = ", ".join(f.name for f in fields(cls))
        raise ValueError(f"library entry '{model_id}': [models.{table}] takes {known}; got {sorted(values)}") from None


def _check_names(model_id: str, entry: dict[str, Any]) -> None:
    unknown = [p for p in entry.get("supported_parameters", ()) if p not in SEED_PARAMETERS + EXTRA_PARAMETERS]
    unknown += [m for m in entry.get("input_modalities", ()) if m not in MODALITIES]
    unknown += [d for d in entry.get("defaults", {}) if d not in SEED_PARAMETERS]
    if unknown:
        raise ValueError(f"library entry '{model_id}': unknown names {unknown}")


def _supported(model_id: str, listed: Any, style: ReasoningStyle,
               upstream: UpstreamOptions | None, kind: str = "llamacpp") -> tuple[str, ...]:
    """What the entry honours: as listed (or every seed sampling parameter and extra its engine can send),
    plus the reasoning controls for a reasoning model."""
    flavour = FLAVOURS[upstream.flavour] if upstream is not None else FLAVOURS.get(kind)
    sendable = flavour.sends if flavour is not None else SEED_SAMPLING + ("stream",)
    if listed is None:
        listed = [p for p in SEED_SAMPLING + ("stream",) + EXTRA_PARAMETERS if p in sendable]
    unsendable = [p for p in listed if p not in sendable and p not in REASONING_PARAMETERS]
    if unsendable:
        raise ValueError(f"library entry '{model_id}': the '{flavour.name if flavour else kind}' flavour cannot "
                         f"send {unsendable}; it sends {', '.join(sendable)}")
    if style.reasons and flavour is not None and not flavour.continues:
        raise ValueError(f"library entry '{model_id}': reasoning budgets need an upstream that continues a turn "
                         f"(flavour llamacpp, vllm or sglang), not '{flavour.name}'")
    extra = [p for p in REASONING_PARAMETERS if style.reasons and p not in listed]
    return tuple(listed) + tuple(extra)


def _tools(model_id: str, table: Any) -> dict[str, Any]:
    """``[models.tools]``: the family's tool-call format (``hermes``, ``json``) and its options."""
    options = dict(table) if isinstance(table, dict) else {}
    try:
        return {"tool_policy": build_policy(options.pop("format", "hermes"), options)}
    except ValueError as exc:
        raise ValueError(f"library entry '{model_id}': [models.tools] {exc}") from None


def _reasoning(model_id: str, table: dict[str, Any]) -> dict[str, Any]:
    """``[models.reasoning]``: style, its options, budgets per effort, extra allowed template kwargs."""
    options = dict(table)
    try:
        style = build_style(options.pop("style", "none"), {k: v for k, v in options.items()
                                                            if k not in ("budgets", "template_kwargs")})
    except ValueError as exc:
        raise ValueError(f"library entry '{model_id}': {exc}") from None
    budgets = {e: None if v == "unlimited" else v for e, v in options.get("budgets", {}).items()}
    bad = [e for e, v in budgets.items() if e not in EFFORTS or e == "none" or
           (v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0))]
    kwargs = tuple(options.get("template_kwargs", ()))
    bad += [k for k in kwargs if k in RESERVED_TEMPLATE_KWARGS]
    if bad:
        raise ValueError(f"library entry '{model_id}': bad reasoning budgets or template_kwargs {bad} "
                         "(budgets: minimal..xhigh = tokens >= 0 or \"unlimited\"; template_kwargs may not "
                         f"name {', '.join(RESERVED_TEMPLATE_KWARGS)})")
    return {"reasoning": style, "reasoning_budgets": budgets, "template_kwargs": kwargs}
