"""Fixtures for the smoke-checkpoint tests: the real tokenizer, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_harmony import HarmonyEncoding

from serving.config import PathSettings
from serving.smoke.build import CHAT_TEMPLATE
from serving.smoke.tokenizer import ensure_o200k_base, harmony_encoding, write_tokenizer_dir


@pytest.fixture(scope="session")
def encoding() -> HarmonyEncoding:
    return harmony_encoding()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokenizer.json & co. as the build writes them (about 30 s; the vocabulary file comes
    from the shared cache, rebuilt from openai_harmony and verified when missing)."""
    vocab = ensure_o200k_base(PathSettings().cache_dir)
    out = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer_dir(vocab, out, CHAT_TEMPLATE.read_text())
    return out
