"""One Settings object: the only place where environment variables are read."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "INFERD_"
REASONING_FIELDS = ("both", "reasoning_content", "reasoning")
LOG_FORMATS = ("text", "json")
DATABASE_SCHEMES = ("postgresql://", "postgres://", "sqlite://")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "inferd"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    library: Path | None = None  # None: the packaged default library
    models_dir: Path | None = None  # None: <data_dir>/models; assembled model files live here
    strict_params: bool = False  # unsupported parameters: 400 instead of ignore + header
    max_body_bytes: int = 20 * 1024 * 1024
    max_queue: int = 32  # requests waiting per model beyond its parallel slots
    threads: int = 0  # engine CPU threads; 0: all cores
    prompt_cache_mib: int = 0  # host memory llama.cpp may keep finished prompts' KV state in, per model
    log_level: str = "info"
    log_format: str = "text"  # text | json (one JSON object per line)
    # GET /metrics: loopback clients only while empty; when set, this bearer token only (never logged)
    metrics_token: str = field(default="", repr=False)
    reasoning_field: str = "both"  # where reasoning goes: both | reasoning_content | reasoning
    # media inputs (image_url / video_url parts)
    media_allow_hosts: tuple[str, ...] = ()  # host or host:port fetched even if its address is refused
    media_deny_hosts: tuple[str, ...] = ()  # host or host:port never fetched
    media_max_bytes: int = 20 * 1024 * 1024  # per image or video, downloaded or data: URL
    media_image_timeout: float = 10.0  # seconds to fetch one image
    media_video_timeout: float = 30.0  # seconds to fetch one video
    media_decode_timeout: float = 30.0  # seconds to decode one video
    max_images: int = 16  # image parts per request
    max_image_pixels: int = 32 * 1024 * 1024  # checked from the header, before decoding
    max_video_frames: int = 32  # server maximum of frames taken from one video
    drain_seconds: float = 30.0  # on SIGTERM: how long in-flight requests may finish before they are ended
    # keys and usage: SQLite in data_dir unless a postgresql:// URL is given (gateways then share it)
    database_url: str = ""
    store_busy_timeout_ms: int = 5000  # how long a write waits for a locked database before spooling
    spool_retry_s: float = 1.0  # how often spooled usage records are offered to the database again
    admission_lease_s: float = 3600.0  # an unsettled request stops counting (in flight) after this
    # TEST ONLY: a file holding seconds added to the limits' clock (moves a server across a reset)
    test_clock_file: Path | None = None
    # the HTTP edge (src/inferd/edge): request heads, slow and stalled clients, connections
    max_header_bytes: int = 64 * 1024  # request line + headers; over it: 431
    max_headers: int = 100  # header fields per request; over it: 431
    max_request_line_bytes: int = 8 * 1024  # the request target (URL); over it: 414
    head_timeout: float = 10.0  # seconds for a whole request head to arrive (from connect or first byte)
    body_timeout: float = 300.0  # seconds for a whole request body to arrive
    body_min_rate: int = 1024  # bytes/s a body must keep arriving at, over each body_rate_window
    body_rate_window: float = 10.0  # seconds over which body_min_rate is measured
    keepalive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    send_timeout: float = 30.0  # seconds a client may leave our response unread before it is dropped
    send_buffer_bytes: int = 256 * 1024  # kernel send buffer per connection (SO_SNDBUF); 0: the kernel's own sizing
    max_connections: int = 2048  # open connections in total; past it: 503 and close
    max_connections_per_client: int = 256  # open connections per client address (0: no cap)
    sse_keepalive: float = 15.0  # seconds between ': keep-alive' comments while a stream has nothing to send

    @property
    def db_path(self) -> Path:
        return self.data_dir / "inferd.sqlite3"

    @property
    def model_files_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """Apply non-None values (e.g. parsed CLI flags) on top of these settings."""
        known = {f.name for f in fields(self)}
        given = {k: v for k, v in overrides.items() if k in known and v is not None}
        return _coerced(replace(self, **given))


def _coerced(settings: Settings) -> Settings:
    data_dir = Path(settings.data_dir).expanduser()
    library = Path(settings.library).expanduser() if settings.library else None
    models_dir = Path(settings.models_dir).expanduser() if settings.models_dir else None
    test_clock = Path(settings.test_clock_file) if settings.test_clock_file else None
    if settings.reasoning_field not in REASONING_FIELDS:
        raise ValueError(f"{ENV_PREFIX}REASONING_FIELD must be one of {', '.join(REASONING_FIELDS)}; "
                         f"got '{settings.reasoning_field}'")
    if settings.log_format not in LOG_FORMATS:
        raise ValueError(f"{ENV_PREFIX}LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}; got '{settings.log_format}'")
    if settings.database_url and not settings.database_url.startswith(DATABASE_SCHEMES):
        raise ValueError(f"{ENV_PREFIX}DATABASE_URL must start with {' or '.join(DATABASE_SCHEMES)}; "
                         f"got '{settings.database_url.partition(':')[0]}:...'")
    _check_limits(settings)
    return replace(settings, data_dir=data_dir, library=library, models_dir=models_dir, test_clock_file=test_clock)


_POSITIVE = ("max_header_bytes", "max_headers", "max_request_line_bytes", "head_timeout", "body_timeout",
             "body_rate_window", "keepalive_timeout", "send_timeout", "max_connections", "sse_keepalive")


def _check_limits(settings: Settings) -> None:
    for name in _POSITIVE:
        if getattr(settings, name) <= 0:
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be positive; got {getattr(settings, name)}")
    for name in ("body_min_rate", "max_connections_per_client", "prompt_cache_mib", "send_buffer_bytes"):
        if getattr(settings, name) < 0:
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be 0 or more; got {getattr(settings, name)}")


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _parse(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.strip().lower() not in _BOOLS:
            raise ValueError(f"{name} must be one of {', '.join(_BOOLS)}; got '{raw}'")
        return _BOOLS[raw.strip().lower()]
    if kind is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{name} must be a{'n integer' if kind is int else ' number'}; got '{raw}'") from None
    return raw


_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "tuple[str, ...]": tuple}


def read_secret(name: str) -> str | None:
    """A secret the Model Library names by its environment variable (an upstream's key); never logged."""
    return os.environ.get(name) or None


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults, then INFERD_* environment variables, then explicit overrides (CLI flags)."""
    env = os.environ if environ is None else environ
    types = {f.name: _KINDS.get(str(f.type), str) for f in fields(Settings)}
    from_env = {}
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            from_env[f.name] = _parse(ENV_PREFIX + f.name.upper(), raw, types.get(f.name, str))
    return Settings().with_overrides(from_env).with_overrides(overrides)
