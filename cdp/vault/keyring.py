"""Key-encryption keys (KEKs): versioned, held outside the database.

A keyring wraps and unwraps per-subject data keys; it never hands KEK material to the rest of the code.
That keeps the interface the same for a local key file, an environment variable and an external KMS/HSM,
where the KEK cannot leave the device at all (see :class:`KeyEncryptionKeys`).

The key file (``cdp init``) is JSON, mode 0600, in its own directory apart from the database::

    {"format": "cdp-keyring/1",
     "keks": [{"version": 1, "state": "active", "created_at": "...", "key": "<base64 32 bytes>"}],
     "blind_index_key": "<base64 32 bytes>"}

KEK states: ``active`` (wraps new keys; exactly one), ``decrypt_only`` (still unwraps keys not yet
rewrapped), ``retired`` (material destroyed; allowed only once no data key references it).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.vault.errors import DecryptionError, KeyNotAvailable, KeyringError

KEYRING_FORMAT = "cdp-keyring/1"
KEY_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True)
class KekInfo:
    version: int
    state: str
    created_at: str


@runtime_checkable
class KeyEncryptionKeys(Protocol):
    """What the vault needs from a KEK provider. An external KMS/HSM adapter implements exactly this:
    ``wrap``/``unwrap`` become KMS Encrypt/Decrypt calls with ``aad`` as the encryption context."""

    def active_version(self) -> int: ...

    def versions(self) -> list[KekInfo]: ...

    def wrap(self, version: int, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, version: int, blob: bytes, aad: bytes) -> bytes: ...

    def blind_index_key(self) -> bytes: ...

    def create_version(self) -> int:
        """Add a new active KEK; the previous active one becomes ``decrypt_only``."""
        ...

    def retire(self, version: int) -> None:
        """Destroy a ``decrypt_only`` KEK. The caller proves nothing references it first."""
        ...


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyringError(f"keyring: {what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"keyring: {what} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"keyring: {what} must be {KEY_BYTES} bytes, found {len(raw)}")
    return raw


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _InMemoryKeyring:
    """Local AES-256-GCM wrapping with KEKs held in process memory (file and env providers)."""

    def __init__(self, document: dict[str, object], origin: str) -> None:
        self._origin = origin
        self._load(document)

    def _load(self, document: dict[str, object]) -> None:
        if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"{self._origin} is not a {KEYRING_FORMAT} keyring")
        raw_keks = document.get("keks")
        if not isinstance(raw_keks, list) or not raw_keks:
            raise KeyringError(f"{self._origin} holds no key-encryption keys")
        self._info: dict[int, KekInfo] = {}
        self._ciphers: dict[int, AESGCM] = {}
        for entry in raw_keks:
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), int):
                raise KeyringError(f"{self._origin}: every KEK needs an integer version")
            version = entry["version"]
            state = entry.get("state")
            if state not in ("active", "decrypt_only", "retired"):
                raise KeyringError(f"{self._origin}: KEK v{version} has unknown state {state!r}")
            if version in self._info:
                raise KeyringError(f"{self._origin}: KEK v{version} appears twice")
            self._info[version] = KekInfo(version, state, str(entry.get("created_at", "")))
            if state != "retired":
                self._ciphers[version] = AESGCM(_b64decode(entry.get("key"), f"KEK v{version}"))
        active = [v for v, info in self._info.items() if info.state == "active"]
        if len(active) != 1:
            raise KeyringError(f"{self._origin} must have exactly one active KEK, found {len(active)}")
        self._active = active[0]
        self._blind_key = _b64decode(document.get("blind_index_key"), "blind_index_key")

    def active_version(self) -> int:
        return self._active

    def versions(self) -> list[KekInfo]:
        return [self._info[v] for v in sorted(self._info)]

    def _cipher(self, version: int) -> AESGCM:
        try:
            return self._ciphers[version]
        except KeyError:
            state = self._info[version].state if version in self._info else "unknown"
            raise KeyNotAvailable(f"KEK v{version} is not available ({state})") from None

    def wrap(self, version: int, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._cipher(version).encrypt(nonce, plaintext, aad)

    def unwrap(self, version: int, blob: bytes, aad: bytes) -> bytes:
        cipher = self._cipher(version)
        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(f"wrapped data key failed authentication under KEK v{version}") from None

    def blind_index_key(self) -> bytes:
        return self._blind_key

    def create_version(self) -> int:
        raise KeyringError(f"{self._origin} is read-only: deploy a keyring with a new active KEK instead")

    def retire(self, version: int) -> None:
        raise KeyringError(f"{self._origin} is read-only: remove KEK v{version} from its source instead")


def new_keyring_document() -> dict[str, object]:
    """A fresh keyring: one active KEK and a separate blind-index key, from the OS CSPRNG."""
    return {
        "format": KEYRING_FORMAT,
        "keks": [
            {
                "version": 1,
                "state": "active",
                "created_at": _now(),
                "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
            }
        ],
        "blind_index_key": base64.b64encode(os.urandom(KEY_BYTES)).decode(),
    }


class FileKeyring(_InMemoryKeyring):
    """The demo/single-host provider: a 0600 JSON file outside the database, rewritten atomically.

    Other processes (the server, while ``cdp keys rotate`` runs) notice a rewritten file within
    ``RELOAD_INTERVAL`` seconds, so every process wraps new keys under the new active KEK.
    """

    RELOAD_INTERVAL = 1.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._checked_at = time.monotonic()
        self._mtime_ns = self._stat_mtime()
        super().__init__(self._read(), f"key file {path}")

    def _stat_mtime(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return -1

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.RELOAD_INTERVAL:
            return
        self._checked_at = now
        mtime = self._stat_mtime()
        if mtime != self._mtime_ns:
            self._load(self._read())
            self._mtime_ns = mtime

    def active_version(self) -> int:
        self._maybe_reload()
        return super().active_version()

    def unwrap(self, version: int, blob: bytes, aad: bytes) -> bytes:
        if version not in self._ciphers:
            self._checked_at = 0.0
            self._maybe_reload()
        return super().unwrap(version, blob, aad)

    @classmethod
    def create(cls, path: Path) -> FileKeyring:
        if path.exists():
            raise KeyringError(f"key file {path} already exists; refusing to overwrite keys")
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        _atomic_write_private(path, new_keyring_document())
        return cls(path)

    def _read(self) -> dict[str, object]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise KeyringError(f"key file {self.path} not found; run `cdp init` to create keys") from None
        except OSError as exc:
            raise KeyringError(f"key file {self.path} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyringError(f"key file {self.path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyringError(
                f"key file {self.path} has mode {mode:04o}; it must be 0600 (run: chmod 600 {self.path})"
            )
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise KeyringError(f"key file {self.path} is unreadable or not JSON") from None
        if not isinstance(document, dict):
            raise KeyringError(f"key file {self.path} is not a keyring")
        return document

    def _rewrite(self, mutate: _Mutation) -> None:
        document = self._read()
        mutate(document)
        self._load(document)
        _atomic_write_private(self.path, document)
        self._mtime_ns = self._stat_mtime()

    def create_version(self) -> int:
        created: list[int] = []

        def mutate(document: dict[str, object]) -> None:
            keks = document["keks"]
            assert isinstance(keks, list)
            version = max(int(k["version"]) for k in keks) + 1
            for entry in keks:
                if entry["state"] == "active":
                    entry["state"] = "decrypt_only"
            keks.append(
                {
                    "version": version,
                    "state": "active",
                    "created_at": _now(),
                    "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
                }
            )
            created.append(version)

        self._rewrite(mutate)
        return created[0]

    def retire(self, version: int) -> None:
        def mutate(document: dict[str, object]) -> None:
            keks = document["keks"]
            assert isinstance(keks, list)
            for entry in keks:
                if entry["version"] == version:
                    if entry["state"] != "decrypt_only":
                        raise KeyringError(
                            f"KEK v{version} is {entry['state']}; only decrypt_only can retire"
                        )
                    entry["state"] = "retired"
                    entry["retired_at"] = _now()
                    entry.pop("key", None)
                    return
            raise KeyringError(f"KEK v{version} does not exist")

        self._rewrite(mutate)


class _Mutation(Protocol):
    def __call__(self, document: dict[str, object]) -> None: ...


def _atomic_write_private(path: Path, document: dict[str, object]) -> None:
    """Write via a 0600 temp file + fsync + rename, so a crash leaves the old or the new keyring, whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keyring-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class EnvKeyring(_InMemoryKeyring):
    """Container provider: the whole keyring document, base64-encoded JSON, in ``CDP_KEYRING_DATA``
    (typically injected from a secret store). Read-only: rotate by deploying a document with a new
    active KEK and the old one as ``decrypt_only``, then run ``cdp keys rotate``."""

    def __init__(self, data: str) -> None:
        if not data:
            raise KeyringError("CDP_KEYRING=env but CDP_KEYRING_DATA is empty")
        try:
            document = json.loads(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            raise KeyringError("CDP_KEYRING_DATA is not base64-encoded keyring JSON") from None
        super().__init__(document, "CDP_KEYRING_DATA")


def encode_for_env(document: dict[str, object]) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()
