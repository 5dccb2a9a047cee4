"""The keys' status over HTTP, for compliance officers and the DPO (``audit:read``).

An auditor must be able to show that personal data is encrypted under keys that are rotated, that
erased customers' data keys are really gone (crypto-shredding) and which keys sign tokens and audit
checkpoints — without an operator's shell. So this answers what ``cdp keys status`` prints plus the
signing keys' public metadata, and never anything secret: no KEK, no data key, no private half, not
even the public keys (those are published where a verifier needs them: the JWKS and the audit
checkpoints), only ids, versions, states, dates and counts.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from api.context import current_platform
from api.oauth import require_scope
from api.smorest import Blueprint
from cdp.audit import AuditEvent, record_now
from cdp.audit.canonical import timestamp
from cdp.db.models import AuditSigningKey, SigningKey
from cdp.vault import rotation

blp = Blueprint(
    "keys",
    __name__,
    url_prefix="/v1/keys",
    description="Key status: KEK versions, the data keys they wrap, crypto-shredded subjects, signing keys",
)

_AUDIT = [{"oauth2": ["audit:read"]}]
_TIME = {"format": "date-time"}


# -- schemas ------------------------------------------------------------------------------------------


class KekSchema(ma.Schema):
    version = ma.fields.Integer()
    state = ma.fields.String(
        metadata={
            "description": "`active` (wraps new data keys), `decrypt_only` (being rotated away), `retired` "
            "(material destroyed) or `missing` (data keys name a version the keyring does not know)"
        }
    )
    active = ma.fields.Boolean()
    data_keys = ma.fields.Integer(metadata={"description": "Data keys wrapped under this version"})
    created_at = ma.fields.String(allow_none=True, metadata=_TIME)


class TokenSigningKeySchema(ma.Schema):
    kid = ma.fields.String(metadata={"description": "Key id, as in the JWKS and every token's header"})
    alg = ma.fields.String()
    created_at = ma.fields.String(metadata=_TIME)
    signing_until = ma.fields.String(
        allow_none=True, metadata={**_TIME, "description": "When a newer key took over; null: the signer"}
    )
    signing = ma.fields.Boolean(metadata={"description": "Signs new tokens now"})


class CheckpointKeySchema(ma.Schema):
    key_id = ma.fields.String(metadata={"description": "As named by each checkpoint it signed"})
    algorithm = ma.fields.String()
    created_at = ma.fields.String(metadata=_TIME)
    retired_at = ma.fields.String(allow_none=True, metadata=_TIME)
    signing = ma.fields.Boolean(metadata={"description": "Signs new checkpoints and receipts now"})


class KeyStatusSchema(ma.Schema):
    active_kek_version = ma.fields.Integer()
    keks = ma.fields.List(ma.fields.Nested(KekSchema), metadata={"description": "By version"})
    shredded_subjects = ma.fields.Integer(
        metadata={"description": "Key holders whose data key was destroyed (crypto-shredded)"}
    )
    pending_rewrap = ma.fields.Integer(
        metadata={"description": "Data keys not yet under the active KEK: a rotation is in progress"}
    )
    rotation_in_progress = ma.fields.Boolean()
    token_signing_keys = ma.fields.List(
        ma.fields.Nested(TokenSigningKeySchema), metadata={"description": "Newest first"}
    )
    checkpoint_signing_keys = ma.fields.List(
        ma.fields.Nested(CheckpointKeySchema), metadata={"description": "Newest first"}
    )


# -- the view -----------------------------------------------------------------------------------------


def _signing_keys() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Public metadata of the token and checkpoint signing keys, read column by column so that no
    encrypted private half is even loaded."""
    with current_platform().db.read() as session:
        tokens = session.execute(
            select(SigningKey.kid, SigningKey.alg, SigningKey.created_at, SigningKey.signing_until).order_by(
                SigningKey.created_at.desc()
            )
        ).all()
        checkpoints = session.execute(
            select(AuditSigningKey.key_id, AuditSigningKey.created_at, AuditSigningKey.retired_at).order_by(
                AuditSigningKey.created_at.desc()
            )
        ).all()
    return (
        [
            {
                "kid": kid,
                "alg": alg,
                "created_at": timestamp(created),
                "signing_until": timestamp(until) if until is not None else None,
                "signing": until is None,
            }
            for kid, alg, created, until in tokens
        ],
        [
            {
                "key_id": key_id,
                "algorithm": "Ed25519",
                "created_at": timestamp(created),
                "retired_at": timestamp(retired) if retired is not None else None,
                "signing": retired is None,
            }
            for key_id, created, retired in checkpoints
        ],
    )


@blp.route("/status", methods=["GET"])
@require_scope("audit:read", "key.status")
@blp.response(200, KeyStatusSchema)
@blp.doc(security=_AUDIT)
def key_status() -> ResponseReturnValue:
    """KEK versions with their state and how many data keys each wraps, crypto-shredded subjects, a
    rotation in progress, and the token and checkpoint signing keys (ids and dates; never key material).
    """
    platform = current_platform()
    status = rotation.status(platform.db, platform.vault)
    created = {info.version: info.created_at or None for info in platform.vault.keks.versions()}
    keks = [
        {
            "version": version,
            "state": state,
            "active": version == status.active_kek_version,
            "data_keys": count,
            "created_at": created.get(version),
        }
        for version, state, count in sorted(status.keks)
    ]
    token_keys, checkpoint_keys = _signing_keys()
    record_now(
        platform.db,
        AuditEvent(
            "key.status",
            details={
                "active_kek_version": status.active_kek_version,
                "keks": len(keks),
                "pending_rewrap": status.pending_rewrap,
            },
        ),
    )
    return {
        "active_kek_version": status.active_kek_version,
        "keks": keks,
        "shredded_subjects": status.shredded_subjects,
        "pending_rewrap": status.pending_rewrap,
        "rotation_in_progress": status.pending_rewrap > 0,
        "token_signing_keys": token_keys,
        "checkpoint_signing_keys": checkpoint_keys,
    }
