"""Errors that cross package boundaries.

Every message here is shown to operators and API clients, so none may carry plaintext PII: they name
tables, fields, ids and key versions, never values.
"""


class CdpError(Exception):
    """Base of every error the platform raises on purpose; the CLI prints these as one line."""


class ConfigurationError(CdpError):
    """The settings, key file or environment are unusable; the message says how to fix it."""


class DatabaseUnavailable(CdpError):
    """The configured database cannot be reached or opened."""
