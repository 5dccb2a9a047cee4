"""Typed plaintext encoding for field values, so a decrypt gives back the same Python type.

Each value is a one-byte type tag plus a canonical payload. Strings round-trip exactly, lone
surrogates included (a quarantined row keeps undecodable source bytes as surrogate escapes).
``None`` is encoded (and so encrypted) too: storing NULL for absent fields would tell a database reader
which customers have, say, a national id.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cdp.vault.errors import DecryptionError

FieldValue = str | int | float | bool | date | datetime | Decimal | bytes | dict[str, Any] | list[Any] | None

_NONE, _STR, _INT, _FLOAT, _TRUE, _FALSE = b"n", b"s", b"i", b"f", b"T", b"F"
_DATE, _DATETIME, _DECIMAL, _BYTES, _JSON = b"d", b"t", b"D", b"y", b"j"


def encode(value: FieldValue) -> bytes:
    # bool before int (bool is an int) and datetime before date (datetime is a date).
    if value is None:
        return _NONE
    if isinstance(value, str):
        return _STR + value.encode("utf-8", errors="surrogatepass")
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, int):
        return _INT + str(value).encode()
    if isinstance(value, float):
        return _FLOAT + repr(value).encode()
    if isinstance(value, datetime):
        return _DATETIME + value.isoformat().encode()
    if isinstance(value, date):
        return _DATE + value.isoformat().encode()
    if isinstance(value, Decimal):
        return _DECIMAL + str(value).encode()
    if isinstance(value, bytes):
        return _BYTES + value
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return _JSON + text.encode("utf-8", errors="surrogatepass")
    raise TypeError(f"cannot store values of type {type(value).__name__} in the vault")


def decode(payload: bytes) -> FieldValue:
    tag, body = payload[:1], payload[1:]
    try:
        if tag == _NONE:
            return None
        if tag == _STR:
            return body.decode("utf-8", errors="surrogatepass")
        if tag == _TRUE:
            return True
        if tag == _FALSE:
            return False
        if tag == _INT:
            return int(body)
        if tag == _FLOAT:
            return float(body)
        if tag == _DATETIME:
            return datetime.fromisoformat(body.decode())
        if tag == _DATE:
            return date.fromisoformat(body.decode())
        if tag == _DECIMAL:
            return Decimal(body.decode())
        if tag == _BYTES:
            return body
        if tag == _JSON:
            decoded: dict[str, Any] | list[Any] = json.loads(body.decode("utf-8", errors="surrogatepass"))
            return decoded
    except (ValueError, UnicodeDecodeError):
        pass
    raise DecryptionError("decrypted payload has an unknown or malformed type encoding")
