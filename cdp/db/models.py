"""Tables. Every column that could hold personal data is a ciphertext (``enc_*``) produced by the vault,
or a blind-index token; nothing here stores a name, email, phone or address in the clear."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


CANONICAL_FIELDS: tuple[str, ...] = (
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


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for bulk statements (typed, unlike ``Model.__table__``)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table
