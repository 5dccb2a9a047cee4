"""AES-256-GCM field encryption with the value's location bound in as associated data.

Ciphertext layout (bytes)::

    0      format version (1)
    1..4   data-key version, big-endian uint32
    5..16  random 96-bit nonce
    17..   AES-GCM ciphertext + 16-byte tag

The AAD is ``cdp-field/1`` + table + record id + field name + data-key version, each length-prefixed,
so a ciphertext copied to another row, another field or another table, or presented with a different key
version, fails authentication instead of decrypting to someone else's data.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.vault import codec
from cdp.vault.codec import FieldValue
from cdp.vault.errors import DecryptionError

FORMAT_V1 = 1
_HEADER = struct.Struct(">BI")
NONCE_BYTES = 12
_PREFIX = _HEADER.size + NONCE_BYTES


def _part(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


@lru_cache(maxsize=1024)
def _constant_part(value: str) -> bytes:
    """Table and field names come from a small fixed set: encode each once."""
    return _part(value)


def field_aad(table: str, record_id: str, field_name: str, key_version: int) -> bytes:
    return (
        b"cdp-field/1"
        + _constant_part(table)
        + _part(record_id)
        + _constant_part(field_name)
        + struct.pack(">I", key_version)
    )


_VERSION = struct.Struct(">I")


class FieldCipher:
    """Encrypts and decrypts the fields of one subject under that subject's data key."""

    __slots__ = ("_aead", "_header", "_version_suffix", "key_version", "subject_id")

    def __init__(self, subject_id: str, data_key: bytes, key_version: int) -> None:
        self.subject_id = subject_id
        self.key_version = key_version
        self._aead = AESGCM(data_key)
        self._header = _HEADER.pack(FORMAT_V1, key_version)
        self._version_suffix = _VERSION.pack(key_version)

    def encrypt_many(self, table: str, record_id: str, values: Mapping[str, FieldValue]) -> dict[str, bytes]:
        """Encrypt several fields of one record; the AAD prefix is built once (the hot path of writes)."""
        prefix = b"cdp-field/1" + _constant_part(table) + _part(record_id)
        encrypt, header, suffix = self._aead.encrypt, self._header, self._version_suffix
        out = {}
        for name, value in values.items():
            nonce = os.urandom(NONCE_BYTES)
            out[name] = (
                header + nonce + encrypt(nonce, codec.encode(value), prefix + _constant_part(name) + suffix)
            )
        return out

    def decrypt_many(self, table: str, record_id: str, blobs: Mapping[str, bytes]) -> dict[str, FieldValue]:
        """Decrypt several fields of one record (the hot path of reads). Any failure is re-checked by
        :meth:`decrypt`, so the error names exactly what is wrong with which field."""
        prefix = b"cdp-field/1" + _constant_part(table) + _part(record_id)
        decrypt, header, suffix = self._aead.decrypt, self._header, self._version_suffix
        out: dict[str, FieldValue] = {}
        for name, blob in blobs.items():
            if blob[: _HEADER.size] != header or len(blob) < _PREFIX + 16:
                out[name] = self.decrypt(table, record_id, name, blob)
                continue
            try:
                plaintext = decrypt(
                    blob[_HEADER.size : _PREFIX], blob[_PREFIX:], prefix + _constant_part(name) + suffix
                )
            except InvalidTag:
                out[name] = self.decrypt(table, record_id, name, blob)
                continue
            out[name] = codec.decode(plaintext)
        return out

    def encrypt(self, table: str, record_id: str, field_name: str, value: FieldValue) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        aad = field_aad(table, record_id, field_name, self.key_version)
        return (
            _HEADER.pack(FORMAT_V1, self.key_version)
            + nonce
            + self._aead.encrypt(nonce, codec.encode(value), aad)
        )

    def decrypt(self, table: str, record_id: str, field_name: str, blob: bytes) -> FieldValue:
        where = f"{table}.{field_name} of record {record_id}"
        if len(blob) < _PREFIX + 16:
            raise DecryptionError(f"ciphertext for {where} is truncated")
        fmt, key_version = _HEADER.unpack_from(blob)
        if fmt != FORMAT_V1:
            raise DecryptionError(f"ciphertext for {where} has unknown format {fmt}")
        if key_version != self.key_version:
            raise DecryptionError(
                f"ciphertext for {where} is under data-key v{key_version}, subject key is v{self.key_version}"
            )
        aad = field_aad(table, record_id, field_name, key_version)
        try:
            plaintext = self._aead.decrypt(blob[_HEADER.size : _PREFIX], blob[_PREFIX:], aad)
        except InvalidTag:
            raise DecryptionError(
                f"ciphertext for {where} failed authentication (tampered, moved or wrong key)"
            ) from None
        return codec.decode(plaintext)
