"""The o200k_harmony tokenizer rebuilt from openai_harmony's vocabulary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from openai_harmony import HarmonyEncoding
from tokenizers import Tokenizer

from serving.config import PathSettings
from serving.smoke.dataset import sample_rendered_ids
from serving.smoke.tokenizer import (
    O200K_BASE_SHA256,
    VOCAB_SIZE,
    VocabularyMismatch,
    ensure_o200k_base,
    special_tokens,
    verify_o200k_base,
)


def test_verify_accepts_data_with_the_expected_hash() -> None:
    data = b"aGVsbG8= 0\n"
    verify_o200k_base(data, hashlib.sha256(data).hexdigest())


def test_verify_fails_loudly_on_a_corrupted_vocabulary() -> None:
    corrupted = b"IQ== 0\nIg== 1\n"
    with pytest.raises(VocabularyMismatch) as info:
        verify_o200k_base(corrupted)
    message = str(info.value)
    assert hashlib.sha256(corrupted).hexdigest() in message
    assert O200K_BASE_SHA256 in message


def test_cached_vocabulary_file_that_was_tampered_with_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "o200k_base.tiktoken").write_bytes(b"IQ== 0\n")
    with pytest.raises(VocabularyMismatch):
        ensure_o200k_base(tmp_path)


def test_rebuilt_vocabulary_is_the_published_file() -> None:
    path = ensure_o200k_base(PathSettings().cache_dir)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == O200K_BASE_SHA256


def test_harmony_special_tokens_fill_the_top_of_the_vocabulary(encoding: HarmonyEncoding) -> None:
    tokens = special_tokens(encoding)
    assert len(tokens) == VOCAB_SIZE - 199998
    assert tokens[200002 - 199998] == "<|return|>"
    assert tokens[200012 - 199998] == "<|call|>"
    assert tokens[200006 - 199998] == "<|start|>"


def test_token_ids_agree_with_openai_harmony(
    tokenizer_dir: Path, encoding: HarmonyEncoding
) -> None:
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    assert tokenizer.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE
    for ids in sample_rendered_ids(encoding, count=12):
        text = encoding.decode_utf8(ids)
        assert tokenizer.encode(text).ids == ids
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
    swedish = "Hur är vädret i Göteborg? Blåbär, smörgås och 1234 kr!\n\n  ok"
    assert tokenizer.encode(swedish).ids == encoding.encode(swedish)


def test_tokenizer_config_names_the_harmony_tokens(tokenizer_dir: Path) -> None:
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|return|>"
    assert config["pad_token"] == "<|endoftext|>"
    assert config["bos_token"] == "<|startoftext|>"
    assert (tokenizer_dir / "chat_template.jinja").is_file()
