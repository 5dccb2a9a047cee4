"""The canonical customer attributes every source is mapped onto — one list for the whole platform.

A module of its own with no imports, so the domain (golden profiles, matching), the storage layer and the
benchmarks share it without pulling in each other.
"""

from __future__ import annotations

from typing import Final

CANONICAL_FIELDS: Final[tuple[str, ...]] = (
    "first_name",
    "last_name",
    "full_name",
    "date_of_birth",
    "email",
    "phone",
    "street_number",
    "address_line1",
    "address_line2",
    "city",
    "postcode",
    "state",
    "country",
    "national_id",
)
