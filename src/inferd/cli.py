"""Command line: inferd serve | keys create|list|revoke | usage | models."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .library import load_library
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
    models = sub.add_parser("models", help="list the Model Library")
    _common(models)
    models.add_argument("--library", help="Model Library TOML file")
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
    for spec in load_library(settings.library):
        path = spec.model_path(settings.model_files_dir)
        state = "present" if path.is_file() else "not assembled yet"
        print(f"{spec.id:<32} engine={spec.engine} context={spec.context_length} parallel={spec.parallel} "
              f"input={'+'.join(spec.input_modalities)} reasoning={spec.reasoning.name} file={path} ({state})")
    return 0


def serve(settings: Settings) -> int:
    import uvicorn

    from .app import create_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        library = load_library(settings.library)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"inferd: cannot read the Model Library: {exc}", file=sys.stderr)
        return 2
    first_keys(settings)
    app = create_app(settings, library)
    print(f"inferd: serving {len(library)} model(s) on http://{settings.host}:{settings.port}/api/v1 "
          f"(health: http://{settings.host}:{settings.port}/health)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                loop="auto", http="auto", timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
