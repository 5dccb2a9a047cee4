"""Finished exports at rest: encrypted, fetched once through a secret link, then crypto-shredded.

An export is the whole of a customer's data in one file, so it is kept no longer than it takes the
customer to fetch it, and only as ciphertext:

* each archive is encrypted by the vault's :class:`~cdp.vault.cipher.FieldCipher` under a data key of its
  own (a ``subject`` row as key holder, like the signing keys), so destroying that one key destroys the
  archive, wherever copies of the database or its backups went;
* the download link carries a random 256-bit token; only its SHA-256 is stored, so a database reader
  cannot fetch anything;
* :meth:`ArchiveStore.redeem` hands the archive out once: in the same transaction it marks it downloaded,
  drops the ciphertext and shreds its key, and a concurrent second redemption finds nothing to claim;
* :meth:`ArchiveStore.expire` (a scheduled job) shreds archives nobody fetched in time.

An unknown, expired or already used token gets the same :class:`DownloadUnavailable`, with the same
message, so probing links learns nothing about which exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, record
from cdp.db.models import DsrRequest, ExportArchive
from cdp.db.types import utcnow
from cdp.dsr.export import ExportBundle
from cdp.errors import CdpError
from cdp.vault import Vault
from cdp.vault.subjects import SubjectStore

TABLE = "export_archive"
FIELD = "archive"
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 128
"""Tokens are 43 characters; anything much longer is refused before it is hashed."""
_UNAVAILABLE = "this download link is not valid: it is unknown, expired or already used"


class DownloadUnavailable(CdpError):
    """The token is unknown, expired or already used; one message for all three on purpose."""

    def __init__(self) -> None:
        super().__init__(_UNAVAILABLE)


class ArchiveIntegrityError(CdpError):
    """A decrypted archive does not match the SHA-256 recorded when it was stored."""


@dataclass(frozen=True)
class ExportArchiveInfo:
    """An archive's metadata (no content): what a download response and the DPO's view need."""

    id: uuid.UUID
    request_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    downloaded_at: datetime | None
    size: int
    sha256: str


def token_hash(token: str) -> bytes:
    """What is stored of a download token: its SHA-256. The token is 256 random bits, so a plain hash
    (no key, no stretching) cannot be reversed or guessed."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def _info(row: ExportArchive) -> ExportArchiveInfo:
    return ExportArchiveInfo(
        row.id, row.request_id, row.created_at, row.expires_at, row.downloaded_at, row.size, row.sha256
    )


class ArchiveStore:
    """Archives in ``session``'s transaction: the caller's unit of work commits or rolls back the lot."""

    def __init__(self, session: Session, vault: Vault) -> None:
        self.session = session
        self.subjects = SubjectStore(session, vault.keys)

    def store(self, request_id: uuid.UUID, bundle: ExportBundle, *, ttl: timedelta) -> tuple[uuid.UUID, str]:
        """Encrypt and keep ``bundle`` for ``ttl``; returns the archive id and the download token. The
        token is shown once: only its hash is kept, so a lost token means building a new export."""
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        if hashlib.sha256(bundle.content).hexdigest() != bundle.sha256:
            raise ArchiveIntegrityError("the export's content does not match its SHA-256")
        archive_id = uuid.uuid4()
        subject_id, cipher = self.subjects.create()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = utcnow()
        self.session.add(
            ExportArchive(
                id=archive_id,
                request_id=request_id,
                subject_id=subject_id,
                token_hash=token_hash(token),
                created_at=now,
                expires_at=now + ttl,
                downloaded_at=None,
                size=len(bundle.content),
                sha256=bundle.sha256,
                enc_archive=cipher.encrypt(TABLE, str(archive_id), FIELD, bundle.content),
            )
        )
        self.session.flush()
        return archive_id, token

    def get(self, archive_id: uuid.UUID) -> ExportArchiveInfo | None:
        row = self.session.get(ExportArchive, archive_id)
        return _info(row) if row is not None else None

    def redeem(self, token: str, *, now: datetime | None = None) -> tuple[ExportArchiveInfo, bytes]:
        """The archive behind ``token``, once. In this transaction it is marked downloaded, its
        ciphertext dropped and its key shredded, and the download is audited (``dsr.export.download``);
        if the transaction rolls back, none of that happened and the link still works."""
        moment = now or utcnow()
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise DownloadUnavailable()
        digest = token_hash(token)
        row = self.session.execute(
            select(ExportArchive).where(ExportArchive.token_hash == digest)
        ).scalar_one_or_none()
        if (
            row is None
            or not hmac.compare_digest(row.token_hash, digest)
            or row.downloaded_at is not None
            or row.enc_archive is None
            or row.expires_at <= moment
        ):
            raise DownloadUnavailable()
        blob, subject_id = row.enc_archive, row.subject_id
        # Claim it first, guarded on "not yet downloaded": of two concurrent redemptions, the second
        # waits on the first's row lock (PostgreSQL) or write lock (SQLite) and then updates nothing.
        claimed = self.session.execute(
            update(ExportArchive)
            .where(
                ExportArchive.id == row.id,
                ExportArchive.downloaded_at.is_(None),
                ExportArchive.enc_archive.is_not(None),
            )
            .values(downloaded_at=moment, enc_archive=None)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise DownloadUnavailable()
        content = self.subjects.open(subject_id).decrypt(TABLE, str(row.id), FIELD, blob)
        if not isinstance(content, bytes) or hashlib.sha256(content).hexdigest() != row.sha256:
            raise ArchiveIntegrityError(f"export archive {row.id} does not match its recorded SHA-256")
        self.subjects.shred([subject_id])
        self.session.refresh(row)
        entity_id = self.session.execute(
            select(DsrRequest.entity_id).where(DsrRequest.id == row.request_id)
        ).scalar_one_or_none()
        record(
            self.session,
            AuditEvent(
                "dsr.export.download",
                subjects=(*((str(entity_id),) if entity_id else ()), str(row.id)),
                details={"request_id": str(row.request_id), "size": row.size, "sha256": row.sha256},
            ),
        )
        return _info(row), content

    def expire(self, *, now: datetime | None = None) -> int:
        """Shred every archive past its expiry that was never downloaded; returns how many. Safe to run
        any number of times (a scheduled job): a shredded archive is not picked up again."""
        moment = now or utcnow()
        rows = self.session.execute(
            select(ExportArchive.id, ExportArchive.subject_id).where(
                ExportArchive.expires_at <= moment,
                ExportArchive.downloaded_at.is_(None),
                ExportArchive.enc_archive.is_not(None),
            )
        ).all()
        if not rows:
            return 0
        ids = [row.id for row in rows]
        self.session.execute(
            update(ExportArchive)
            .where(ExportArchive.id.in_(ids), ExportArchive.enc_archive.is_not(None))
            .values(enc_archive=None)
            .execution_options(synchronize_session=False)
        )
        self.subjects.shred([row.subject_id for row in rows])
        return len(ids)
