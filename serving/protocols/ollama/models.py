"""The Ollama view of the deployment: model names, aliases, and /api/tags|show|ps payloads.

One model is served, described by its ``serving.catalogue.ModelCatalogue``. Ollama clients
may call it by any of its names (vLLM's served names, the family's Ollama aliases such as
``gpt-oss:latest``), or by an alias made with ``/api/copy`` (persisted in
``SidecarSettings.aliases_file``). Payloads report what is really deployed: the context
length vLLM serves (``max_model_len`` from its ``/v1/models``), the parameter count and
quantization read from the checkpoint when the sidecar can see it (the catalogue's nominal
figures otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from math import prod
from pathlib import Path
from typing import Any

from serving.catalogue import FAMILIES, ModelCatalogue
from serving.catalogue import ollama_name as normalize
from serving.errors import BadRequest, NotFound
from serving.launcher import hardware
from serving.protocols.ollama.modelfile import Preset, parameters_text, render_modelfile

log = logging.getLogger(__name__)

FAMILY = "gptoss"  # Ollama's architecture name for gpt-oss
CAPABILITIES = ["completion", "tools", "thinking"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}(:[A-Za-z0-9._-]{1,128})?$")
HARMONY_TEMPLATE = (
    "<|start|>system<|message|>{{ system: model identity, knowledge cutoff, date, reasoning "
    "effort, channels }}<|end|><|start|>developer<|message|># Instructions\n\n{{ .System }}"
    "{{ tools }}<|end|>{{ for messages }}<|start|>{{ role }}<|channel|>{{ channel }}"
    "<|message|>{{ content }}<|end|>{{ end }}<|start|>assistant\n"
    "(harmony format, rendered by vLLM with openai_harmony; custom templates are not used)"
)


@dataclass(frozen=True)
class ServedModel:
    """What vLLM's /v1/models says, plus what the checkpoint directory tells (if visible)."""

    upstream_name: str
    root: str
    max_model_len: int
    created: int
    config: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    parameters: int = 0

    @property
    def digest(self) -> str:
        seed = json.dumps([self.root, self.config, self.size_bytes], sort_keys=True)
        return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()

    @property
    def modified_at(self) -> str:
        return datetime.fromtimestamp(self.created, UTC).isoformat().replace("+00:00", "Z")

    @property
    def quantization(self) -> str:
        method = (self.config.get("quantization_config") or {}).get("quant_method")
        if method:
            return str(method).upper()
        dtype = self.config.get("torch_dtype") or self.config.get("dtype")
        return str(dtype).replace("bfloat16", "BF16").replace("float", "F").upper() if dtype else ""


def parameter_size(count: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


@dataclass(frozen=True)
class Checkpoint:
    """What the checkpoint directory says about itself (nominal figures when unseen)."""

    config: dict[str, Any]
    size_bytes: int
    parameters: int
    modified: int | None = None  # config.json mtime, seconds since the epoch


def read_checkpoint(root: str, family: str) -> Checkpoint:
    """Facts of a local checkpoint directory: config.json, bytes of weights, parameter count
    (from the safetensors headers); the catalogue's nominal figures of ``family`` when the
    directory is not visible from here (e.g. a Hugging Face id resolved inside vLLM's
    container)."""
    directory = Path(root)
    if not (directory / "config.json").is_file():
        nominal = FAMILIES.get(family)
        return Checkpoint({}, nominal.size_bytes, nominal.parameters) if nominal else (
            Checkpoint({}, 0, 0))
    config = json.loads((directory / "config.json").read_text())
    size = params = 0
    for shard in sorted(directory.glob("*.safetensors")):
        size += shard.stat().st_size
        with shard.open("rb") as handle:  # header: 8-byte length, then JSON with the shapes
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        params += sum(prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return Checkpoint(config, size, params, int((directory / "config.json").stat().st_mtime))


class ModelRegistry:
    """Name resolution and the alias file (copies from /api/copy, presets from /api/create).
    Reads the file on every call (tiny, and a name made through another replica's sidecar
    shows up without a restart)."""

    def __init__(self, catalogue: ModelCatalogue, aliases_file: Path) -> None:
        self.catalogue = catalogue
        self.served_names = catalogue.served_names
        self.aliases_file = aliases_file
        self.builtin = {normalize(n): n for n in catalogue.names()}

    @property
    def primary(self) -> str:
        return self.catalogue.primary

    @property
    def display_name(self) -> str:
        """The name Ollama users know the model by (``gpt-oss:20b``), listed first."""
        return self.catalogue.display_name

    def _read(self) -> tuple[dict[str, str], dict[str, Preset]]:
        try:
            data = json.loads(self.aliases_file.read_text())
        except FileNotFoundError:
            return {}, {}
        except (OSError, ValueError):
            log.exception("unreadable aliases file %s; ignoring it", self.aliases_file)
            return {}, {}
        if not isinstance(data, dict):
            return {}, {}
        aliases = {str(k): str(v) for k, v in (data.get("aliases") or {}).items()}
        presets = {}
        for name, raw in (data.get("presets") or {}).items():
            try:
                presets[str(name)] = Preset.from_json(raw)
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring malformed preset %r in %s", name, self.aliases_file)
        return aliases, presets

    def aliases(self) -> dict[str, str]:
        return self._read()[0]

    def presets(self) -> dict[str, Preset]:
        return self._read()[1]

    def listed_names(self) -> list[str]:
        """What /api/tags lists, as Ollama does: the served model once under its Ollama name,
        then the copies and presets users made."""
        aliases, presets = self._read()
        return [self.display_name, *sorted({*aliases, *presets})]

    def lookup(self, name: str) -> tuple[str, Preset | None]:
        """The vLLM served name behind ``name`` and the preset it names, if any; 404 in
        Ollama's words otherwise."""
        key = normalize(name)
        if key in self.builtin:
            served = self.builtin[key]
            return (served if served in self.served_names else self.primary), None
        aliases, presets = self._read()
        if key in aliases:
            return self.primary, None
        if key in presets:
            return self.primary, presets[key]
        raise NotFound(f"model '{name}' not found")

    def resolve(self, name: str) -> str:
        """The vLLM served name behind ``name``; 404 in Ollama's words otherwise."""
        return self.lookup(name)[0]

    def preset(self, name: str) -> Preset | None:
        return self.lookup(name)[1]

    def is_builtin(self, name: str) -> bool:
        return normalize(name) in self.builtin

    def _check_new_name(self, name: str, param: str) -> str:
        if not _NAME.match(name.strip()):
            raise BadRequest(f"invalid model name '{name}'", param=param)
        if self.is_builtin(name):
            raise BadRequest(f"'{name}' is a name of the served model already", param=param)
        return normalize(name)

    def copy(self, source: str, destination: str) -> str:
        """A copy of the served model is an alias; a copy of a preset is the same preset
        under another name."""
        preset = self.preset(source)
        target = self._check_new_name(destination, "destination")
        aliases, presets = self._read()
        aliases.pop(target, None)
        presets.pop(target, None)
        if preset is not None:
            presets[target] = preset
        else:
            aliases[target] = normalize(source)
        self._write(aliases, presets)
        return target

    def save_preset(self, name: str, preset: Preset) -> str:
        target = self._check_new_name(name, "model")
        aliases, presets = self._read()
        aliases.pop(target, None)
        presets[target] = preset
        self._write(aliases, presets)
        return target

    def delete(self, name: str) -> None:
        if self.is_builtin(name):
            raise BadRequest(
                f"'{name}' is the served model: this deployment serves a fixed "
                "model, which cannot be deleted (only copies and presets can)",
                param="model",
            )
        aliases, presets = self._read()
        key = normalize(name)
        if aliases.pop(key, None) is None and presets.pop(key, None) is None:
            raise NotFound(f"model '{name}' not found")
        self._write(aliases, presets)

    def _write(self, aliases: dict[str, str], presets: dict[str, Preset]) -> None:
        self.aliases_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.aliases_file.with_name(f".{self.aliases_file.name}.{os.getpid()}.tmp")
        data = {"version": 1, "aliases": aliases,
                "presets": {name: p.to_json() for name, p in presets.items()}}
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.aliases_file)


def details(model: ServedModel, quantization_label: str) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "safetensors",
        "family": FAMILY,
        "families": [FAMILY],
        "parameter_size": parameter_size(model.parameters),
        "quantization_level": model.quantization or quantization_label,
    }


def tags_payload(names: list[str], model: ServedModel, quantization_label: str) -> dict[str, Any]:
    entry = {
        "modified_at": model.modified_at,
        "size": model.size_bytes,
        "digest": model.digest,
        "details": details(model, quantization_label),
    }
    return {"models": [{"name": n, "model": n, **entry, "capabilities": CAPABILITIES}
                       for n in names]}


def embedding_tag(name: str) -> dict[str, Any]:
    """The companion embedding model (serving.launcher.embedding_plan): all-MiniLM-L6-v2."""
    return {
        "name": f"{name}:latest", "model": f"{name}:latest",
        "modified_at": "2021-08-30T00:00:00Z",  # the published all-MiniLM-L6-v2 weights
        "size": 90_868_376,
        "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
        "details": {"parent_model": "", "format": "safetensors", "family": "bert",
                    "families": ["bert"], "parameter_size": "22.7M",
                    "quantization_level": "F32"},
        "capabilities": ["embedding"],
    }


def model_info(model: ServedModel) -> dict[str, Any]:
    cfg = model.config
    info: dict[str, Any] = {
        "general.architecture": FAMILY,
        "general.basename": "gpt-oss",
        "general.parameter_count": model.parameters,
        f"{FAMILY}.context_length": model.max_model_len,
    }
    keys = {
        "embedding_length": "hidden_size",
        "block_count": "num_hidden_layers",
        "attention.head_count": "num_attention_heads",
        "attention.head_count_kv": "num_key_value_heads",
        "attention.key_length": "head_dim",
        "attention.sliding_window": "sliding_window",
        "expert_count": "num_local_experts",
        "expert_used_count": "num_experts_per_tok",
        "vocab_size": "vocab_size",
    }
    for ollama_key, hf_key in keys.items():
        if hf_key in cfg:
            info[f"{FAMILY}.{ollama_key}"] = cfg[hf_key]
    return info


def show_payload(
    model: ServedModel, quantization_label: str, preset: tuple[str, Preset] | None = None
) -> dict[str, Any]:
    """/api/show for the served model, or for a preset made with /api/create (its Modelfile,
    system prompt, parameters and messages; the weights' facts are the served model's)."""
    payload: dict[str, Any] = {
        "license": "Apache-2.0",
        "modelfile": f"# served by vLLM; not built from a Modelfile\nFROM {model.root}\n",
        "parameters": f"temperature 1\ntop_p 1\nnum_ctx {model.max_model_len}",
        "template": HARMONY_TEMPLATE,
        "details": details(model, quantization_label),
        "model_info": model_info(model),
        "capabilities": CAPABILITIES,
        "modified_at": model.modified_at,
    }
    if preset is not None:
        name, spec = preset
        payload["modelfile"] = render_modelfile(name, spec)
        payload["parameters"] = parameters_text(spec.parameters)
        payload["details"]["parent_model"] = spec.base
        payload["modified_at"] = (datetime.fromtimestamp(spec.created, UTC).isoformat()
                                  .replace("+00:00", "Z"))
        if spec.license:
            payload["license"] = "\n".join(spec.license)
        if spec.system is not None:
            payload["system"] = spec.system
        if spec.messages:
            payload["messages"] = spec.messages
    return payload


def ps_payload(
    name: str, model: ServedModel, quantization_label: str, vram_bytes: int
) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "size": model.size_bytes,
                "digest": model.digest,
                "details": details(model, quantization_label),
                # keep_alive has no effect: a dedicated server keeps the model loaded for good.
                "expires_at": "2318-08-08T00:00:00Z",
                "size_vram": vram_bytes,
                "context_length": model.max_model_len,
                "keep_alive": "ignored: dedicated deployment, the model stays loaded",
            }
        ]
    }


async def gpu_memory_in_use() -> int:
    """Bytes in use on all visible NVIDIA GPUs (vLLM preallocates its share), for /api/ps;
    0 without one. NVML is read in a worker thread, off the event loop."""
    return await asyncio.to_thread(hardware.gpu_memory_used)
