"""A field policy change is on the audit record: each distinct policy content is recorded once."""

from __future__ import annotations

import json
from importlib import resources

from sqlalchemy import select

from cdp.access.activation import record_policy_in_force
from cdp.access.policy import FieldPolicy
from cdp.audit.sequencer import seal
from cdp.db.models import AuditEntry
from cdp.platform import Platform


def _activations(platform: Platform) -> list[dict[str, object]]:
    with platform.db.read() as session:
        rows = session.execute(
            select(AuditEntry.details)
            .where(AuditEntry.action == "policy.activate")
            .order_by(AuditEntry.recorded_at)
        ).scalars()
        return [json.loads(details) for details in rows]


def test_the_policy_in_force_is_recorded_once_per_content(platform: Platform) -> None:
    policy = FieldPolicy.default()
    assert record_policy_in_force(platform.db, policy)
    assert not record_policy_in_force(platform.db, policy)  # still pending: matched by its subject list
    seal(platform.db)
    assert not record_policy_in_force(platform.db, policy)  # sealed: matched through the index
    assert _activations(platform) == [
        {"policy": "field_policy", "version": policy.version, "digest": policy.digest}
    ]


def test_the_digest_follows_the_rules_not_the_layout() -> None:
    policy = FieldPolicy.default()
    assert len(policy.digest) == 64
    source = resources.files("cdp.access").joinpath("field_policy.toml").read_text(encoding="utf-8")
    assert FieldPolicy.from_toml(source + "\n\n# a comment\n").digest == policy.digest
    changed = FieldPolicy.from_toml(source.replace("version = 1", "version = 2", 1))
    assert changed.digest != policy.digest


def test_a_new_policy_version_on_an_existing_log_is_recorded(platform: Platform) -> None:
    source = resources.files("cdp.access").joinpath("field_policy.toml").read_text(encoding="utf-8")
    first = FieldPolicy.from_toml(source)
    second = FieldPolicy.from_toml(source.replace("version = 1", "version = 2", 1))
    assert record_policy_in_force(platform.db, first)
    assert record_policy_in_force(platform.db, second)
    assert [a["version"] for a in _activations(platform)] == [1, 2]
