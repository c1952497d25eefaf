"""The real gpt-oss tokenizer (o200k_harmony), rebuilt offline.

`openai_harmony` (a vLLM dependency) carries the o200k vocabulary inside its binary. Decoding
ids 0..199997 one by one gives back the byte strings of the official ``o200k_base.tiktoken``
file, which we write out in tiktoken's format (``base64(token) rank`` per line) and check
against the sha256 OpenAI publishes for it. From that file ``transformers``'
``TikTokenConverter`` builds a Hugging Face ``tokenizer.json``; the harmony special tokens
(``<|start|>``, ``<|channel|>``, ``<|return|>`` ...) fill ids 199998..201087, so the
vocabulary has the model's 201088 entries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from openai_harmony import HarmonyEncoding, HarmonyEncodingName, load_harmony_encoding

logger = logging.getLogger(__name__)

O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
O200K_BASE_FILENAME = "o200k_base.tiktoken"
NUM_BASE_TOKENS = 199998  # ids 0..199997 are byte-pair tokens; specials start here
VOCAB_SIZE = 201088  # embedding rows of gpt-oss; ids 199998..201087 are special tokens

# o200k's pre-tokenizer pattern, as tiktoken_ext.openai_public.o200k_base defines it
# (tiktoken only builds that encoding after downloading the file, so it is spelled out here;
# tests check the resulting tokenizer against openai_harmony's own encoder).
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

BOS_TOKEN = "<|startoftext|>"  # 199998
PAD_TOKEN = "<|endoftext|>"  # 199999
EOS_TOKEN = "<|return|>"  # 200002
# Generation stops at the end of an answer (<|return|>), a tool call (<|call|>) or text end.
EOS_TOKEN_IDS = (200002, 199999, 200012)

# The released gpt-oss checkpoints set no length limit on the tokenizer.
MODEL_MAX_LENGTH = 1000000000000000019884624838656


class VocabularyMismatch(RuntimeError):
    """The o200k vocabulary rebuilt from openai_harmony is not the published file."""


def harmony_encoding() -> HarmonyEncoding:
    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def o200k_base_bytes(encoding: HarmonyEncoding) -> bytes:
    """The ``o200k_base.tiktoken`` file, byte for byte, from harmony's vocabulary."""
    inner = encoding._inner  # the Rust encoder: the public wrapper only decodes to str
    lines = [
        base64.b64encode(bytes(inner.decode_bytes([rank]))) + b" " + str(rank).encode()
        for rank in range(NUM_BASE_TOKENS)
    ]
    return b"\n".join(lines) + b"\n"


def verify_o200k_base(data: bytes, expected_sha256: str = O200K_BASE_SHA256) -> None:
    """Raise `VocabularyMismatch` unless ``data`` hashes to the published sha256."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise VocabularyMismatch(
            f"the o200k_base vocabulary rebuilt from openai_harmony has sha256 {actual}, "
            f"expected {expected_sha256} (the published o200k_base.tiktoken). The installed "
            "openai_harmony (package oss-harmony) carries a different vocabulary; install the "
            "version pinned in pyproject.toml, or put the official o200k_base.tiktoken file "
            "into the smoke cache directory."
        )


def ensure_o200k_base(cache_dir: Path, encoding: HarmonyEncoding | None = None) -> Path:
    """Write (once) and verify ``cache_dir/o200k_base.tiktoken``; return its path."""
    path = cache_dir / O200K_BASE_FILENAME
    if path.exists():
        verify_o200k_base(path.read_bytes())
        return path
    logger.info("rebuilding %s from openai_harmony's vocabulary", O200K_BASE_FILENAME)
    data = o200k_base_bytes(encoding or harmony_encoding())
    verify_o200k_base(data)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False, suffix=".tmp") as handle:
        handle.write(data)
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
    return path


def special_tokens(encoding: HarmonyEncoding) -> list[str]:
    """Harmony's special tokens for ids 199998..201087, in id order (checked contiguous)."""
    by_id: dict[int, str] = {}
    for token in encoding.special_tokens_set:
        (token_id,) = encoding.encode(token, allowed_special={token})
        if token_id < VOCAB_SIZE:
            by_id[token_id] = token
    expected = list(range(NUM_BASE_TOKENS, VOCAB_SIZE))
    if sorted(by_id) != expected:
        raise VocabularyMismatch("harmony's special tokens do not fill ids 199998..201087")
    return [by_id[token_id] for token_id in expected]


def write_tokenizer_dir(vocab_file: Path, out_dir: Path, chat_template: str) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    encoding = harmony_encoding()
    specials = special_tokens(encoding)
    converter = TikTokenConverter(
        vocab_file=str(vocab_file), pattern=O200K_PATTERN, extra_special_tokens=specials
    )
    backend = converter.converted()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(out_dir))
    _compat_tokenizer_files(out_dir)
    check_tokenizer_dir(out_dir, encoding)


def _compat_tokenizer_files(out_dir: Path) -> None:
    """Name the class as the released checkpoints do (transformers 5 writes its new name)."""
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def check_tokenizer_dir(tokenizer_dir: Path, encoding: HarmonyEncoding | None = None) -> None:
    """The saved tokenizer must encode a rendered conversation exactly as harmony does."""
    from tokenizers import Tokenizer

    from serving.smoke.dataset import sample_rendered_ids

    encoding = encoding or harmony_encoding()
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    if tokenizer.get_vocab_size(with_added_tokens=True) != VOCAB_SIZE:
        raise VocabularyMismatch(f"tokenizer vocabulary is not {VOCAB_SIZE}")
    for ids in sample_rendered_ids(encoding):
        mismatch = first_mismatch(tokenizer.encode(encoding.decode_utf8(ids)).ids, ids)
        if mismatch is not None:
            raise VocabularyMismatch(f"tokenizer.json disagrees with harmony at token {mismatch}")


def first_mismatch(left: Sequence[int], right: Sequence[int]) -> int | None:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return None if len(left) == len(right) else min(len(left), len(right))


def write_generation_config(out_dir: Path) -> None:
    config = {
        "bos_token_id": 199998,
        "do_sample": True,
        "eos_token_id": list(EOS_TOKEN_IDS),
        "pad_token_id": 199999,
    }
    (out_dir / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")
