"""The model catalogue: every name, alias and nominal size of the served model, as data.

This table is the one place the model's names are written. The launcher's plan picks the
family (``SERVING_MODEL_FAMILY``) and tells vLLM its ``served_names``; the plan hands the
same catalogue to the sidecar (``SERVING_MODEL_FAMILY`` + ``SERVING_SERVED_MODEL_NAMES``,
see ``SidecarSettings.catalogue``), whose readiness check, OpenAI routes and Ollama routes
then answer to exactly those names. No framework imports: both sides import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

ModelFamily = Literal["gpt-oss-20b", "gpt-oss-120b"]
DEFAULT_FAMILY: ModelFamily = "gpt-oss-20b"


def ollama_name(name: str) -> str:
    """Ollama's name rules: case-insensitive, ``:latest`` when no tag is given."""
    name = name.strip().lower()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


@dataclass(frozen=True)
class ModelCatalogue:
    """What one deployment calls its chat model, and its nominal facts."""

    family: ModelFamily
    served_names: tuple[str, ...]  # what vLLM serves (--served-model-name); the first is primary
    ollama_aliases: tuple[str, ...] = ()  # further names Ollama users type for it
    hf_id: str = ""  # where the published weights live
    size_bytes: int = 0  # nominal bytes on disk, when the sidecar cannot see the weights
    parameters: int = 0  # nominal parameter count, likewise

    def __post_init__(self) -> None:
        if not self.served_names:
            raise ValueError(f"{self.family}: at least one served name is needed")

    @property
    def primary(self) -> str:
        """The name vLLM lists first, and reports in its responses."""
        return self.served_names[0]

    @property
    def display_name(self) -> str:
        """The name Ollama users know the model by (``gpt-oss:20b``): the first served name
        with a tag, in Ollama's spelling."""
        tagged = [n for n in self.served_names if ":" in n.rsplit("/", 1)[-1]]
        return ollama_name(tagged[0] if tagged else self.primary)

    def names(self) -> tuple[str, ...]:
        """Every name that means the chat model: the served names, then the Ollama aliases."""
        return (*self.served_names, *self.ollama_aliases)


# The two published families. Ollama's library calls gpt-oss-20b `gpt-oss:20b` and also
# `gpt-oss:latest` / `gpt-oss`; gpt-oss-120b is only `gpt-oss:120b`.
FAMILIES: MappingProxyType[str, ModelCatalogue] = MappingProxyType({
    "gpt-oss-20b": ModelCatalogue(
        family="gpt-oss-20b",
        served_names=("gpt-oss-20b", "gpt-oss:20b", "openai/gpt-oss-20b"),
        ollama_aliases=("gpt-oss:latest", "gpt-oss"),
        hf_id="openai/gpt-oss-20b",
        size_bytes=13_761_300_000,
        parameters=20_914_757_184,
    ),
    "gpt-oss-120b": ModelCatalogue(
        family="gpt-oss-120b",
        served_names=("gpt-oss-120b", "gpt-oss:120b", "openai/gpt-oss-120b"),
        hf_id="openai/gpt-oss-120b",
        size_bytes=65_249_700_000,
        parameters=116_829_156_672,
    ),
})


def model_families() -> tuple[ModelFamily, ...]:
    return tuple(c.family for c in FAMILIES.values())


def catalogue_for(family: str, served_names: Sequence[str] | None = None) -> ModelCatalogue:
    """The catalogue of ``family``; ``served_names`` (non-empty) replace the family's own
    when the deployment serves other names (SERVING_SERVED_MODEL_NAMES)."""
    try:
        entry = FAMILIES[family]
    except KeyError:
        raise ValueError(
            f"unknown model family {family!r}; known: {', '.join(FAMILIES)}") from None
    if served_names and tuple(served_names) != entry.served_names:
        return replace(entry, served_names=tuple(served_names))
    return entry
