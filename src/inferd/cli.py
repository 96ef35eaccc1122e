"""Command line: inferd serve | keys create|list|revoke | usage | models."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .library import ModelSpec, load_library
from .provider.admin import add_commands, first_keys, run_keys, run_usage
from .settings import Settings, load_settings


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="where keys, usage and model files live (env INFERD_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferd", description="Self-hosted OpenAI-style LLM inference API.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the API server")
    _common(serve)
    serve.add_argument("--host", help="bind address (env INFERD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env INFERD_PORT, default 8000)")
    serve.add_argument("--library", help="Model Library TOML file (env INFERD_LIBRARY; default: packaged)")
    serve.add_argument("--strict-params", action="store_true", default=None,
                       help="reject parameters a model does not support (400) instead of ignoring them")
    add_commands(sub, _common)  # keys create|list|revoke, usage
    models = sub.add_parser("models", help="list the Model Library (and the engines' state of a running server)")
    _common(models)
    models.add_argument("--library", help="Model Library TOML file")
    models.add_argument("--host", help="where the running server listens (env INFERD_HOST)")
    models.add_argument("--port", type=int, help="its port (env INFERD_PORT)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in {"command", "action", "name", "name_pos"}}
    try:
        settings = load_settings(**overrides)
    except ValueError as exc:
        print(f"inferd: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(settings)
    if args.command == "models":
        return show_models(settings)
    if args.command == "usage":
        return run_usage(settings, args)
    return run_keys(settings, args)


def show_models(settings: Settings) -> int:
    """The library, and, when a server answers at the configured address, each engine's live state."""
    live = _live_engines(settings)
    for spec in load_library(settings.library):
        line = (f"{spec.id:<32} engine={spec.engine} context={spec.context_length} parallel={spec.parallel} "
                f"input={'+'.join(spec.input_modalities)} reasoning={spec.reasoning.name}")
        if spec.engine == "openai" and spec.upstream is not None:
            line += f" upstream={spec.upstream.url} ({spec.upstream.flavour})"
        elif spec.file is not None or spec.source is not None:
            path = spec.model_path(settings.model_files_dir)
            line += f" file={path} ({'present' if path.is_file() else 'not assembled yet'})"
        print(line + _engine_state(live.get(spec.id)))
        _show_backends(spec, (live.get(spec.id) or {}).get("backends") or [])
    if live is _NO_SERVER:
        print(f"(no server answers at http://{settings.host}:{settings.port}: engine states unknown)")
    return 0


_NO_SERVER: dict = {}


def _live_engines(settings: Settings) -> dict:
    import httpx

    try:
        return httpx.get(f"http://{settings.host}:{settings.port}/health", timeout=3).json().get("engines", {})
    except (httpx.HTTPError, ValueError):
        return _NO_SERVER


def _show_backends(spec: ModelSpec, cards: list[dict]) -> None:
    """One line per backend of a routed model: its engine, and its live routing state when known."""
    live = {card["name"]: card for card in cards}
    for backend in spec.backends:
        where = f" upstream={backend.spec.upstream.url}" if backend.spec.upstream is not None else ""
        line = f"  backend {backend.name:<22} engine={backend.spec.engine} parallel={backend.spec.parallel}{where}"
        card = live.get(backend.name)
        if card:
            rate = card.get("cached_rate")
            line += (f" state={card['state']} healthy={card['healthy']} circuit={card['circuit']} "
                     f"in_flight={card['in_flight']}/{card['capacity']} served={card['served']} "
                     f"cached={'-' if rate is None else f'{rate:.0%}'} pid={card.get('pid') or '-'}")
        print(line)


def _engine_state(card: dict | None) -> str:
    if not card:
        return ""
    rss = f"{card['rss_bytes'] / 2**20:.0f} MiB" if card.get("rss_bytes") else "-"
    return (f" state={card['state']} pid={card.get('pid') or '-'} rss={rss} restarts={card.get('restarts', 0)} "
            f"in_flight={card.get('in_flight', 0)}")


def serve(settings: Settings) -> int:
    from .app import create_app
    from .edge.server import run

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "debug":  # one line per call to an engine is noise (and per token at debug)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        library = load_library(settings.library)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"inferd: cannot read the Model Library: {exc}", file=sys.stderr)
        return 2
    first_keys(settings)
    app = create_app(settings, library)
    print(f"inferd: serving {len(library)} model(s) on http://{settings.host}:{settings.port}/api/v1 "
          f"(health: http://{settings.host}:{settings.port}/health)", flush=True)
    return run(app, settings)


if __name__ == "__main__":
    sys.exit(main())
