"""Masked forms of attribute values: enough to recognise a value the reader already knows (a caller
reading out their email, the last digits of a card-style number), too little to learn it.

Masks never reveal length: the hidden part is always ``***``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

HIDDEN = "***"


def _initial(value: str) -> str:
    text = value.strip()
    return f"{text[0]}{HIDDEN}" if text else HIDDEN


def mask_email(value: str) -> str:
    """``j***@example.com``: the first character of the local part and the domain."""
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return HIDDEN
    return f"{local[0]}{HIDDEN}@{domain}"


def _last_four(value: str) -> str:
    characters = [c for c in value if c.isalnum()]
    if len(characters) <= 4:
        return HIDDEN
    return f"{HIDDEN}{''.join(characters[-4:])}"


def mask_date_of_birth(value: date | str) -> str:
    """The year alone: age bands and plausibility checks still work."""
    year = value.year if isinstance(value, date) else str(value)[:4]
    return f"{year}-**-**"


def mask_postcode(value: str) -> str:
    """The outward part (``SW1A ***``) or the first two characters: the area, not the street."""
    text = value.strip()
    outward, space, _ = text.partition(" ")
    if space and outward:
        return f"{outward} {HIDDEN}"
    return f"{text[:2]}{HIDDEN}" if len(text) > 2 else HIDDEN


def mask_attributes(value: Mapping[str, Any]) -> dict[str, str]:
    """Which extra attributes exist, not what they hold."""
    return {str(key): HIDDEN for key in value}


_MASKS: dict[str, Callable[[Any], Any]] = {
    "email": mask_email,
    "phone": _last_four,
    "national_id": _last_four,
    "date_of_birth": mask_date_of_birth,
    "postcode": mask_postcode,
    "street_number": lambda _value: HIDDEN,
    "address_line1": lambda _value: HIDDEN,
    "address_line2": lambda _value: HIDDEN,
    "attributes": mask_attributes,
}


def mask(field: str, value: Any) -> Any:
    """The masked form of ``value`` for ``field``; names, cities and the like keep their initial."""
    if value is None:
        return None
    masker = _MASKS.get(field)
    if masker is not None:
        return masker(value)
    return _initial(str(value))
