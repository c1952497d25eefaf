"""Model names, aliases and the /api/tags|show|ps|copy|delete|pull|push|create routes."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from serving.catalogue import FAMILIES, catalogue_for
from serving.config import SERVED_MODEL_NAMES
from serving.errors import BadRequest, NotFound
from serving.launcher.hardware import detect_hardware
from serving.protocols.ollama.models import (
    ModelRegistry,
    gpu_memory_in_use,
    normalize,
    read_checkpoint,
)
from tests.fake_vllm import FakeVLLM


def registry(tmp_path: Path, family: str = "gpt-oss-20b") -> ModelRegistry:
    return ModelRegistry(catalogue_for(family), tmp_path / "state" / "aliases.json")


@pytest.mark.parametrize(
    "name",
    [
        "gpt-oss:20b",
        "gpt-oss-20b",
        "openai/gpt-oss-20b",
        "gpt-oss:latest",
        "gpt-oss",
        "GPT-OSS:20B",
        "gpt-oss-20b:latest",
    ],
)
def test_served_names_resolve(tmp_path: Path, name: str) -> None:
    assert registry(tmp_path).resolve(name) in SERVED_MODEL_NAMES


@pytest.mark.parametrize("name", ["gpt-oss:120b", "gpt-oss-120b", "openai/gpt-oss-120b"])
def test_120b_names_resolve_and_20b_names_do_not(tmp_path: Path, name: str) -> None:
    reg = registry(tmp_path, "gpt-oss-120b")
    assert reg.resolve(name) in FAMILIES["gpt-oss-120b"].served_names
    assert reg.display_name == "gpt-oss:120b" and reg.listed_names() == ["gpt-oss:120b"]
    for other in ("gpt-oss:20b", "gpt-oss:latest", "gpt-oss"):  # Ollama's `gpt-oss` is 20b
        with pytest.raises(NotFound):
            reg.resolve(other)


def test_other_served_names_keep_the_family_aliases(tmp_path: Path) -> None:
    """SERVING_SERVED_MODEL_NAMES may rename the model; its Ollama aliases still lead to it."""
    reg = ModelRegistry(catalogue_for("gpt-oss-20b", ["team-gpt", "team:gpt"]), tmp_path / "a.json")
    assert reg.resolve("gpt-oss:latest") == reg.primary == "team-gpt"
    assert reg.resolve("team:gpt") == "team:gpt" and reg.display_name == "team:gpt"


def test_unknown_name_is_404_in_ollama_words(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="model 'llama3:8b' not found"):
        registry(tmp_path).resolve("llama3:8b")


def test_alias_copy_resolve_delete_persisted(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    assert reg.copy("gpt-oss:20b", "my-model") == "my-model:latest"
    again = registry(tmp_path)  # a fresh registry reads the file
    assert again.resolve("my-model") == "gpt-oss-20b"
    assert "my-model:latest" in again.listed_names()
    assert json.loads(reg.aliases_file.read_text())["aliases"] == {"my-model:latest": "gpt-oss:20b"}
    again.delete("my-model:latest")
    with pytest.raises(NotFound):
        reg.resolve("my-model")


def test_served_model_cannot_be_deleted_or_overwritten(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    with pytest.raises(BadRequest, match="cannot be deleted"):
        reg.delete("gpt-oss:20b")
    with pytest.raises(BadRequest, match="served model"):
        reg.copy("gpt-oss:20b", "gpt-oss:latest")
    with pytest.raises(NotFound):
        reg.copy("llama3", "x")
    with pytest.raises(NotFound):
        reg.delete("never-made")


def test_normalize_follows_ollama_tags() -> None:
    assert normalize("Foo") == "foo:latest" and normalize("a/b:1") == "a/b:1"
    assert normalize("host:5000/ns/model") == "host:5000/ns/model:latest"


def write_checkpoint(directory: Path) -> None:
    directory.mkdir()
    (directory / "config.json").write_text(
        json.dumps(
            {
                "model_type": "gpt_oss",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 1,
                "head_dim": 64,
                "num_local_experts": 4,
                "num_experts_per_tok": 2,
                "vocab_size": 201088,
                "torch_dtype": "bfloat16",
            }
        )
    )
    header = json.dumps(
        {"a": {"dtype": "BF16", "shape": [201088, 64], "data_offsets": [0, 0]}, "__metadata__": {}}
    ).encode()
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)


def test_checkpoint_facts_are_read_from_the_weights(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "ckpt")
    facts = read_checkpoint(str(tmp_path / "ckpt"), "gpt-oss-20b")
    assert facts.parameters == 201088 * 64 and facts.size_bytes > 0
    assert facts.config["hidden_size"] == 64 and facts.modified
    assert read_checkpoint("openai/gpt-oss-20b", "gpt-oss-20b").parameters > 20e9  # nominal
    big = read_checkpoint("openai/gpt-oss-120b", "gpt-oss-120b")
    assert (big.size_bytes, big.parameters) == (
        FAMILIES["gpt-oss-120b"].size_bytes, FAMILIES["gpt-oss-120b"].parameters)


async def test_gpu_memory_in_use_is_what_nvml_says() -> None:
    used = await gpu_memory_in_use()  # read in a worker thread
    assert used == 0 if not detect_hardware().gpus else used > 0


async def test_tags_show_ps_report_the_deployment(sidecar: Any, tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "ckpt")
    async with sidecar(FakeVLLM(max_model_len=8192, root=str(tmp_path / "ckpt"))) as sc:
        tags = (await sc.client.get("/api/tags", headers=sc.auth(sc.keys.models))).json()
        names = [m["name"] for m in tags["models"]]
        assert names == ["gpt-oss:20b"]  # the served model once, as Ollama lists it
        entry = tags["models"][0]
        assert entry["details"]["family"] == "gptoss"
        assert entry["details"]["quantization_level"] == "BF16"
        assert entry["details"]["parameter_size"] == "12.9M"
        assert entry["digest"].startswith("sha256:") and entry["size"] > 0

        r = await sc.client.post(
            "/api/show", headers=sc.auth(sc.keys.models), json={"name": "gpt-oss:20b"}
        )
        show = r.json()
        assert show["model_info"]["gptoss.context_length"] == 8192
        assert show["model_info"]["gptoss.block_count"] == 2
        assert set(show["capabilities"]) == {"completion", "tools", "thinking"}
        assert "num_ctx 8192" in show["parameters"] and show["template"]

        ps = (await sc.client.get("/api/ps", headers=sc.auth(sc.keys.models))).json()
        (loaded,) = ps["models"]
        assert loaded["context_length"] == 8192 and loaded["size_vram"] == 0
        assert loaded["name"] == "gpt-oss:20b"
        assert "ignored" in loaded["keep_alive"]


async def test_model_management_routes(sidecar: Any) -> None:
    async with sidecar(FakeVLLM()) as sc:
        admin, chat = sc.auth(), sc.auth(sc.keys.chat)
        copy = {"source": "gpt-oss:20b", "destination": "team/assistant"}
        assert (await sc.client.post("/api/copy", headers=chat, json=copy)).status_code == 403
        copied = await sc.client.post("/api/copy", headers=admin, json=copy)
        assert copied.status_code == 200 and copied.content == b""  # as Ollama answers
        r = await sc.client.post("/api/show", headers=admin, json={"model": "team/assistant"})
        assert r.status_code == 200
        delete = {"model": "gpt-oss:20b"}
        r = await sc.client.request("DELETE", "/api/delete", headers=admin, json=delete)
        assert r.status_code == 400 and "fixed model" in r.json()["error"]
        r = await sc.client.request(
            "DELETE", "/api/delete", headers=admin, json={"name": "team/assistant"}
        )
        assert r.status_code == 200
        r = await sc.client.post("/api/show", headers=admin, json={"model": "team/assistant"})
        assert r.status_code == 404

        r = await sc.client.post("/api/pull", headers=admin, json={"name": "gpt-oss:20b"})
        progress = [json.loads(line) for line in r.text.splitlines()]
        assert progress[0] == {"status": "pulling manifest"}
        assert progress[-1] == {"status": "success"}
        r = await sc.client.post(
            "/api/pull", headers=admin, json={"model": "gpt-oss:20b", "stream": False}
        )
        assert r.json() == {"status": "success"}
        r = await sc.client.post("/api/pull", headers=admin, json={"model": "llama3"})
        assert r.status_code == 404 and "fixed model" in r.json()["error"]

        r = await sc.client.post("/api/push", headers=admin, json={"model": "x"})
        assert r.status_code == 400 and "not supported" in r.json()["error"]


async def test_schema_documents_the_empty_answers_of_copy_and_delete(sidecar: Any) -> None:
    """Clients and the fuzz check answers against /openapi.json: an empty 200 must not be
    documented as JSON (a successful /api/copy once failed the fuzz for exactly that)."""
    async with sidecar(FakeVLLM()) as sc:
        paths = (await sc.client.get("/openapi.json")).json()["paths"]
    for path, method in (("/api/copy", "post"), ("/api/delete", "delete")):
        assert "content" not in paths[path][method]["responses"]["200"]
