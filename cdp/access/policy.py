"""Field-level access policy as data: role and attribute → clear | masked | denied, and purposes.

The policy is a versioned TOML document (``field_policy.toml`` by default). Loading it checks every key
and names the bad one, so a typo can never silently widen access: an unknown role, attribute, mode or
purpose is an error, an attribute a role does not list is denied, and every role the platform knows
(:data:`cdp.access.roles.ROLE_SCOPES`) must be covered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cdp.access.roles import ROLE_SCOPES
from cdp.canonical import CANONICAL_FIELDS
from cdp.errors import CdpError

PROFILE_FIELDS: tuple[str, ...] = (*CANONICAL_FIELDS, "attributes", "interactions", "interaction_content")
"""Everything a profile read can disclose, in response order."""

TIMELINE_FIELDS = frozenset({"interactions", "interaction_content"})
_UNMASKABLE = TIMELINE_FIELDS
"""A contact history is shown or not; half an interaction would mislead more than it protects."""


class Mode(StrEnum):
    CLEAR = "clear"
    MASKED = "masked"
    DENIED = "denied"


class Reason(StrEnum):
    """Why a field was masked or left out: the three gates of a read, in order."""

    ROLE_POLICY = "role_policy"
    PURPOSE = "purpose"
    CONSENT = "consent"


class PolicyConfigError(CdpError, ValueError):
    """The policy document is invalid; the message names the key path."""


@dataclass(frozen=True)
class Purpose:
    name: str
    description: str
    needs: frozenset[str]


@dataclass(frozen=True)
class RolePolicy:
    role: str
    purposes: frozenset[str]
    fields: Mapping[str, Mode]
    department_scoped: bool = False
    """Sees only what the principal's own department holds (its records and interactions)."""
    self_only: bool = False
    """Reads only the principal's own profile (customers)."""

    def mode(self, field: str) -> Mode:
        return self.fields.get(field, Mode.DENIED)


@dataclass(frozen=True)
class FieldDecision:
    """How one field is disclosed, and if not in clear, which rule decided it (readable by a person)."""

    field: str
    mode: Mode
    reason: Reason | None = None
    rule: str | None = None

    @property
    def disclosed(self) -> bool:
        return self.mode is not Mode.DENIED

    def to_dict(self) -> dict[str, str]:
        out = {"field": self.field, "mode": "omitted" if self.mode is Mode.DENIED else self.mode.value}
        if self.reason is not None:
            out["reason"] = self.reason.value
        if self.rule is not None:
            out["rule"] = self.rule
        return out


_DECIDED_LIMIT = 1024


@dataclass(frozen=True)
class FieldPolicy:
    version: int
    purposes: Mapping[str, Purpose]
    roles: Mapping[str, RolePolicy]
    digest: str = ""
    """SHA-256 of the policy's content (not its layout): which rules were in force, for the audit log."""
    _decided: dict[tuple[str, str, tuple[str, ...]], Mapping[str, FieldDecision]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def default(cls) -> FieldPolicy:
        text = resources.files("cdp.access").joinpath("field_policy.toml").read_text(encoding="utf-8")
        return cls.from_toml(text)

    @classmethod
    def from_file(cls, path: Path) -> FieldPolicy:
        try:
            return cls.from_toml(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyConfigError(f"cannot read policy file {path}: {exc.strerror}") from None

    @classmethod
    def from_toml(cls, text: str) -> FieldPolicy:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyConfigError(f"policy is not valid TOML: {exc}") from None
        return cls.from_mapping(document)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any]) -> FieldPolicy:
        _only(document, {"version", "purposes", "roles"}, "")
        version = document.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise PolicyConfigError("version: must be a positive integer")
        purposes = {
            name: _purpose(name, value)
            for name, value in _table(document.get("purposes"), "purposes").items()
        }
        roles = {
            name: _role(name, value, purposes)
            for name, value in _table(document.get("roles"), "roles").items()
        }
        unknown = sorted(set(roles) - set(ROLE_SCOPES))
        if unknown:
            raise PolicyConfigError(
                f"roles.{unknown[0]}: unknown role; roles: {', '.join(sorted(ROLE_SCOPES))}"
            )
        missing = sorted(set(ROLE_SCOPES) - set(roles))
        if missing:
            raise PolicyConfigError(
                f"roles.{missing[0]}: every role needs a policy (an empty one denies everything)"
            )
        content = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
        return cls(version, purposes, roles, hashlib.sha256(content.encode("utf-8")).hexdigest())

    def role(self, role: str) -> RolePolicy | None:
        return self.roles.get(role)

    def decide_all(self, role: str, purpose: str, fields: tuple[str, ...]) -> Mapping[str, FieldDecision]:
        """:meth:`decide` for each of ``fields``, remembered: the answer depends on the policy alone,
        which never changes (a new policy is a new object), and every profile read asks it."""
        key = (role, purpose, fields)
        found = self._decided.get(key)
        if found is None:
            if len(self._decided) >= _DECIDED_LIMIT:  # callers choose ``fields``: keep the memo bounded
                self._decided.clear()
            found = MappingProxyType({name: self.decide(role, purpose, name) for name in fields})
            self._decided[key] = found
        return found

    def decide(self, role: str, purpose: str, field: str) -> FieldDecision:
        """Role policy, then purpose. Unknown roles, purposes and fields are denied (deny by default)."""
        policy = self.roles.get(role)
        if policy is None or field not in PROFILE_FIELDS:
            return FieldDecision(field, Mode.DENIED, Reason.ROLE_POLICY, f"no policy for role {role!r}")
        mode = policy.mode(field)
        if mode is Mode.DENIED:
            rule = (
                f"roles.{role}.fields.{field} = denied"
                if field in policy.fields
                else f"roles.{role}.fields has no {field} (default deny)"
            )
            return FieldDecision(field, Mode.DENIED, Reason.ROLE_POLICY, rule)
        needed = self.purposes.get(purpose)
        if needed is None or purpose not in policy.purposes:
            return FieldDecision(field, Mode.DENIED, Reason.PURPOSE, f"purpose {purpose!r} not allowed")
        if field not in needed.needs:
            return FieldDecision(
                field, Mode.DENIED, Reason.PURPOSE, f"purposes.{purpose}.needs has no {field}"
            )
        if mode is Mode.MASKED:
            return FieldDecision(
                field, Mode.MASKED, Reason.ROLE_POLICY, f"roles.{role}.fields.{field} = masked"
            )
        return FieldDecision(field, Mode.CLEAR)


def _table(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyConfigError(f"{path}: must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise PolicyConfigError(f"{where}: unknown key; expected one of {', '.join(sorted(allowed))}")


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyConfigError(f"{path}: must be a list of strings")
    return list(value)


def _purpose(name: str, value: Any) -> Purpose:
    path = f"purposes.{name}"
    table = _table(value, path)
    _only(table, {"description", "needs"}, path)
    description = table.get("description", "")
    if not isinstance(description, str):
        raise PolicyConfigError(f"{path}.description: must be a string")
    needs = _string_list(table.get("needs", []), f"{path}.needs")
    for index, field in enumerate(needs):
        if field not in PROFILE_FIELDS:
            raise PolicyConfigError(f"{path}.needs[{index}]: unknown attribute {field!r}")
    return Purpose(name, description, frozenset(needs))


def _role(name: str, value: Any, purposes: Mapping[str, Purpose]) -> RolePolicy:
    path = f"roles.{name}"
    table = _table(value, path)
    _only(table, {"purposes", "fields", "department_scoped", "self_only"}, path)
    allowed = _string_list(table.get("purposes", []), f"{path}.purposes")
    for index, purpose in enumerate(allowed):
        if purpose not in purposes:
            raise PolicyConfigError(f"{path}.purposes[{index}]: unknown purpose {purpose!r}")
    fields: dict[str, Mode] = {}
    for field, raw in _table(table.get("fields"), f"{path}.fields").items():
        where = f"{path}.fields.{field}"
        if field not in PROFILE_FIELDS:
            raise PolicyConfigError(f"{where}: unknown attribute")
        try:
            mode = Mode(raw)
        except ValueError:
            raise PolicyConfigError(f"{where}: must be one of clear, masked, denied") from None
        if mode is Mode.MASKED and field in _UNMASKABLE:
            raise PolicyConfigError(f"{where}: cannot be masked, only clear or denied")
        fields[field] = mode
    flags = {}
    for flag in ("department_scoped", "self_only"):
        raw = table.get(flag, False)
        if not isinstance(raw, bool):
            raise PolicyConfigError(f"{path}.{flag}: must be true or false")
        flags[flag] = raw
    if flags["self_only"] and flags["department_scoped"]:
        raise PolicyConfigError(f"{path}: self_only and department_scoped exclude each other")
    return RolePolicy(name, frozenset(allowed), fields, **flags)
