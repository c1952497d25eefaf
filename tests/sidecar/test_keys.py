"""The hashed key store and the `keys` CLI."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from serving.sidecar.keys import (
    KeyFileError,
    KeyStore,
    create_key,
    hash_key,
    read_key_file,
    revoke_key,
)


def test_only_the_hash_is_stored_and_file_is_0600(tmp_path: Path):
    path = tmp_path / "keys.json"
    key, record = create_key(path, user="alice", permissions=["chat"])
    text = path.read_text()
    assert key.startswith("sk-gos-") and key not in text
    assert hash_key(key) in json.loads(text)["keys"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyStore(path).lookup(key) == record


def test_unknown_and_revoked_keys_are_refused(tmp_path: Path):
    path = tmp_path / "keys.json"
    key, record = create_key(path, user="alice", permissions=["chat"])
    store = KeyStore(path)
    assert store.lookup(key + "x") is None
    assert revoke_key(path, "alice")[0].key_id == record.key_id
    assert store.lookup(key) is None


def test_world_readable_key_file_is_refused(tmp_path: Path):
    path = tmp_path / "keys.json"
    create_key(path, user="alice", permissions=["chat"])
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_key_file(path)


def test_unknown_permission_is_refused(tmp_path: Path):
    with pytest.raises(KeyFileError, match="unknown permissions"):
        create_key(tmp_path / "keys.json", user="x", permissions=["root"])


def test_permissions_all_allows_everything(tmp_path: Path):
    path = tmp_path / "keys.json"
    key, _ = create_key(path, user="admin", permissions=["all"])
    record = KeyStore(path).lookup(key)
    assert record is not None and record.allows("models") and record.allows("admin")


def test_cli_create_prints_key_once_then_list_and_revoke(tmp_path: Path):
    path = tmp_path / "keys.json"
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "serving", "keys", "--keys-file", str(path), *a],
        capture_output=True, text=True, check=False)
    created = run("create", "--user", "carol", "--permissions", "chat,models", "--rpm", "60")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("sk-gos-")
    listing = run("list")
    assert "carol" in listing.stdout and key not in listing.stdout
    assert read_key_file(path)[hash_key(key)].limits.requests_per_minute == 60
    assert run("revoke", "carol").returncode == 0
    assert "revoked" in run("list").stdout
    assert run("revoke", "nobody").returncode == 1
