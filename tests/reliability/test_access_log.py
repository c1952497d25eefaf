"""The sidecar's logs never carry API keys, nor (by default) prompt text."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from serving.sidecar.keys import create_key
from tests.sidecar_fixture import Sidecar, Start

PROMPT = "zebra-quokka-7731 please tell me the secret"
MARK = "zebra-quokka-7731"


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger, serving.* and serving.access included
    return caplog


async def _traffic(sc: Sidecar, key: str) -> list[int]:
    auth = {"Authorization": f"Bearer {key}"}
    chat = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": PROMPT}]}
    calls = [
        ("POST", "/v1/chat/completions", chat, auth),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}, auth),
        ("POST", "/v1/completions", {"model": "gpt-oss-20b", "prompt": PROMPT}, auth),
        ("POST", "/v1/responses", {"model": "gpt-oss-20b", "input": PROMPT}, auth),
        ("POST", "/api/chat", {**chat, "model": "gpt-oss:20b"}, auth),
        ("POST", "/api/generate", {"model": "gpt-oss:20b", "prompt": PROMPT,
                                   "options": {"mirostat": 1}}, auth),
        ("POST", "/v1/chat/completions", {"model": "gpt-oss-20b", "messages": PROMPT}, auth),
        ("POST", "/api/chat", {"model": "gpt-oss:20b", "messages": PROMPT}, auth),
        ("POST", "/v1/chat/completions", {**chat, "model": MARK}, auth),
        ("POST", "/v1/chat/completions", chat, {"Authorization": f"Bearer {key}x"}),
        ("POST", "/api/chat", chat, {"x-api-key": key[:-1]}),
        ("GET", f"/v1/models?q={MARK}", None, auth),
    ]
    statuses = []
    for method, path, body, headers in calls:
        response = await sc.client.request(method, path, json=body, headers=headers)
        statuses.append(response.status_code)
    return statuses


async def test_no_key_and_no_prompt_in_any_log_record(sidecar: Start, all_logs, tmp_path: Path):
    async with sidecar() as sc:
        key, _ = create_key(sc.keys.file, user="logged-user", permissions=["all"])
        statuses = await _traffic(sc, key)
        assert 200 in statuses and 400 in statuses and 401 in statuses and 404 in statuses
        access = [r for r in all_logs.records if r.name == "serving.access"]
        assert len(access) >= len(statuses)  # one line per request, and we did look at them
        assert any("logged-user" in r.getMessage() for r in access)  # the user, not the key
        product = [r for r in all_logs.records if r.name.split(".")[0] in ("serving", "uvicorn")]
        assert len(product) >= len(access)
        for record in product:  # (httpx's own records are the test client's, at INFO here)
            text = record.getMessage() + str(record.args) + (record.exc_text or "")
            assert key[7:20] not in text, (record.name, text)
            assert MARK not in text, (record.name, text)


async def test_log_file_of_a_real_sidecar_process_has_no_key_or_prompt(tmp_path: Path) -> None:
    """The same through the real logging setup (file handler), see test_faults' sidecar."""
    from tests.reliability.procs import FakeUpstream, SidecarProcess

    with FakeUpstream(tmp_path, chunks=4) as upstream, SidecarProcess(tmp_path, upstream.url) as sc:
        async with httpx.AsyncClient(base_url=sc.url, timeout=10) as client:
            chat = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": PROMPT}]}
            for body in (chat, {**chat, "stream": True}):
                ok = await client.post("/v1/chat/completions", json=body, headers=sc.auth())
                assert ok.status_code == 200
            bad = await client.post("/v1/chat/completions", json=chat,
                                    headers={"Authorization": f"Bearer {sc.key}x"})
            assert bad.status_code == 401
    logs = "".join(p.read_text() for p in (tmp_path / "state" / "logs").glob("*.log*"))
    assert "status=200" in logs  # the access log is there
    assert sc.key[7:20] not in logs
    assert MARK not in logs
