"""Token-signing keys (ES256): generated here, private halves encrypted at rest, public halves published.

Each private key is encrypted under a data key of its own (a subject row as key holder), so it is covered
by KEK rotation and can be crypto-shredded like any other secret. Rotation makes a new key the signer;
the previous one stays published (JWKS) until every token it signed has expired.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cdp.db.models import SigningKey
from cdp.db.types import utcnow
from cdp.vault import Vault
from cdp.vault.subjects import SubjectStore

ALG = "ES256"
TABLE = "signing_key"


@dataclass(frozen=True)
class SigningMaterial:
    kid: str
    private_key: ECKey


class SigningKeys:
    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.vault = vault
        self.subjects = SubjectStore(session, vault.keys)

    def _create(self) -> SigningMaterial:
        kid = secrets.token_urlsafe(12)
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"}, private=True)
        subject_id, cipher = self.subjects.create()
        self.session.add(
            SigningKey(
                kid=kid,
                alg=ALG,
                public_jwk=json.dumps(key.as_dict(private=False), sort_keys=True),
                subject_id=subject_id,
                enc_private=cipher.encrypt(TABLE, kid, "private", key.as_pem(private=True)),
                created_at=utcnow(),
            )
        )
        self.session.flush()
        return SigningMaterial(kid, key)

    def active(self) -> SigningMaterial:
        """The current signer, created on first use."""
        row = self.session.execute(
            select(SigningKey)
            .where(SigningKey.signing_until.is_(None))
            .order_by(SigningKey.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            return self._create()
        cipher = self.subjects.open(row.subject_id)
        pem = cipher.decrypt(TABLE, row.kid, "private", row.enc_private)
        assert isinstance(pem, bytes)
        return SigningMaterial(
            row.kid, ECKey.import_key(pem, parameters={"kid": row.kid, "alg": ALG, "use": "sig"})
        )

    def rotate(self) -> str:
        now = utcnow()
        for row in self.session.execute(
            select(SigningKey).where(SigningKey.signing_until.is_(None))
        ).scalars():
            row.signing_until = now
        return self._create().kid

    def published(self, max_token_lifetime: timedelta) -> list[dict[str, Any]]:
        """Public keys a verifier may meet: the signer and any key that signed a still-valid token."""
        horizon: datetime = utcnow() - max_token_lifetime
        rows = self.session.execute(
            select(SigningKey.public_jwk)
            .where(or_(SigningKey.signing_until.is_(None), SigningKey.signing_until > horizon))
            .order_by(SigningKey.created_at.desc())
        ).scalars()
        return [json.loads(jwk) for jwk in rows]
