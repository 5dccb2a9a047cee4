"""Per-subject data keys (envelope encryption).

Every subject (a person as one source knows them) gets its own random 256-bit data key, stored only
wrapped by a KEK. Destroying the wrapped key crypto-shreds every field of that subject at once, which is
the primitive erasure and retention build on; merges and splits of identities never re-encrypt anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.vault.cipher import FieldCipher
from cdp.vault.errors import SubjectShredded
from cdp.vault.keyring import KeyEncryptionKeys


@dataclass(frozen=True)
class WrappedKey:
    """A subject's data key as the database holds it. ``blob`` is None once shredded."""

    key_version: int
    kek_version: int | None
    blob: bytes | None


def wrap_aad(subject_id: UUID, key_version: int, kek_version: int) -> bytes:
    """Binds a wrapped key to its subject, so swapping two subjects' key blobs fails to unwrap."""
    return b"cdp-dek/1" + subject_id.bytes + struct.pack(">II", key_version, kek_version)


class SubjectKeys:
    """Creates, opens and rewraps data keys. Unwrapped keys are cached by their wrapped form: a shredded
    subject has no wrapped form left to look up, so the cache can never outlive a shred. The cache holds
    the 32-byte keys, not cipher objects (~2.5 KB each), so it can be large without costing much memory."""

    def __init__(self, keks: KeyEncryptionKeys, cache_size: int = 131_072) -> None:
        self.keks = keks
        self._unwrap_cached = lru_cache(maxsize=cache_size)(self._unwrap)

    def new(self, subject_id: UUID) -> tuple[WrappedKey, FieldCipher]:
        data_key = AESGCM.generate_key(bit_length=256)
        kek_version = self.keks.active_version()
        blob = self.keks.wrap(kek_version, data_key, wrap_aad(subject_id, 1, kek_version))
        return WrappedKey(1, kek_version, blob), FieldCipher(str(subject_id), data_key, 1)

    def open(self, subject_id: UUID, wrapped: WrappedKey) -> FieldCipher:
        if wrapped.blob is None or wrapped.kek_version is None:
            raise SubjectShredded(f"subject {subject_id} was shredded; its data is unrecoverable")
        data_key = self._unwrap_cached(subject_id, wrapped.key_version, wrapped.kek_version, wrapped.blob)
        return FieldCipher(str(subject_id), data_key, wrapped.key_version)

    def _unwrap(self, subject_id: UUID, key_version: int, kek_version: int, blob: bytes) -> bytes:
        return self.keks.unwrap(kek_version, blob, wrap_aad(subject_id, key_version, kek_version))

    def forget_unwrapped(self) -> None:
        """Drop every cached data key from memory: after an erasure, the shredded keys must not linger in
        this process until the cache happens to evict them."""
        self._unwrap_cached.cache_clear()

    def rewrap(self, subject_id: UUID, wrapped: WrappedKey, to_kek_version: int) -> WrappedKey:
        """Re-encrypt the data key under another KEK; field ciphertexts are untouched."""
        if wrapped.blob is None or wrapped.kek_version is None:
            raise SubjectShredded(f"subject {subject_id} was shredded; nothing to rewrap")
        data_key = self.keks.unwrap(
            wrapped.kek_version, wrapped.blob, wrap_aad(subject_id, wrapped.key_version, wrapped.kek_version)
        )
        blob = self.keks.wrap(
            to_kek_version, data_key, wrap_aad(subject_id, wrapped.key_version, to_kek_version)
        )
        return WrappedKey(wrapped.key_version, to_kek_version, blob)
