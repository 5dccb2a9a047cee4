"""Blind indexes: keyed HMAC-SHA256 tokens of normalized values.

They give exact lookup ("who has this email?") and identity-resolution blocking without any plaintext in
the database. The key is separate from the KEKs, and each kind of value (email, phone, …) gets its own
sub-key derived with HKDF, so equal strings of different kinds never share a token.

Tokens are truncated to 128 bits: collisions stay negligible at any realistic scale, and a token is only a
pointer — the record is always decrypted and compared before a match is trusted.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_BYTES = 16
_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class BlindIndexer:
    def __init__(self, master_key: bytes) -> None:
        self._master = master_key
        self._kind_keys: dict[str, bytes] = {}

    def _key(self, kind: str) -> bytes:
        key = self._kind_keys.get(kind)
        if key is None:
            if not kind or len(kind) > 32 or not set(kind) <= _KIND_CHARS:
                raise ValueError("blind index kind must be 1-32 chars of [a-z0-9_]")
            key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"cdp-blind/1/" + kind.encode()
            ).derive(self._master)
            self._kind_keys[kind] = key
        return key

    def token(self, kind: str, normalized_value: str) -> bytes:
        """The token of an already-normalized value. Normalization is the caller's job, because what
        counts as "the same" email or phone is identity-resolution policy, not cryptography."""
        return hmac.digest(self._key(kind), normalized_value.encode("utf-8"), sha256)[:TOKEN_BYTES]

    def fingerprint(self, kind: str, content: bytes) -> bytes:
        """Keyed hash of arbitrary content (change detection without keeping or revealing the content)."""
        return hmac.digest(self._key(kind), content, sha256)[:TOKEN_BYTES]
