"""The one way protocol code gets the deployment's model names: the served names (from the
plan, through the settings) with the aliases and presets users made (/api/copy, /api/create).
Shared by every dialect, so a name made through Ollama works on the OpenAI routes too."""

from __future__ import annotations

from serving.config import SidecarSettings
from serving.protocols.ollama.models import ModelRegistry


def model_names(settings: SidecarSettings) -> ModelRegistry:
    """No I/O until a lookup (the alias file is small and read on each lookup)."""
    return ModelRegistry(settings.catalogue(), settings.aliases_file)
