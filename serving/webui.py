"""`make webui`: Open WebUI on loopback, already connected to the running sidecar.

Open WebUI (PyPI `open-webui`, pinned in requirements/webui.txt) lives in its own virtual
environment, `.venv-webui`, so that its dependencies never touch the engine's. This module
runs in the project's venv: it finds the sidecar, gives Open WebUI a key of its own
(user `open-webui`, permissions chat, models, embeddings: the key
`python -m serving keys create --user open-webui --permissions chat,models,embeddings`
would make, kept in `.serving/webui/api.key` and reused while it is active), and execs
`open-webui serve` with both of its connection types pointed at the sidecar:

- the OpenAI API: `OPENAI_API_BASE_URL=<sidecar>/v1`, `OPENAI_API_KEY`;
- the Ollama API: `OLLAMA_BASE_URL=<sidecar>`; Open WebUI 0.12.4 sends an Ollama
  connection's key only from `OLLAMA_API_CONFIGS` (`{"0": {"key": ...}}`, by index).

Offline: no model downloads (retrieval embeds through the sidecar's /v1/embeddings
instead of loading sentence-transformers at start-up, `OFFLINE_MODE` sets HF_HUB_OFFLINE),
no update check, no telemetry. `ENABLE_PERSISTENT_CONFIG=false`: the connections come from
this environment on every start, so a new key never meets a stale one in Open WebUI's
database. Any of these can be overridden by setting it in the environment first, except
the connection settings, which are what this command is for.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.config import PathSettings, SidecarSettings, WebuiSettings, child_environment
from serving.launcher.console import configure_console
from serving.sidecar.keys import KeyFileError, create_key, hash_key, read_key_file
from serving.smoke.build import READY_MARKER

log = logging.getLogger("serving.webui")  # also under `python -m serving.webui`
USER = "open-webui"
PERMISSIONS = ("chat", "models", "embeddings")
DEFAULT_EXECUTABLE = Path(".venv-webui/bin/open-webui")

# Settings a user may override from the environment (telemetry and downloads off).
DEFAULTS = {
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
    "ENABLE_VERSION_UPDATE_CHECK": "false",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "ANONYMIZED_TELEMETRY": "false",
    "ENABLE_PERSISTENT_CONFIG": "false",
    "ENABLE_EVALUATION_ARENA_MODELS": "false",
    "ENABLE_COMMUNITY_SHARING": "false",
    "DEFAULT_MODELS": "gpt-oss-20b",
    "RAG_EMBEDDING_ENGINE": "openai",
    "USER_AGENT": "open-webui (gpt-oss serving)",
}


# Open WebUI offers its built-in tools (memory, notes, web search...) to every model. The
# smoke checkpoint knows one function and calls it whenever tools are offered, so on a
# CPU host every answer would become a tool call; a real gpt-oss uses them well.
NO_BUILTIN_TOOLS = json.dumps({"capabilities": {"builtin_tools": False}})


@dataclass(frozen=True)
class WebuiSetup:
    sidecar_url: str
    key: str
    secret_key: str
    data_dir: Path
    embedding_model: str
    host: str = "127.0.0.1"
    port: int = WebuiSettings.model_fields["port"].default
    smoke_model: bool = False  # the sidecar serves the smoke checkpoint


def webui_environment(setup: WebuiSetup, base: Mapping[str, str]) -> dict[str, str]:
    """Open WebUI's environment: `base` plus the defaults above plus the connections."""
    env = {**DEFAULTS, **({"DEFAULT_MODEL_METADATA": NO_BUILTIN_TOOLS} if setup.smoke_model
                          else {}), **base}
    env.update({
        "DATA_DIR": str(setup.data_dir),
        "WEBUI_SECRET_KEY": setup.secret_key,
        "ENABLE_OPENAI_API": "true",
        "OPENAI_API_BASE_URL": f"{setup.sidecar_url}/v1",
        "OPENAI_API_KEY": setup.key,
        "ENABLE_OLLAMA_API": "true",
        "OLLAMA_BASE_URL": setup.sidecar_url,
        "OLLAMA_API_CONFIGS": json.dumps({"0": {"enable": True, "key": setup.key}}),
        "RAG_OPENAI_API_BASE_URL": f"{setup.sidecar_url}/v1",
        "RAG_OPENAI_API_KEY": setup.key,
        "RAG_EMBEDDING_MODEL": base.get("RAG_EMBEDDING_MODEL", setup.embedding_model),
    })
    for name in ("OPENAI_API_BASE_URLS", "OPENAI_API_KEYS", "OLLAMA_BASE_URLS"):
        env.pop(name, None)  # the plural forms would win over the settings above
    return env


def webui_key(keys_file: Path, key_file: Path) -> str:
    """The key kept in `key_file` while the sidecar's key file holds it active; else a new one."""
    if key_file.exists():
        key = key_file.read_text(encoding="utf-8").strip()
        record = read_key_file(keys_file).get(hash_key(key))
        if record is not None and not record.revoked:
            return key
    key, _ = create_key(keys_file, user=USER, permissions=list(PERMISSIONS))
    _write_private(key_file, key)
    return key


def secret_key(path: Path) -> str:
    """Open WebUI signs its sessions with this; kept so logins survive a restart."""
    if not path.exists():
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def sidecar_answers(url: str, timeout_s: float = 3.0) -> bool:
    """Anything HTTP back from /health counts: the sidecar is up (the engine may still load)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def serves_smoke_checkpoint(url: str) -> bool:
    """/ready names the model directory; the smoke checkpoint's holds its recipe marker."""
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=3) as response:
            model = json.loads(response.read()).get("model")
    except (OSError, ValueError):
        return False
    return isinstance(model, str) and (Path(model) / READY_MARKER).is_file()


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.webui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=WebuiSettings().port,
                        help="default: $WEBUI_PORT, else 8080")
    parser.add_argument("--sidecar-url", help="default: http://127.0.0.1:$SERVING_PORT")
    parser.add_argument("--open-webui", type=Path, default=DEFAULT_EXECUTABLE,
                        help="the open-webui executable (default: .venv-webui/bin/open-webui)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    paths, sidecar = PathSettings(), SidecarSettings()
    url = (args.sidecar_url or f"http://{_display_host(sidecar.host)}:{sidecar.port}").rstrip("/")
    if not sidecar_answers(url):
        log.error("no sidecar answers at %s; start it first (`make serve`)", url)
        return 2
    if not args.open_webui.exists():
        log.error("%s not found; `make webui` installs it", args.open_webui)
        return 2
    webui_dir = paths.state_dir / "webui"
    keys_file = sidecar.keys_file if "keys_file" in sidecar.model_fields_set else paths.keys_file
    try:
        key = webui_key(keys_file, webui_dir / "api.key")
    except KeyFileError as exc:
        log.error("%s", exc)
        return 2
    setup = WebuiSetup(
        sidecar_url=url, key=key, secret_key=secret_key(webui_dir / "secret.key"),
        data_dir=(webui_dir / "data").resolve(), embedding_model=sidecar.embedding_model_name,
        port=args.port, smoke_model=serves_smoke_checkpoint(url),
    )
    setup.data_dir.mkdir(parents=True, exist_ok=True)
    log.info("Open WebUI: http://%s:%d  (first visit: create its admin account)\n"
             "  connected to %s as OpenAI API (%s/v1) and Ollama API, key of user %r in %s\n"
             "  data: %s", setup.host, setup.port, url, url, USER, webui_dir / "api.key",
             setup.data_dir)
    executable = str(args.open_webui.resolve())
    os.chdir(setup.data_dir)  # it keeps a few files in its working directory
    os.execve(executable, [executable, "serve", "--host", setup.host, "--port", str(setup.port)],
              webui_environment(setup, child_environment({})))
    return 0  # pragma: no cover - execve does not return


if __name__ == "__main__":
    configure_console(None)
    sys.exit(main())
