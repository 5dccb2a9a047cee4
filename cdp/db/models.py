"""Tables. Every column that could hold personal data is a ciphertext (``enc_*``) produced by the vault,
or a blind-index token; nothing here stores a name, email, phone or address in the clear."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cdp.canonical import CANONICAL_FIELDS as CANONICAL_FIELDS
from cdp.db.types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Subject(Base):
    """A person as one source knows them, holding that person's wrapped data key.

    ``wrapped_key`` NULL + ``shredded_at`` set = crypto-shredded: every ciphertext of this subject is
    permanently unreadable."""

    __tablename__ = "subject"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    kek_version: Mapped[int | None] = mapped_column(Integer, index=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    shredded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Source(Base):
    """A line-of-business system records come from (its field mapping arrives with ingestion)."""

    __tablename__ = "source"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    line_of_business: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    mapping_toml: Mapped[str | None] = mapped_column(Text)
    """The registered field mapping (configuration, no personal data)."""
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


"""The canonical customer attributes; each has an ``enc_<name>`` column on source_record."""

ENCRYPTED_RECORD_FIELDS: tuple[str, ...] = ("source_record_id", *CANONICAL_FIELDS, "attributes")


class SourceRecord(Base):
    """One customer record from one source. The natural key is (source, blind token of the source's own
    record id), so even a source's record ids — sometimes an email or a national id — stay encrypted."""

    __tablename__ = "source_record"
    __table_args__ = (UniqueConstraint("source_id", "natural_key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source.id"), index=True)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"), index=True)
    natural_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    """Keyed hash of the mapped row: re-ingesting identical data is detected without decrypting."""

    enc_source_record_id: Mapped[bytes] = mapped_column(LargeBinary)
    enc_first_name: Mapped[bytes] = mapped_column(LargeBinary)
    enc_last_name: Mapped[bytes] = mapped_column(LargeBinary)
    enc_full_name: Mapped[bytes] = mapped_column(LargeBinary)
    enc_date_of_birth: Mapped[bytes] = mapped_column(LargeBinary)
    enc_email: Mapped[bytes] = mapped_column(LargeBinary)
    enc_phone: Mapped[bytes] = mapped_column(LargeBinary)
    enc_street_number: Mapped[bytes] = mapped_column(LargeBinary)
    enc_address_line1: Mapped[bytes] = mapped_column(LargeBinary)
    enc_address_line2: Mapped[bytes] = mapped_column(LargeBinary)
    enc_city: Mapped[bytes] = mapped_column(LargeBinary)
    enc_postcode: Mapped[bytes] = mapped_column(LargeBinary)
    enc_state: Mapped[bytes] = mapped_column(LargeBinary)
    enc_country: Mapped[bytes] = mapped_column(LargeBinary)
    enc_national_id: Mapped[bytes] = mapped_column(LargeBinary)
    enc_attributes: Mapped[bytes] = mapped_column(LargeBinary)
    enc_normalized: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Normalized forms of the attributes (JSON), encrypted beside the originals."""


class BlindIndexEntry(Base):
    """(kind, token) → record: the only way to find a person by email, phone, name or postcode."""

    __tablename__ = "blind_index"
    __table_args__ = (Index("ix_blind_index_kind_token", "kind", "token"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    token: Mapped[bytes] = mapped_column(LargeBinary(16))
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), index=True
    )
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"), index=True)


class SourceRecordVersion(Base):
    """A superseded version of a source record, encrypted under the same subject key."""

    __tablename__ = "source_record_version"
    __table_args__ = (UniqueConstraint("record_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source_record.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enc_snapshot: Mapped[bytes] = mapped_column(LargeBinary)


CHANNELS = ("email", "letter", "phone", "web", "chat", "in_person")


class Interaction(Base):
    """One contact with a customer on one channel. Time, channel, direction, kind and department are
    plaintext so timelines sort and analytics group without decrypting; what was said is encrypted."""

    __tablename__ = "interaction"
    __table_args__ = (
        UniqueConstraint("source_id", "natural_key"),
        Index("ix_interaction_subject_id_occurred_at", "subject_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source.id"))
    natural_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), index=True
    )
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    department: Mapped[str] = mapped_column(String(32))
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16))
    enc_details: Mapped[bytes] = mapped_column(LargeBinary)
    """interaction id, summary, content, outcome, amount, currency, extra attributes (JSON)."""


class IngestRun(Base):
    """One ingestion of one file or API batch: progress for resuming, and the summary."""

    __tablename__ = "ingest_run"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    content_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rows_committed: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)


class QuarantinedRow(Base):
    """A row that could not be ingested, with a reason code. The raw row is encrypted under a data key
    of its own (a subject row used as key holder), so it can be shredded like any customer data."""

    __tablename__ = "quarantined_row"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source.id"), index=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ingest_run.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    row_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(String(300))
    """Names columns and rules, never values."""
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"))
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16), index=True)
    """Keyed hash of the raw row, so re-ingesting a file does not quarantine the same row twice."""
    enc_payload: Mapped[bytes] = mapped_column(LargeBinary)


class OAuthClient(Base):
    """A registered OAuth 2 client: a department service (client credentials) or a web app / third-party
    client (authorization code + PKCE). Only a SHA-256 of the secret is kept; secrets are 256-bit random,
    so a slow hash adds nothing. Public clients (a browser app) have no secret and must use PKCE."""

    __tablename__ = "oauth_client"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    client_type: Mapped[str] = mapped_column(String(16), default="confidential")
    """``confidential`` (holds a secret) or ``public`` (PKCE only, token endpoint auth ``none``)."""
    redirect_uris: Mapped[str] = mapped_column(Text, default="")
    """Space-separated redirect URIs, matched exactly (RFC 9700 §2.1)."""
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(Text)
    """Space-separated scopes the client may ask for."""
    grant_types: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """A key that signs access tokens. The private half is encrypted under a data key of its own
    (a subject row as key holder), so KEK rotation covers it like any other secret."""

    __tablename__ = "signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"))
    enc_private: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signing_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set when a newer key takes over signing; the key stays published until tokens it signed expire."""


class RevokedToken(Base):
    """Access tokens revoked before expiry (RFC 7009), by JWT id; pruned once they would have expired."""

    __tablename__ = "revoked_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Entity(Base):
    """A resolved customer: the records identity resolution (or a person) decided are one individual."""

    __tablename__ = "entity"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EntityMember(Base):
    """Which entity a source record belongs to (each record belongs to exactly one)."""

    __tablename__ = "entity_member"

    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), primary_key=True
    )
    entity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("entity.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MatchEdge(Base):
    """The match weight of one scored record pair (``record_a < record_b``), kept when it can matter:
    links, the review band and contradictions. Scores and reasons only, never values."""

    __tablename__ = "match_edge"

    record_a: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), primary_key=True
    )
    record_b: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    weight: Mapped[float] = mapped_column(Float)
    rule: Mapped[int] = mapped_column(Integer)
    """The first blocking rule that generated the pair."""
    refused: Mapped[str | None] = mapped_column(String(48))
    """Why clustering refused (or overrode a protection for) this link, if it did."""
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MatchDecision(Base):
    """A person's decision about a record pair — ``merge`` (must link) or ``split`` (must not) — which
    every later batch or incremental run respects. The latest decision about a pair replaces older ones."""

    __tablename__ = "match_decision"
    __table_args__ = (UniqueConstraint("record_a", "record_b"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    record_a: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), index=True
    )
    record_b: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MatchModelRecord(Base):
    """A trained match model: the settings it was trained with and its m/u/prior parameters (JSON).
    Exactly one is active; incremental resolution scores with it so that batch and incremental agree."""

    __tablename__ = "match_model"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settings_toml: Mapped[str] = mapped_column(Text)
    parameters: Mapped[str] = mapped_column(Text)
    records: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)


class MatchTermFrequency(Base):
    """Frozen value frequencies of a model, for term-frequency adjustment, keyed by blind-index token
    (a keyed HMAC of the value) — so common surnames are known as common without storing them."""

    __tablename__ = "match_term_frequency"

    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("match_model.id", ondelete="CASCADE"), primary_key=True
    )
    column: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    frequency: Mapped[float] = mapped_column(Float)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for bulk statements (typed, unlike ``Model.__table__``)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class StaffUser(Base):
    """A member of staff who signs in to the web apps (authorization code grant).

    The password is kept as an Argon2id PHC string. The TOTP secret, when enrolled, is encrypted under a
    data key of its own (a subject row as key holder, like a signing key), so a database dump alone
    cannot mint second factors and KEK rotation covers it."""

    __tablename__ = "staff_user"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(Text)
    """Space-separated scopes the user may be granted (within the role's ceiling)."""
    totp_subject_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("subject.id"))
    enc_totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    last_totp_step: Mapped[int | None] = mapped_column(Integer)
    """The last accepted TOTP time step: a code is accepted once, never replayed."""
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginCode(Base):
    """A one-time sign-in code sent to a customer's verified email. Only a keyed hash of the code and
    the email's blind-index token are stored; the record it signs in to is found through that token."""

    __tablename__ = "login_code"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email_token: Mapped[bytes] = mapped_column(LargeBinary(16), index=True)
    record_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("source_record.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """A message cdp would send (sign-in codes, receipts). The demo never sends anything to the network:
    the operator reads the outbox. The message is encrypted under the recipient's subject key, so erasing
    the customer shreds their messages too."""

    __tablename__ = "outbox_message"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    enc_message: Mapped[bytes] = mapped_column(LargeBinary)


class OAuthTokenFamily(Base):
    """One sign-in: the chain of refresh tokens and the access tokens issued from it. Revoking the family
    (sign-out, refresh-token reuse, disabled principal) stops every token of it at once."""

    __tablename__ = "oauth_token_family"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    principal: Mapped[str] = mapped_column(String(80), index=True)
    """``user:<uuid>`` for staff, ``customer:<record uuid>`` for a customer."""
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class OAuthRefreshToken(Base):
    """A refresh token, by SHA-256 of its value. Each use rotates it: the token is marked used and a
    successor issued in the same family; presenting a used token again revokes the family."""

    __tablename__ = "oauth_refresh_token"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_token_family.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OAuthAuthorizationCode(Base):
    """An authorization code (RFC 6749 §4.1), by SHA-256 of its value: single use, short-lived, bound to
    the client, the exact redirect URI and the PKCE S256 challenge."""

    __tablename__ = "oauth_authorization_code"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str] = mapped_column(String(80))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    nonce: Mapped[str | None] = mapped_column(String(255))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One audited operation: who (principal, role, department), why (purpose), on whom (subject ids
    only), which fields, with what outcome — never a personal value.

    The request's own transaction inserts the entry with ``seq`` NULL (pending); the sequencer
    (:mod:`cdp.audit.sequencer`) later assigns ``seq``, ``prev_hash`` and ``hash`` in chain order, so
    readers never queue on the chain head. ``subjects``, ``fields`` and ``details`` hold canonical JSON
    text: what is hashed is exactly what is stored."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index(
            "ix_audit_entry_pending",
            "recorded_at",
            sqlite_where=text("seq IS NULL"),
            postgresql_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    subjects: Mapped[str] = mapped_column(Text, default="[]")
    fields: Mapped[str] = mapped_column(Text, default="[]")
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    sealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditSubject(Base):
    """Search index of :attr:`AuditEntry.subjects` (customer, record and subject ids), written by the
    sequencer when it seals the entry (off the request path). Verification checks it against the hashed
    list, so a doctored index cannot hide an entry; searches match pending entries by their own list."""

    __tablename__ = "audit_subject"

    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("audit_entry.id", ondelete="CASCADE"), primary_key=True
    )
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class AuditSigningKey(Base):
    """An Ed25519 key that signs audit checkpoints. The private half is encrypted under a data key of its
    own (a subject row as key holder); the public half is published with every checkpoint export."""

    __tablename__ = "audit_signing_key"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    """Raw 32-byte Ed25519 public key, hex."""
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"))
    enc_private: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditCheckpoint(Base):
    """A signed statement of the chain head: "the first ``seq`` entries hash to ``head_hash``"."""

    __tablename__ = "audit_checkpoint"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(200))
    """The installation that signed it (the issuer URL), part of the signed message."""
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(ForeignKey("audit_signing_key.key_id"))
    signature: Mapped[str] = mapped_column(String(128))


class ConsentPurposeText(Base):
    """Every version of every consent text a customer may have agreed to, kept for as long as events
    refer to it: the catalog file holds only the current text."""

    __tablename__ = "consent_purpose_text"

    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    lawful_basis: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentEvent(Base):
    """A customer's say about one purpose on one channel, as it happened: append-only, never updated.

    It belongs to the source record it arrived through (a sign-up, the record a customer signed in with,
    the record staff acted on), so consent follows records through merges and splits and is never
    carried to another person. The current state is derived from these events (:mod:`cdp.consent.ledger`)."""

    __tablename__ = "consent_event"
    __table_args__ = (Index("ix_consent_event_record_purpose", "record_id", "purpose"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source_record.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    """grant | withdraw | expire"""
    purpose_version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    evidence_hash: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the canonical request (purpose, channel, action, source, time, text hash, request id)."""
    policy_version: Mapped[int] = mapped_column(Integer)
    """Version of the purposes catalog in force."""
    actor: Mapped[str] = mapped_column(String(200))


class DsrRequest(Base):
    """A data-subject request (GDPR Art 15/20 access and export, Art 17 erasure) about one customer.

    Holds ids, states and reason codes only. The customer is kept as the entity id and the record the
    request was verified against; once an erasure completes, those ids point at nothing."""

    __tablename__ = "dsr_request"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    """``access`` (export) or ``erasure``."""
    status: Mapped[str] = mapped_column(String(24), index=True)
    """received | verifying | awaiting_approval | in_progress | completed | rejected"""
    entity_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    """The record whose contact details verify the requester (the signed-in record, or the record a
    one-time code was sent to)."""
    channel: Mapped[str] = mapped_column(String(16))
    """``self_service`` (signed-in customer) or ``on_behalf`` (opened by a DPO)."""
    opened_by: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verification: Mapped[str | None] = mapped_column(String(16))
    """``signed_in`` or ``email_code``."""
    code_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    code_attempts: Mapped[int] = mapped_column(Integer, default=0)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rejected_reason: Mapped[str | None] = mapped_column(String(32))
    rejected_detail: Mapped[str | None] = mapped_column(String(300))
    """Staff's words about why; must not quote personal data (shown to the customer)."""
    queue: Mapped[str | None] = mapped_column(String(32))
    assignee: Mapped[str | None] = mapped_column(String(200))
    result_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    """The export archive (access) or the erasure receipt (erasure)."""


class ErasureJob(Base):
    """The durable plan of one destruction: what goes, what is kept and why. Written before anything is
    destroyed, so a crash between planning and execution resumes from the plan; the destruction itself
    and the job's completion commit in one transaction."""

    __tablename__ = "erasure_job"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reason: Mapped[str] = mapped_column(String(32))
    """``dsr_erasure`` or ``retention``."""
    request_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("dsr_request.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    """planned | completed"""
    plan: Mapped[str] = mapped_column(Text)
    """Canonical JSON: record ids to destroy, ids kept (with reason), whether to suppress. Ids only."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    receipt_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class Suppression(Base):
    """A keyed hash of one identifier of an erased person (email, phone, national id, name + birth date,
    or a source's own record id), so re-ingesting them from an old source is quarantined instead of
    silently bringing them back. Keyed with a sub-key of the blind-index key: the hash reveals nothing
    without it, and it never joins against the live blind index."""

    __tablename__ = "suppression"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("erasure_job.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RetainedRecord(Base):
    """What an erasure had to keep because the law requires it (billing documents under a bookkeeping
    obligation): pseudonymized — the person is a keyed hash, identifying text is gone, amounts and dates
    stay — with the reason and the date it must be destroyed in turn."""

    __tablename__ = "retained_record"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("erasure_job.id"), index=True)
    pseudonym: Mapped[bytes] = mapped_column(LargeBinary(16), index=True)
    source_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("source.id"))
    category: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    amount: Mapped[str | None] = mapped_column(String(32))
    """Decimal as text: exact, and never a float."""
    currency: Mapped[str | None] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(64))
    retain_until: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DestructionReceipt(Base):
    """A signed statement of a destruction: an erasure receipt (one request) or a retention destruction
    certificate (one sweep). ``statement`` is the canonical JSON that was signed (Ed25519, the audit
    checkpoint key), so it verifies offline with the published public key."""

    __tablename__ = "destruction_receipt"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32))
    """``erasure_receipt`` or ``destruction_certificate``."""
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    statement: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(ForeignKey("audit_signing_key.key_id"))
    signature: Mapped[str] = mapped_column(String(128))


class LegalHold(Base):
    """Data that must not be destroyed (litigation, investigation) while the hold is active: a whole
    customer (entity, resolved to its records when the hold is placed) or one record. Created and
    released by a DPO, each with a reason."""

    __tablename__ = "legal_hold"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    reason: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(200))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    release_reason: Mapped[str | None] = mapped_column(String(300))


class RetentionPolicyVersion(Base):
    """Every version of the retention policy that was ever in force, as the TOML text with its digest:
    certificates name the version they applied, and this is where that version can be read."""

    __tablename__ = "retention_policy_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RetentionSweep(Base):
    """One retention sweep: its cut-off time (fixed when it starts, so a resumed sweep destroys exactly
    what the first attempt planned), progress and counts. The running sweep's lease is the lock that
    keeps two schedulers from sweeping at once."""

    __tablename__ = "retention_sweep"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), index=True)
    """running | completed"""
    policy_version: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    holder: Mapped[str] = mapped_column(String(200))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
    counts: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: destroyed per category, held, retained — counts only."""
    certificate_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class ExportArchive(Base):
    """A data-subject export (zip), encrypted under a data key of its own (a subject row as key holder),
    downloadable once through a link whose token is kept only as a SHA-256; the key is shredded when it
    is downloaded or expires."""

    __tablename__ = "export_archive"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("dsr_request.id"), index=True)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id"))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    downloaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    enc_archive: Mapped[bytes | None] = mapped_column(LargeBinary)


class WorkItem(Base):
    """A case in a department queue: a data-subject request or a customer complaint, routed by the rules
    in ``cdp/dsr/routing.toml``, with an assignee, an SLA due time and escalation."""

    __tablename__ = "work_item"
    __table_args__ = (UniqueConstraint("kind", "ref_id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(32))
    """``dsr_access``, ``dsr_erasure`` or ``complaint``."""
    ref_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    """The request or interaction id."""
    queue: Mapped[str] = mapped_column(String(32), index=True)
    rule: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    assignee: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AnalyticsSegment(Base):
    """A saved segment definition (JSON, see :mod:`cdp.analytics.segments`). No member list is ever
    stored: a segment is re-evaluated on the consenting population each time, so withdrawal and erasure
    take effect at the next evaluation."""

    __tablename__ = "analytics_segment"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    purpose: Mapped[str] = mapped_column(String(16))
    schedule: Mapped[str | None] = mapped_column(String(100))
    definition: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class AnalyticsSegmentSnapshot(Base):
    """A segment's size at one evaluation (counts over time). The exact size is kept; outputs suppress it
    when the group is smaller than k."""

    __tablename__ = "analytics_segment_snapshot"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    segment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("analytics_segment.id", ondelete="CASCADE"), index=True
    )
    segment_version: Mapped[int] = mapped_column(Integer)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    size: Mapped[int] = mapped_column(Integer)
    population: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16))
    """``on_demand`` or ``schedule``."""
    actor: Mapped[str] = mapped_column(String(200))


class WebSession(Base):
    """A browser session of one of the web apps (:mod:`cdp.access.websessions`). The cookie holds a
    random secret; this row holds its SHA-256, the sign-in (token family) the session rides on, and the
    OAuth tokens wrapped under the active KEK. Revoking the family ends the session."""

    __tablename__ = "web_session"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    app: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    family_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("oauth_token_family.id", ondelete="CASCADE"), index=True
    )
    principal: Mapped[str | None] = mapped_column(String(80), index=True)
    kek_version: Mapped[int] = mapped_column(Integer)
    enc_state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


SCHEDULER_JOBS = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
"""APScheduler's persistent job store (the retention sweep's schedule survives restarts). Created by
the migration rather than by APScheduler, so two server workers starting at once cannot race to create
it. The columns are APScheduler's own."""
