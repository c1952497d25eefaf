"""The API key store: a JSON file of sha256 key hashes, re-read when it changes.

Keys are 256-bit random secrets (``sk-gos-...``), so an unsalted sha256 is a safe and
fast verifier: there is nothing to brute-force. The plaintext key is printed once by
``python -m serving keys create`` and never written anywhere. Lookups compare every stored
digest with ``hmac.compare_digest`` so timing does not reveal how much of a key matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

KEY_PREFIX = "sk-gos-"
PERMISSIONS = ("chat", "completions", "models", "embeddings", "metrics", "admin", "all")
FILE_VERSION = 1


class KeyFileError(Exception):
    """The key file cannot be used as it is; the message says what to change."""


@dataclass(frozen=True)
class KeyLimits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    user: str
    permissions: frozenset[str]
    created_at: str
    revoked: bool = False
    limits: KeyLimits = field(default_factory=KeyLimits)

    def allows(self, permission: str) -> bool:
        return "all" in self.permissions or permission in self.permissions


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _record_from_json(raw: dict[str, object]) -> KeyRecord:
    limits = raw.get("limits") or {}
    assert isinstance(limits, dict)
    permissions = raw.get("permissions") or []
    assert isinstance(permissions, list)
    return KeyRecord(
        key_id=str(raw["key_id"]),
        user=str(raw["user"]),
        permissions=frozenset(str(p) for p in permissions),
        created_at=str(raw.get("created_at", "")),
        revoked=bool(raw.get("revoked", False)),
        limits=KeyLimits(**{k: limits.get(k) for k in KeyLimits.__dataclass_fields__}),
    )


def _record_to_json(record: KeyRecord) -> dict[str, object]:
    return {
        "key_id": record.key_id,
        "user": record.user,
        "permissions": sorted(record.permissions),
        "created_at": record.created_at,
        "revoked": record.revoked,
        "limits": record.limits.__dict__,
    }


def check_file_mode(path: Path) -> None:
    """Refuse a key file that other users can read: hashes are still worth protecting."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not _is_mounted_secret(path):
        raise KeyFileError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def _is_mounted_secret(path: Path) -> bool:
    # Kubernetes mounts Secrets through a read-only "..data" symlink; its mode is set by
    # the pod spec (defaultMode), not by us.
    return (path.parent / "..data").exists()


def read_key_file(path: Path) -> dict[str, KeyRecord]:
    if not path.exists():
        return {}
    check_file_mode(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = data["keys"]
        return {str(digest): _record_from_json(raw) for digest, raw in keys.items()}
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise KeyFileError(f"{path} is not a valid key file: {exc}") from exc


def write_key_file(path: Path, records: dict[str, KeyRecord]) -> None:
    """Write atomically with mode 0600, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": FILE_VERSION,
        "keys": {digest: _record_to_json(r) for digest, r in records.items()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(
    path: Path, *, user: str, permissions: list[str], limits: KeyLimits | None = None
) -> tuple[str, KeyRecord]:
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown or not permissions:
        raise KeyFileError(f"unknown permissions {unknown}; choose from {', '.join(PERMISSIONS)}")
    records = read_key_file(path)
    key = generate_key()
    record = KeyRecord(
        key_id="key_" + secrets.token_hex(6),
        user=user,
        permissions=frozenset(permissions),
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        limits=limits or KeyLimits(),
    )
    records[hash_key(key)] = record
    write_key_file(path, records)
    return key, record


def revoke_key(path: Path, key_id_or_user: str) -> list[KeyRecord]:
    """Revoke keys by key id, or every key of a user. Returns what was revoked."""
    records = read_key_file(path)
    revoked = []
    for digest, record in records.items():
        if key_id_or_user in (record.key_id, record.user) and not record.revoked:
            records[digest] = KeyRecord(**{**record.__dict__, "revoked": True})
            revoked.append(records[digest])
    if revoked:
        write_key_file(path, records)
    return revoked


class KeyStore:
    """Verifies presented keys; re-reads the file when its mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[float, int] | None = None
        self._records: dict[str, KeyRecord] = {}

    def _reload_if_changed(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._signature = {}, None
            return
        signature = (st.st_mtime, st.st_size)
        if signature != self._signature:
            self._records = read_key_file(self.path)
            self._signature = signature

    def lookup(self, presented: str) -> KeyRecord | None:
        """Return the active record for this key, or None. Constant time per stored key."""
        self._reload_if_changed()
        digest = hash_key(presented)
        found: KeyRecord | None = None
        for stored_digest, record in self._records.items():
            if hmac.compare_digest(stored_digest, digest):
                found = record
        if found is None or found.revoked:
            return None
        return found

    def __len__(self) -> int:
        self._reload_if_changed()
        return sum(1 for r in self._records.values() if not r.revoked)
