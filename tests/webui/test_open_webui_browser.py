"""Open WebUI in a real browser against the real stack (`make test-webui`).

Starts the product (`python -m serving up`: vLLM CPU, smoke checkpoint, sidecar) and
`python -m serving.webui` on free loopback ports, then drives Debian's headless chromium with
Playwright as a first user would: create the admin account, pick the model, send a message,
watch the answer stream in and the model's reasoning land in Open WebUI's collapsible
thinking block. Once through the OpenAI connection (`gpt-oss-20b`), once through the Ollama
one (`gpt-oss:20b`); the sidecar's access log shows which route and which key each used.

Runs in .venv-webui (Open WebUI + Playwright); the product runs from $SERVING_PYTHON (.venv).
Screenshots go to $WEBUI_SCREENSHOTS (`make webui-screenshots` puts them in docs/).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port, stop, wait_ready

sync_api = pytest.importorskip("playwright.sync_api", reason="browser test: make test-webui")

REPO = Path(__file__).resolve().parents[2]
SERVING_PYTHON = os.environ.get("SERVING_PYTHON", str(REPO / ".venv" / "bin" / "python"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("WEBUI_SCREENSHOTS", REPO / ".serving" / "webui-test"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
STACK_READY_TIMEOUT_S = 1800.0  # a first run builds the smoke checkpoint
WEBUI_READY_TIMEOUT_S = 600.0
ANSWER_TIMEOUT_MS = 300_000
PROMPT = "Why is the sky blue? Answer in one sentence."
ADMIN = {"name": "Ada Admin", "email": "admin@example.com", "password": "correct horse battery"}


@dataclass
class Connection:
    name: str
    model: str  # as Open WebUI lists it
    owned_by: str  # Open WebUI's tag for the connection type
    route: str  # the sidecar route the chat must arrive on
    screenshot: str


CONNECTIONS = [
    Connection("openai", "gpt-oss-20b", "openai", "/v1/chat/completions",
               "open-webui-openai.png"),
    Connection("ollama", "gpt-oss:20b", "ollama", "/api/chat", "open-webui-ollama.png"),
]


@dataclass
class Stack:
    sidecar_url: str
    webui_url: str
    access_log: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("state")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SERVING_STATE_DIR": str(state),
        "SERVING_PORT": str(free_port()),
        "SERVING_VLLM_PORT": str(free_port()),
        "SERVING_METRICS_PORT": str(free_port()),
        "SERVING_ENGINE": "cpu",
        # Open WebUI's retrieval is not exercised here: spare the 2-core hosts an engine.
        "SERVING_EMBEDDING_MODEL": "off",
    }
    sidecar_url = f"http://127.0.0.1:{env['SERVING_PORT']}"
    webui_port = free_port()
    launcher_log, webui_log = state / "launcher.out", state / "webui.out"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with launcher_log.open("wb") as sink:
            processes.append(subprocess.Popen(
                [SERVING_PYTHON, "-m", "serving", "up"], cwd=REPO, env=env,
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_ready(f"{sidecar_url}/ready", processes[0], launcher_log, STACK_READY_TIMEOUT_S)
        # Background tasks (titles, tags, follow-ups) would each be one more completion
        # on a 2-core host; the chat itself is what is tested.
        webui_env = {**env, **{f"ENABLE_{t}_GENERATION": "false"
                               for t in ("TITLE", "TAGS", "FOLLOW_UP", "AUTOCOMPLETE")}}
        with webui_log.open("wb") as sink:
            processes.append(subprocess.Popen(
                [SERVING_PYTHON, "-m", "serving.webui", "--port", str(webui_port),
                 "--sidecar-url", sidecar_url],
                cwd=REPO, env=webui_env, stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL))
        webui_url = f"http://127.0.0.1:{webui_port}"
        wait_ready(f"{webui_url}/health", processes[1], webui_log, WEBUI_READY_TIMEOUT_S)
        yield Stack(sidecar_url, webui_url, state / "logs" / "serving.log")
    finally:
        for process in reversed(processes):
            stop(process)


@pytest.fixture(scope="module")
def page(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sync_api.Page]:
    """A signed-in admin's page (the account is created on the first visit)."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1100, "height": 640},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            create_admin_account(page, stack.webui_url)
            yield page
        finally:
            context.close()


def create_admin_account(page: sync_api.Page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Get started").click()
    page.fill("#name", ADMIN["name"])
    page.fill("#email", ADMIN["email"])
    page.fill("#password", ADMIN["password"])
    page.get_by_role("button", name="Create Admin Account").click()
    page.locator("#chat-input").wait_for()
    # The first sign-in shows the release notes.
    lets_go = page.get_by_role("button", name="Okay, Let's Go!")
    lets_go.wait_for()
    lets_go.click()
    lets_go.wait_for(state="hidden")


def listed_models(page: sync_api.Page) -> dict[str, str]:
    """Open WebUI's own model list, as the signed-in user sees it: id -> connection type."""
    body = page.evaluate("""async () => {
        const r = await fetch('/api/models', {headers: {Authorization: 'Bearer ' + localStorage.token}});
        return await r.json();
    }""")
    return {m["id"]: m.get("owned_by", "") for m in body["data"]}


def pick_model(page: sync_api.Page, model: str) -> None:
    page.locator("#model-selector-model-button").click()
    page.locator("#model-search-input").fill(model)
    page.locator(f'#model-selector-list [role=option][data-value="{model}"]').click()
    sync_api.expect(page.locator("#model-selector-model-button")).to_have_attribute(
        "aria-label", f"Selected model: {model}")


def access_lines(log: Path, route: str) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if f"method=POST path={route} " in line]


@pytest.mark.parametrize("connection", CONNECTIONS, ids=[c.name for c in CONNECTIONS])
def test_chat_streams_an_answer_with_a_thinking_block(
    stack: Stack, page: sync_api.Page, connection: Connection
) -> None:
    assert listed_models(page).get(connection.model) == connection.owned_by
    before = len(access_lines(stack.access_log, connection.route))

    page.goto(stack.webui_url)
    page.locator("#chat-input").wait_for()
    pick_model(page, connection.model)
    page.locator("#chat-input").click()
    page.keyboard.type(PROMPT)
    page.keyboard.press("Enter")

    # The answer streams in: sample the reply while it grows, until the Stop button goes.
    reply = page.locator("#response-content-container").last
    reply.wait_for(timeout=ANSWER_TIMEOUT_MS)
    stop = page.get_by_role("button", name="Stop")
    seen: list[str] = []
    deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        text = reply.inner_text().strip()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if seen and seen[-1].startswith("Thought for") and stop.count() == 0:
            break
        time.sleep(0.05)
    assert stop.count() == 0, f"still generating after {ANSWER_TIMEOUT_MS / 1000:.0f}s"
    assert len(seen) >= 2, f"the reply arrived in one piece, not streamed: {seen}"
    _, _, answer = seen[-1].partition("\n")
    assert answer.strip(), f"no answer under the thinking block: {seen[-1]!r}"

    # gpt-oss's reasoning is in Open WebUI's collapsible thinking block: open it.
    toggle = reply.locator("button[aria-expanded]").filter(has_text="Thought for").first
    sync_api.expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    sync_api.expect(toggle).to_have_attribute("aria-expanded", "true")
    page.wait_for_timeout(500)  # the opening animation, for the screenshot
    expanded = reply.inner_text().strip()
    assert len(expanded) > len(seen[-1]), "the thinking block opened empty"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / connection.screenshot))

    # It went through the connection picked, with Open WebUI's own key.
    lines = access_lines(stack.access_log, connection.route)[before:]
    assert lines, f"no POST {connection.route} reached the sidecar"
    assert all("status=200" in line and "user=open-webui" in line for line in lines), lines
