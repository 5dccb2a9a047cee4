"""A small placeholder data set: fictitious customers in several lines of business.

Faker generates every value, so nothing here is a real person. The ingestion issue replaces this with
the realistic multi-source generator (typos, households, changed emails, ground truth).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from faker import Faker

from cdp.db import Database
from cdp.sources.records import CustomerRecord, LookupKeys, RecordRepository, SourceRepository
from cdp.vault import Vault

DEMO_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("crm", "sales", "en_GB"),
    ("helpdesk", "support", "de_DE"),
    ("billing", "billing", "es_ES"),
    ("newsletter", "marketing", "en_US"),
)


@dataclass(frozen=True)
class SeedResult:
    records: int
    sources: int


def _lookup_keys(record: CustomerRecord) -> LookupKeys:
    keys: dict[str, list[str]] = {}
    if record.email:
        keys["email"] = [record.email.strip().casefold()]
    if record.phone:
        keys["phone"] = ["".join(ch for ch in record.phone if ch.isdigit())]
    if record.last_name:
        keys["last_name"] = [record.last_name.strip().casefold()]
    if record.postcode:
        keys["postcode"] = [record.postcode.replace(" ", "").casefold()]
    return keys


def _person(fake: Faker, rng: random.Random, source: str, number: int) -> CustomerRecord:
    first, last = fake.first_name(), fake.last_name()
    return CustomerRecord(
        source_record_id=f"{source.upper()}-{number:07d}",
        first_name=first,
        last_name=last,
        full_name=f"{first} {last}",
        date_of_birth=fake.date_of_birth(minimum_age=18, maximum_age=90),
        email=fake.email() if rng.random() > 0.05 else None,
        phone=fake.phone_number() if rng.random() > 0.2 else None,
        street_number=fake.building_number(),
        address_line1=fake.street_name(),
        city=fake.city(),
        postcode=fake.postcode(),
        country=fake.current_country_code(),
        attributes={"customer_since": str(fake.date_between("-10y", "today"))},
    )


def seed(
    db: Database,
    vault: Vault,
    *,
    people: int = 500,
    seed_value: int = 42,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Insert ``people`` fictitious records spread over the demo sources. Deterministic for a seed;
    re-running on a seeded database adds nothing (records are keyed by source record id)."""
    rng = random.Random(seed_value)
    fakers = {name: Faker(locale) for name, _, locale in DEMO_SOURCES}
    for index, fake in enumerate(fakers.values()):
        fake.seed_instance(seed_value + index)
    with db.transaction() as session:
        source_ids = {name: SourceRepository(session).get_or_add(name, lob) for name, lob, _ in DEMO_SOURCES}
    inserted = 0
    for start in range(0, people, batch_size):
        with db.transaction() as session:
            repo = RecordRepository(session, vault)
            by_source: dict[str, list[tuple[CustomerRecord, LookupKeys]]] = {}
            for number in range(start, min(start + batch_size, people)):
                name = DEMO_SOURCES[number % len(DEMO_SOURCES)][0]
                record = _person(fakers[name], rng, name, number)
                if repo.find_by_natural_key(source_ids[name], record.source_record_id) is None:
                    by_source.setdefault(name, []).append((record, _lookup_keys(record)))
            for name, items in by_source.items():
                inserted += len(repo.add_many(source_ids[name], items))
        if progress:
            progress(min(start + batch_size, people) - start)
    return SeedResult(inserted, len(DEMO_SOURCES))
