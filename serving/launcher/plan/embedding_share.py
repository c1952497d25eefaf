"""The share of a GPU the companion embedding engine (``serving.launcher.embedding_plan``)
takes from the chat engine's budget."""

from __future__ import annotations

import math

from serving.config import EngineSettings

# MiniLM's weights are 90 MB; the rest is CUDA context, activations and vLLM's profiling.
GPU_BUDGET_BYTES = 1024**3


def embedding_gpu_fraction(total_bytes: int, engine: EngineSettings) -> float:
    """The share of a GPU the embedding engine gets (0 when embeddings are off)."""
    if not embeddings_enabled(engine):
        return 0.0
    if engine.embedding_gpu_memory_utilization is not None:
        return engine.embedding_gpu_memory_utilization
    return math.ceil(GPU_BUDGET_BYTES / total_bytes * 1000) / 1000


def embeddings_enabled(engine: EngineSettings) -> bool:
    """On by default, except beside gpt-oss-120b: its 65 GB of weights leave an 80 GB card
    too little KV cache to spare (set SERVING_EMBEDDING_MODEL explicitly to have both)."""
    if engine.embedding_model == "off":
        return False
    return not (engine.embedding_model == "auto" and engine.model_family == "gpt-oss-120b")


