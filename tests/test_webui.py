"""`python -m serving.webui`: Open WebUI's key and environment (no Open WebUI needed)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from serving.sidecar.keys import hash_key, read_key_file, revoke_key
from serving.webui import (
    PERMISSIONS,
    USER,
    WebuiSetup,
    build_parser,
    main,
    secret_key,
    webui_environment,
    webui_key,
)


def setup(tmp_path: Path) -> WebuiSetup:
    return WebuiSetup(sidecar_url="http://127.0.0.1:8000", key="sk-gos-test", secret_key="s3",
                      data_dir=tmp_path / "data", embedding_model="all-minilm")


def test_both_connections_point_at_the_sidecar_with_the_key(tmp_path: Path):
    env = webui_environment(setup(tmp_path), {})
    assert env["OPENAI_API_BASE_URL"] == "http://127.0.0.1:8000/v1"
    assert env["OPENAI_API_KEY"] == "sk-gos-test"
    assert env["OLLAMA_BASE_URL"] == "http://127.0.0.1:8000"
    # 0.12.4 sends an Ollama connection's key only from its per-index API config.
    assert json.loads(env["OLLAMA_API_CONFIGS"])["0"]["key"] == "sk-gos-test"
    assert env["ENABLE_OPENAI_API"] == env["ENABLE_OLLAMA_API"] == "true"
    assert env["RAG_EMBEDDING_ENGINE"] == "openai"
    assert env["RAG_OPENAI_API_BASE_URL"] == "http://127.0.0.1:8000/v1"
    assert env["RAG_EMBEDDING_MODEL"] == "all-minilm"
    assert env["OFFLINE_MODE"] == "true" and env["HF_HUB_OFFLINE"] == "1"
    assert env["DATA_DIR"] == str(tmp_path / "data") and env["WEBUI_SECRET_KEY"] == "s3"


def test_user_overrides_defaults_but_not_the_connections(tmp_path: Path):
    base = {"OFFLINE_MODE": "false", "OPENAI_API_KEY": "other", "OPENAI_API_BASE_URLS": "x;y",
            "OLLAMA_BASE_URLS": "http://elsewhere:11434", "PATH": "/usr/bin"}
    env = webui_environment(setup(tmp_path), base)
    assert env["OFFLINE_MODE"] == "false" and env["PATH"] == "/usr/bin"
    assert env["OPENAI_API_KEY"] == "sk-gos-test"
    assert "OPENAI_API_BASE_URLS" not in env and "OLLAMA_BASE_URLS" not in env


def test_key_is_created_once_reused_and_replaced_when_revoked(tmp_path: Path):
    keys_file, key_file = tmp_path / "keys.json", tmp_path / "webui" / "api.key"
    first = webui_key(keys_file, key_file)
    record = read_key_file(keys_file)[hash_key(first)]
    assert record.user == USER and record.permissions == frozenset(PERMISSIONS)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert webui_key(keys_file, key_file) == first
    revoke_key(keys_file, USER)
    second = webui_key(keys_file, key_file)
    assert second != first and key_file.read_text().strip() == second
    assert not read_key_file(keys_file)[hash_key(second)].revoked


def test_secret_key_is_kept(tmp_path: Path):
    path = tmp_path / "secret.key"
    assert secret_key(path) == secret_key(path) != ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refuses_to_start_without_a_sidecar(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setenv("SERVING_STATE_DIR", str(tmp_path))
    assert main(["--sidecar-url", "http://127.0.0.1:9", "--open-webui", "/bin/true"]) == 2
    assert [r.levelname for r in caplog.records if "make serve" in r.getMessage()] == ["ERROR"]
    assert not (tmp_path / "keys.json").exists()


def test_builtin_tools_off_for_the_smoke_checkpoint_only(tmp_path: Path):
    smoke = WebuiSetup(**{**setup(tmp_path).__dict__, "smoke_model": True})
    assert json.loads(webui_environment(smoke, {})["DEFAULT_MODEL_METADATA"]) == {
        "capabilities": {"builtin_tools": False}}
    assert "DEFAULT_MODEL_METADATA" not in webui_environment(setup(tmp_path), {})
    assert webui_environment(smoke, {"DEFAULT_MODEL_METADATA": "{}"})["DEFAULT_MODEL_METADATA"] == "{}"



def test_port_comes_from_webui_port_through_the_settings(monkeypatch):
    assert build_parser().parse_args([]).port == 8080
    monkeypatch.setenv("WEBUI_PORT", "8181")
    assert build_parser().parse_args([]).port == 8181
    assert build_parser().parse_args(["--port", "9000"]).port == 9000
