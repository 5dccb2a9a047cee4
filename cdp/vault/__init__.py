"""The vault: the only code that touches keys and ciphers.

Everything else hands the vault plaintext and gets ciphertext back (and the reverse), through
:class:`Vault`. See SECURITY.md for the key hierarchy.
"""

from __future__ import annotations

from cdp.config import Settings
from cdp.vault.blind_index import BlindIndexer
from cdp.vault.cipher import FieldCipher
from cdp.vault.errors import (
    DecryptionError,
    KeyNotAvailable,
    KeyringError,
    SubjectShredded,
    VaultError,
)
from cdp.vault.keyring import EnvKeyring, FileKeyring, KeyEncryptionKeys
from cdp.vault.subject_keys import SubjectKeys, WrappedKey

__all__ = [
    "BlindIndexer",
    "DecryptionError",
    "FieldCipher",
    "KeyEncryptionKeys",
    "KeyNotAvailable",
    "KeyringError",
    "SubjectKeys",
    "SubjectShredded",
    "Vault",
    "VaultError",
    "WrappedKey",
    "open_keyring",
]


class Vault:
    """Data keys plus blind indexes over one keyring."""

    def __init__(self, keks: KeyEncryptionKeys) -> None:
        self.keks = keks
        self.keys = SubjectKeys(keks)
        self.blind = BlindIndexer(keks.blind_index_key())

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        return cls(open_keyring(settings))


def open_keyring(settings: Settings) -> KeyEncryptionKeys:
    """The configured KEK provider. An external KMS/HSM plugs in here behind KeyEncryptionKeys."""
    kind = settings.keyring_kind
    if kind == "file":
        return FileKeyring(settings.keyring_path)
    if kind == "env":
        return EnvKeyring(settings.keyring_data)
    raise KeyringError(f"unknown keyring source {settings.keyring!r}; use 'file:/path' or 'env'")
