"""The console at / in a real browser: Debian's headless Chromium driven by Playwright, against one real
server holding the packaged Qwen, the same weights as a think-tags reasoner, and the tiny vision model.

Screenshots of every page go to $INFERD_TEST_ARTIFACTS (default: test-artifacts/ in the checkout)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from .. import media_samples as samples
from ..conftest import QWEN
from ..harness import Server, inferd, library_server
from ..tiny_vlm import TOKENS_PER_IMAGE, write_tiny_vlm
from .test_reasoning import thinker_entry

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("INFERD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
THINKER = "qwen-thinker"
VLM = "tiny-vlm"
ARTIFACTS = Path(os.environ.get("INFERD_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
PAGES = ("playground", "models", "keys", "usage")
TIMEOUT_MS = 120_000
REFUSED_LOAD = r"Failed to load resource: the server responded with a status of 4\d\d"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, server: Server) -> Iterator[Server]:
    """One server for the module; after the default one, which assembles the packaged Qwen file."""
    folder = tmp_path_factory.mktemp("console")
    model, mmproj = write_tiny_vlm(folder)
    qwen_file = models_dir / "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf"
    toml = f'''[[models]]
id = "{QWEN}"
file = "{qwen_file}"
context_length = 1024
parallel = 2
owned_by = "Qwen"

{thinker_entry(models_dir, THINKER, {"minimal": 4, "low": 12, "medium": 16, "high": 24})}
[[models]]
id = "{VLM}"
file = "{model}"
mmproj = "{mmproj}"
context_length = 256
parallel = 1
input_modalities = ["text", "image", "video"]
defaults = {{ temperature = 0.0 }}
'''
    with library_server(folder, models_dir, toml) as srv:
        yield srv


@pytest.fixture(scope="module")
def user_key(console: Server) -> str:
    return console.create_key("console-user")


@pytest.fixture(scope="module")
def admin_key(console: Server) -> str:
    result = inferd("keys", "create", "--name", "console-admin", "--management", env=console.env)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = ARTIFACTS / "console"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not found: install Debian's 'chromium' package (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Tab:
    """A fresh browser context (its own sessionStorage) on the console, recording errors it logs."""

    def __init__(self, browser: Any, srv: Server, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.srv = srv
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.page.goto(srv.url + "/")

    def _console(self, message: Any) -> None:
        # a refused request logs "Failed to load resource: ... 401" by design; CSP violations, script errors do not
        if message.type == "error" and not re.match(REFUSED_LOAD, message.text):
            self.errors.append(message.text)

    def sign_in(self, key: str) -> None:
        self.page.fill("#key-input", key)
        self.page.click("#sign-in-form button")
        self.page.wait_for_selector("#nav", state="visible")

    def go(self, name: str) -> None:
        self.page.click(f'#nav a[data-page="{name}"]')
        self.page.wait_for_selector(f'#nav a[data-page="{name}"][aria-current="page"]')

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture()
def tab(browser: Any, console: Server) -> Iterator[Tab]:
    t = Tab(browser, console)
    yield t
    t.close()


def chat_request(page: Any, send: str = "#main form.composer button[type=submit]") -> tuple[dict, Any]:
    """Click Send; the request the browser made (its JSON body) and the reply's element once it is done."""
    with page.expect_request(lambda r: r.url.endswith("/api/v1/chat/completions")) as info:
        page.click(send)
    reply = page.locator("li.msg.assistant").last
    reply.locator('[data-stat="tokens"]').wait_for()
    return info.value.post_data_json, reply


def choose_model(page: Any, model: str) -> None:
    page.wait_for_selector(f'select[name="model"] option[value="{model}"]', state="attached")
    page.select_option('select[name="model"]', model)


def send_attached(tab: "Tab", key: str, path: Path, preview: str, prompt: str, max_tokens: int) -> tuple[dict, Any]:
    """Sign in, pick the vision model, attach ``path`` (seen as ``preview``), send ``prompt``: as chat_request."""
    tab.sign_in(key)
    choose_model(tab.page, VLM)
    tab.page.set_input_files('input[name="attachments"]', str(path))
    tab.page.wait_for_selector(preview)
    tab.page.fill('input[name="max_tokens"]', str(max_tokens))
    tab.page.fill('textarea[name="prompt"]', prompt)
    return chat_request(tab.page)


def prompt_tokens_of(srv: Server, key: str, prompt: str) -> int:
    """The vision model's prompt tokens for a text-only message, asked directly."""
    plain = httpx.post(srv.url + "/api/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {key}"},
                       json={"model": VLM, "max_tokens": 1, "messages": [{"role": "user", "content": prompt}]})
    return plain.json()["usage"]["prompt_tokens"]


def stat(reply: Any, name: str) -> str:
    return reply.locator(f'[data-stat="{name}"]').inner_text()


def test_console_is_served_with_a_strict_policy_and_leaves_the_api_alone(console: Server) -> None:
    page = httpx.get(console.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in page.text and " style=" not in page.text  # no inline code for the CSP to refuse
    script = httpx.get(console.url + "/console/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == csp
    cached = httpx.get(console.url + "/console/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert cached.status_code == 304
    for path in ("/console/missing.js", "/console/..%2Fapp.py", "/api/v1/nothing", "/v1/nothing", "/nothing"):
        missing = httpx.get(console.url + path)
        assert missing.status_code == 404 and missing.json()["error"]["type"], path
    assert httpx.get(console.url + "/health").json()["status"] == "ready"
    assert httpx.get(console.url + "/api/v1/models").status_code == 401
    assert httpx.post(console.url + "/").status_code == 405


def test_a_wrong_key_shows_an_error_not_a_blank_page(tab: Tab, artifacts: Path) -> None:
    tab.page.fill("#key-input", "sk-inferd-not-a-key")
    tab.page.click("#sign-in-form button")
    error = tab.page.locator("#sign-in-error")
    error.wait_for()
    assert "refused" in error.inner_text() and "401" in error.inner_text()
    assert tab.page.locator("#nav").is_hidden() and tab.page.locator("#sign-in").is_visible()
    assert tab.page.evaluate("sessionStorage.length") == 0
    tab.shot(artifacts, "sign-in-error")


def test_sign_in_by_keyboard_keeps_the_key_in_session_storage_only(tab: Tab, user_key: str) -> None:
    page = tab.page
    page.focus("#key-input")
    page.keyboard.type(user_key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#nav", state="visible")
    assert user_key not in page.url and not tab.context.cookies()
    assert page.evaluate("sessionStorage.getItem('inferd.key')") == user_key
    assert page.evaluate("localStorage.length") == 0
    assert page.locator('#nav a[data-page="keys"]').is_hidden()  # not a management key
    assert page.evaluate("document.activeElement.id") == "pg-title"  # focus moved to the page's heading
    for _ in range(10):  # back through the header to the Models link, open it with Enter
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.dataset.page") == "models":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("article.model")
    page.goto(tab.srv.url + "/#/keys")  # an ordinary key cannot reach the keys page
    page.wait_for_selector('#nav a[data-page="playground"][aria-current="page"]')
    page.click("#sign-out")
    assert page.locator("#sign-in").is_visible() and page.evaluate("sessionStorage.length") == 0


def test_playground_streams_a_reply_with_the_controls_set(tab: Tab, user_key: str, artifacts: Path) -> None:
    tab.sign_in(user_key)
    page = tab.page
    choose_model(page, QWEN)
    for hidden in ("reasoning_effort", "separate_reasoning", "thinking"):  # Qwen's card lists no reasoning
        assert page.locator(f'[name="{hidden}"]').count() == 0
    assert page.locator(".attach").is_hidden()  # text-only model: no attachments
    controls = {"temperature": "0.3", "max_tokens": "8", "top_p": "0.9", "top_k": "7", "min_p": "0.05",
                "repetition_penalty": "1.1"}
    for name, value in controls.items():
        page.fill(f'input[name="{name}"]', value)
    page.click("text=More request fields (JSON)")
    page.fill('textarea[name="extra"]', '{"best_of": 2}')
    page.fill('textarea[name="prompt"]', "Count from 1 to 40, separated by spaces.")
    body, reply = chat_request(page)
    assert {name: body[name] for name in controls} == {n: float(v) if "." in v else int(v) for n, v in controls.items()}
    assert body["stream"] is True and body["best_of"] == 2 and body["model"] == QWEN
    assert body["messages"] == [{"role": "user", "content": "Count from 1 to 40, separated by spaces."}]
    assert re.fullmatch(r"\d+ in, 8 out", stat(reply, "tokens"))  # the server honoured max_tokens
    assert reply.locator(".content").inner_text().strip()
    assert re.fullmatch(r"[\d,]+ ms", stat(reply, "TTFT")) and re.fullmatch(r"[\d.,]+", stat(reply, "tokens/s"))
    assert stat(reply, "ignored params") == "best_of" and stat(reply, "finish") == "length"
    assert reply.locator("details.reasoning").is_hidden()
    page.click("text=Copy as curl")
    curl = page.locator("pre.snippet").inner_text()
    assert '"top_k": 7' in curl and "$INFERD_KEY" in curl and user_key not in curl
    assert "Count from 1 to 40" in curl and '"role": "assistant"' not in curl  # the request just sent
    page.click("text=Copy as Python")
    python = page.locator("pre.snippet").inner_text()
    assert "temperature=0.3" in python and '"repetition_penalty": 1.1' in python and "extra_body=" in python
    compile(python, "snippet.py", "exec")
    tab.shot(artifacts, "playground")


def test_bad_input_shows_the_reason(tab: Tab, user_key: str) -> None:
    tab.sign_in(user_key)
    page = tab.page
    choose_model(page, QWEN)
    page.fill('input[name="temperature"]', "5")  # refused in the page, before any request
    page.fill('textarea[name="prompt"]', "hi")
    page.click("#main form.composer button[type=submit]")
    assert "temperature: 0 to 2" in page.locator("li.msg .error").last.inner_text()
    page.fill('input[name="temperature"]', "")
    page.click("text=More request fields (JSON)")
    page.fill('textarea[name="extra"]', '{"top_k": 1000}')  # refused by the server: its 400 is shown
    with page.expect_response(lambda r: r.url.endswith("/chat/completions")) as answer:
        page.click("#main form.composer button[type=submit]")
    assert answer.value.status == 400
    error = page.locator("li.msg.assistant .error").last
    error.wait_for()
    assert error.inner_text().startswith("400") and "top_k" in error.inner_text()


def test_reasoning_streams_into_its_own_panel(tab: Tab, user_key: str, artifacts: Path) -> None:
    tab.sign_in(user_key)
    page = tab.page
    choose_model(page, THINKER)
    page.select_option('select[name="reasoning_effort"]', "low")
    page.select_option('select[name="thinking"]', "true")
    page.select_option('select[name="separate_reasoning"]', "true")
    page.fill('input[name="max_tokens"]', "24")  # room for the 12-token budget, "</think>" and a few more
    page.fill('textarea[name="prompt"]', "Is 17 a prime number?")
    body, reply = chat_request(page)
    assert body["reasoning_effort"] == "low" and body["chat_template_kwargs"] == {"thinking": True}
    assert body["separate_reasoning"] is True
    panel = reply.locator("details.reasoning")
    assert panel.is_visible() and reply.locator(".reasoning-text").inner_text().strip()
    assert "<think>" not in reply.locator(".content").inner_text()
    assert "thinking=on" in stat(reply, "reasoning") and "budget=12" in stat(reply, "reasoning")
    assert "reasoning)" in stat(reply, "tokens")
    panel.locator("summary").click()  # it folds away
    assert reply.locator(".reasoning-text").is_hidden()
    panel.locator("summary").click()
    tab.shot(artifacts, "playground-reasoning")


def test_an_image_goes_to_the_vision_model(tab: Tab, user_key: str, artifacts: Path, tmp_path: Path,
                                            console: Server) -> None:
    prompt = "What is in the picture?"
    text_only = prompt_tokens_of(console, user_key, prompt)
    picture = tmp_path / "red.png"
    picture.write_bytes(samples.png(32, 32, (255, 0, 0)))
    body, reply = send_attached(tab, user_key, picture, '.previews img[alt="red.png"]', prompt, max_tokens=4)
    page = tab.page
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": prompt} and parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert stat(reply, "tokens") == f"{text_only + TOKENS_PER_IMAGE} in, 4 out"  # the image reached the model
    assert page.locator(".previews li").count() == 0  # attachments go with the message they were sent in
    tab.shot(artifacts, "playground-vision")


def test_a_video_goes_to_the_vision_model(tab: Tab, user_key: str, tmp_path: Path, console: Server) -> None:
    prompt = "What happens?"
    text_only = prompt_tokens_of(console, user_key, prompt)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(samples.video(20, 10))  # 2 s: 2 frames at the model's default 1 fps
    body, reply = send_attached(tab, user_key, clip, ".previews video", prompt, max_tokens=2)
    part = body["messages"][0]["content"][1]
    assert part["type"] == "video_url" and part["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert stat(reply, "video frames") == "2"
    assert stat(reply, "tokens") == f"{text_only + 2 * TOKENS_PER_IMAGE} in, 2 out"


def test_stop_ends_a_stream_and_the_server_carries_on(tab: Tab, user_key: str, console: Server) -> None:
    tab.sign_in(user_key)
    page = tab.page
    choose_model(page, QWEN)
    page.fill('input[name="max_tokens"]', "400")
    page.click("text=More request fields (JSON)")
    page.fill('textarea[name="extra"]', '{"ignore_eos": true}')  # it cannot end before Stop (~10 s or more here)
    page.fill('textarea[name="prompt"]', "Count from 1 to 500.")
    page.click("#main form.composer button[type=submit]")
    reply = page.locator("li.msg.assistant").last
    reply.locator(".content").filter(has_text=re.compile(r"\S")).wait_for()  # streaming has begun
    page.get_by_role("button", name="Stop", exact=True).click()
    assert reply.locator(".error").inner_text() == "Stopped."
    assert page.locator("#main form.composer button[type=submit]").is_enabled()
    assert reply.locator('[data-stat="tokens"]').count() == 0
    assert console.is_healthy()
    health = httpx.get(console.url + "/health").json()["engines"][QWEN]
    deadline = time.monotonic() + 30
    while health["in_flight"] and time.monotonic() < deadline:  # the abandoned generation is ended
        time.sleep(0.2)
        health = httpx.get(console.url + "/health").json()["engines"][QWEN]
    assert health["in_flight"] == 0


def test_models_page_shows_cards_and_engine_health(tab: Tab, user_key: str, artifacts: Path) -> None:
    tab.sign_in(user_key)
    tab.go("models")
    page = tab.page
    page.wait_for_selector("article.model")
    assert page.locator("article.model").count() == 3
    thinker = page.locator(f'article.model[data-model="{THINKER}"]')
    assert "think-tags" in thinker.inner_text() and "12 reasoning tokens" in thinker.inner_text()
    vlm = page.locator(f'article.model[data-model="{VLM}"]').inner_text()
    assert "image" in vlm and "video" in vlm and "256 tokens" in vlm
    assert re.search(r"llamacpp: ready, pid \d+", page.locator(f'article.model[data-model="{QWEN}"]').inner_text())
    tab.shot(artifacts, "models")


def test_keys_page_creates_a_key_shown_once_then_disables_and_deletes_it(tab: Tab, admin_key: str, artifacts: Path,
                                                                          console: Server) -> None:
    tab.sign_in(admin_key)
    page = tab.page
    assert "cannot call completions" in page.locator(".playground .error").inner_text()  # the playground says why
    tab.go("keys")
    page.wait_for_selector('article.key[data-key="console-admin"]')
    form = page.locator("form.key-form").first
    form.locator('input[name="name"]').fill("made-in-console")
    form.locator('input[name="requests_per_minute"]').fill("30")
    form.locator('input[name="limit"]').fill("2.5")
    form.locator('select[name="limit_reset"]').select_option("daily")
    form.locator("button[type=submit]").click()
    secret = page.locator("input.secret").input_value()
    assert secret.startswith("sk-inferd-")
    mine = httpx.get(console.url + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).json()["data"]
    assert mine["name"] == "made-in-console" and mine["rate_limit"]["requests_per_minute"] == 30
    assert mine["limit"] == 2.5 and mine["limit_reset"] == "daily"
    tab.shot(artifacts, "keys-created")
    page.click("text=Done, hide it")
    card = page.locator('article.key[data-key="made-in-console"]')
    card.wait_for()
    assert secret not in page.content()
    tab.go("usage")
    tab.go("keys")  # shown once: not again
    card.wait_for()
    assert secret not in page.content() and page.locator("input.secret").count() == 0
    card.get_by_role("button", name="Disable", exact=True).click()
    card.locator(".badge.off").wait_for()
    assert httpx.get(console.url + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    card.locator("summary", has_text="Edit limits").click()
    editor = card.locator("form.key-form")
    assert editor.locator('input[name="requests_per_minute"]').input_value() == "30"  # the form shows the limits
    editor.locator('input[name="tokens_per_minute"]').fill("5000")
    editor.locator('input[name="limit"]').fill("")
    with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        editor.get_by_role("button", name="Save limits").click()
    assert patched.value.status == 200
    card.locator("text=5000 tok/min").wait_for()
    hashed = patched.value.url.rsplit("/", 1)[1]
    admin = {"Authorization": f"Bearer {admin_key}"}
    changed = httpx.get(f"{console.url}/api/v1/keys/{hashed}", headers=admin).json()["data"]
    assert changed["rate_limit"] == {"requests_per_minute": 30, "tokens_per_minute": 5000, "concurrent_requests": None}
    assert changed["limit"] is None and changed["disabled"] is True and changed["limit_reset"] == "daily"
    tab.shot(artifacts, "keys")
    card.get_by_role("button", name="Delete", exact=True).click()
    card.get_by_role("button", name="Confirm delete").click()
    card.wait_for(state="detached")
    listed = httpx.get(console.url + "/api/v1/keys", headers={"Authorization": f"Bearer {admin_key}"}).json()["data"]
    assert "made-in-console" not in {k["name"] for k in listed}


def wait_for_usage(srv: Server, key: str, requests: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # usage records are written by a background writer
        rows = httpx.get(srv.url + "/api/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        if rows and rows[0]["requests"] >= requests:
            return rows[0]
        time.sleep(0.2)
    raise AssertionError(f"usage never showed {requests} requests")


def test_usage_charts_show_real_requests(tab: Tab, console: Server, admin_key: str, artifacts: Path) -> None:
    key = console.create_key("usage-shown")
    client = openai.OpenAI(base_url=console.url + "/api/v1", api_key=key, max_retries=0, timeout=120)
    replies = [client.chat.completions.create(model=QWEN, max_tokens=3, messages=[{"role": "user", "content": text}])
               for text in ("Say hi", "Say bye")]
    tokens = sum(r.usage.total_tokens for r in replies)
    assert wait_for_usage(console, key, 2)["total_tokens"] == tokens
    tab.sign_in(key)  # an ordinary key sees its own usage
    tab.go("usage")
    page = tab.page
    bar = page.locator(f'figure[data-chart="model"] rect.bar[data-label="{QWEN}"]')
    bar.wait_for()
    assert int(bar.get_attribute("data-value")) == tokens
    days = page.locator('figure[data-chart="day"] rect.bar')
    assert sum(int(days.nth(i).get_attribute("data-value")) for i in range(days.count())) == tokens
    page.select_option('select[name="metric"]', "requests")
    by_key = page.locator('figure[data-chart="key"] rect.bar[data-label="usage-shown"]')
    assert by_key.get_attribute("data-value") == "2"
    assert "usage-shown" in page.locator("table").inner_text()
    with page.expect_download() as download:
        page.click("text=Export CSV")
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[0].startswith("day,model,key_hash,key_name,requests") and "usage-shown" in csv_text
    page.click("#sign-out")
    tab.sign_in(admin_key)  # a management key sees every key's
    tab.go("usage")
    page.locator('figure[data-chart="key"] rect.bar[data-label="usage-shown"]').wait_for()
    tab.shot(artifacts, "usage")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_fits_a_phone(browser: Any, console: Server, admin_key: str, user_key: str, artifacts: Path,
                                 name: str) -> None:
    tab = Tab(browser, console, width=375)
    try:
        tab.sign_in(admin_key if name == "keys" else user_key)
        tab.go(name)
        tab.page.wait_for_selector({"playground": 'select[name="model"]:enabled', "models": "article.model",
                                    "keys": "article.key", "usage": "figure[data-chart]"}[name])
        width = tab.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{name} scrolls sideways: {width} px"
        tab.shot(artifacts, f"phone-{name}")
    finally:
        tab.close()
