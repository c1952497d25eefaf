"""Ollama request pieces shared by the translation tests, the e2e tests and the stream capture."""

from __future__ import annotations

from typing import Any

# The seed's options table (000): every row, with its documented example value.
SEED_OPTIONS: dict[str, Any] = {
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 40,
    "repeat_penalty": 1.1,
    "seed": 42,
    "num_predict": 512,
    "num_ctx": 4096,
    "stop": ["\n", "###"],
    "tfs_z": 1.0,
    "typical_p": 1.0,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.25,
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "num_gpu": 1,
    "gpu_layers": 35,
    "main_gpu": 0,
    "low_vram": False,
    "f16_kv": True,
    "vocab_only": False,
    "use_mmap": True,
    "use_mlock": False,
}

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a location.",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "City name"}},
        },
    },
}
