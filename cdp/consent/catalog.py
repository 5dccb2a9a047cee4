"""The consent purposes catalog (``purposes.toml``): purposes, lawful bases, texts and what they govern.

Policy as data, checked on load: every purpose names a known lawful basis, known channels, known profile
attributes and known read purposes, so a typo cannot silently switch consent enforcement off.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

from cdp.access.policy import PROFILE_FIELDS, FieldPolicy
from cdp.errors import CdpError


class ConsentConfigError(CdpError):
    """The purposes catalog is invalid; the message names the key."""


class LawfulBasis(StrEnum):
    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    LEGITIMATE_INTEREST = "legitimate_interest"


@dataclass(frozen=True)
class ConsentPurpose:
    name: str
    lawful_basis: LawfulBasis
    description: str
    text_version: int
    text: str
    channels: tuple[str, ...]
    read_purposes: tuple[str, ...]
    attributes: tuple[str, ...]

    @property
    def text_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def needs_grant(self) -> bool:
        return self.lawful_basis is LawfulBasis.CONSENT

    @property
    def gates_reads(self) -> bool:
        """Whether the customer's events decide reads (consent: a grant is needed; legitimate interest:
        an objection stops them). Contract and legal obligation do not depend on the customer's say."""
        return self.lawful_basis in (LawfulBasis.CONSENT, LawfulBasis.LEGITIMATE_INTEREST)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lawful_basis": self.lawful_basis.value,
            "description": self.description,
            "text_version": self.text_version,
            "text": self.text,
            "channels": list(self.channels),
            "read_purposes": list(self.read_purposes),
            "attributes": list(self.attributes),
        }


@dataclass(frozen=True)
class ConsentCatalog:
    version: int
    channels: tuple[str, ...]
    sources: tuple[str, ...]
    purposes: Mapping[str, ConsentPurpose]

    @classmethod
    def default(cls) -> ConsentCatalog:
        text = resources.files("cdp.consent").joinpath("purposes.toml").read_text(encoding="utf-8")
        return cls.from_toml(text, FieldPolicy.default())

    @classmethod
    def from_toml(cls, text: str, policy: FieldPolicy) -> ConsentCatalog:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConsentConfigError(f"consent catalog is not valid TOML: {exc}") from None
        return cls.from_mapping(document, policy)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any], policy: FieldPolicy) -> ConsentCatalog:
        unknown = sorted(set(document) - {"version", "channels", "sources", "purposes"})
        if unknown:
            raise ConsentConfigError(f"{unknown[0]}: unknown key")
        version = document.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConsentConfigError("version: must be a positive integer")
        channels = _names(document.get("channels"), "channels")
        sources = _names(document.get("sources"), "sources")
        raw = document.get("purposes")
        if not isinstance(raw, dict) or not raw:
            raise ConsentConfigError("purposes: at least one purpose is required")
        purposes = {name: _purpose(name, value, set(channels), policy) for name, value in raw.items()}
        return cls(version, tuple(channels), tuple(sources), purposes)

    def purpose(self, name: str) -> ConsentPurpose | None:
        return self.purposes.get(name)

    def governing(self, read_purpose: str) -> list[ConsentPurpose]:
        """The consent purposes whose customers' say decides a read for ``read_purpose``."""
        return [p for p in self.purposes.values() if read_purpose in p.read_purposes and p.gates_reads]


def _names(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConsentConfigError(f"{key}: must be a non-empty list of names")
    return list(value)


def _purpose(name: str, value: Any, channels: set[str], policy: FieldPolicy) -> ConsentPurpose:
    where = f"purposes.{name}"
    if not isinstance(value, dict):
        raise ConsentConfigError(f"{where}: must be a table")
    allowed = {
        "lawful_basis",
        "description",
        "text_version",
        "text",
        "channels",
        "read_purposes",
        "attributes",
    }
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConsentConfigError(f"{where}.{unknown[0]}: unknown key")
    try:
        basis = LawfulBasis(str(value.get("lawful_basis")))
    except ValueError:
        raise ConsentConfigError(
            f"{where}.lawful_basis: one of {', '.join(b.value for b in LawfulBasis)}"
        ) from None
    text_version = value.get("text_version")
    if not isinstance(text_version, int) or isinstance(text_version, bool) or text_version < 1:
        raise ConsentConfigError(f"{where}.text_version: must be a positive integer")
    for key in ("description", "text"):
        if not isinstance(value.get(key), str) or not value[key].strip():
            raise ConsentConfigError(f"{where}.{key}: must be a non-empty string")
    purpose_channels = _names(value.get("channels"), f"{where}.channels")
    if set(purpose_channels) - channels:
        raise ConsentConfigError(
            f"{where}.channels: unknown channel {sorted(set(purpose_channels) - channels)[0]}"
        )
    read_purposes = value.get("read_purposes", [])
    if not isinstance(read_purposes, list) or set(read_purposes) - set(policy.purposes):
        raise ConsentConfigError(f"{where}.read_purposes: must name purposes of the field policy")
    attributes = value.get("attributes", [])
    if not isinstance(attributes, list) or set(attributes) - set(PROFILE_FIELDS):
        raise ConsentConfigError(f"{where}.attributes: must name profile fields")
    return ConsentPurpose(
        name,
        basis,
        value["description"],
        text_version,
        value["text"],
        tuple(purpose_channels),
        tuple(read_purposes),
        tuple(attributes),
    )
