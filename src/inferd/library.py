"""The Model Library: model id -> ModelSpec (engine, file, capabilities, defaults).

The library is data: a TOML file. The packaged default lives beside this module
(``models.toml``); ``--library FILE`` replaces it with the user's own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from .chat.reasoning.styles import EFFORTS, NoReasoning, ReasoningStyle, build_style
from .errors import ModelNotFound
from .provider.pricing import Pricing, parse_pricing

SEED_SAMPLING = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repetition_penalty")
SEED_PARAMETERS = SEED_SAMPLING + (
    "reasoning_effort", "separate_reasoning", "chat_template_kwargs", "stream",
)
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
    pricing: Pricing = field(default_factory=Pricing)  # per-token prices ([models.pricing]); free by default

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
    entry = dict(entry)
    model_id = entry.pop("id", None)
    missing = [key for key in ("id", "context_length") if key not in entry and not (key == "id" and model_id)]
    if missing:
        raise ValueError(f"library entry '{model_id or '?'}': missing required key(s) {missing}")
    source = entry.pop("source", None)
    file = entry.pop("file", None)
    if (source is None) == (file is None):
        raise ValueError(f"library entry '{model_id}': give exactly one of 'file' or 'source'")
    template_file = entry.pop("chat_template_file", None)
    if template_file is not None:
        entry["chat_template"] = (base / template_file).read_text(encoding="utf-8")
    path = (base / Path(file).expanduser()) if file is not None else None
    entry.update(_reasoning(model_id, entry.pop("reasoning", {"style": "none"})))
    if entry.get("mmproj") is not None:
        entry["mmproj"] = base / Path(entry["mmproj"]).expanduser()
    _check_names(model_id, entry)
    entry["pricing"] = parse_pricing(model_id, entry.pop("pricing", {}))
    if float(entry.get("video_fps", 1.0)) <= 0 or int(entry.get("video_max_frames", 1)) < 1:
        raise ValueError(f"library entry '{model_id}': video_fps must be > 0 and video_max_frames >= 1")
    extra = sorted(set(entry) - {f.name for f in fields(ModelSpec)})
    if extra:
        raise ValueError(f"library entry '{model_id}': unknown keys {extra}")
    return ModelSpec(
        id=model_id,
        engine=entry.pop("engine", "llamacpp"),
        context_length=int(entry.pop("context_length")),
        parallel=int(entry.pop("parallel", 1)),
        filename=entry.pop("filename", path.name if path else f"{model_id}.gguf"),
        file=path,
        source=PackageSource(tuple(source["packages"]), source["sha256"], int(source["size"])) if source else None,
        input_modalities=tuple(entry.pop("input_modalities", ("text",))),
        supported_parameters=_supported(entry.pop("supported_parameters", SEED_SAMPLING + ("stream",)),
                                        entry["reasoning"]),
        defaults=dict(entry.pop("defaults", {})),
        **entry,
    )


def _check_names(model_id: str, entry: dict[str, Any]) -> None:
    unknown = [p for p in entry.get("supported_parameters", ()) if p not in SEED_PARAMETERS]
    unknown += [m for m in entry.get("input_modalities", ()) if m not in MODALITIES]
    unknown += [d for d in entry.get("defaults", {}) if d not in SEED_PARAMETERS]
    if unknown:
        raise ValueError(f"library entry '{model_id}': unknown names {unknown}")


def _supported(listed: Any, style: ReasoningStyle) -> tuple[str, ...]:
    """A reasoning model honours the reasoning controls whether or not the entry lists them."""
    extra = [p for p in REASONING_PARAMETERS if style.reasons and p not in listed]
    return tuple(listed) + tuple(extra)


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
