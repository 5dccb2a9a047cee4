"""Vault errors. They name tables, fields, ids and key versions — never a plaintext value."""

from cdp.errors import CdpError, ConfigurationError


class VaultError(CdpError):
    """Base for every failure inside the vault."""


class DecryptionError(VaultError):
    """A ciphertext failed authentication: tampered, copied to another row/field, or wrong key."""


class SubjectShredded(VaultError):
    """The subject's data key was destroyed, so its fields are unrecoverable by design."""


class KeyNotAvailable(VaultError):
    """A key version is referenced that the keyring does not (or no longer) hold."""


class KeyringError(ConfigurationError):
    """The keyring source is missing, unsafe or malformed."""
