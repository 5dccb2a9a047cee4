"""A shop and a billing system with a few hundred customers of known behaviour, ingested through the real
intake (mapping, validation, encryption, resolution), for the analytics tests that go through the vault.

* ``regulars``: buy on the web every few weeks; some stopped at random times over the last two years
  (ordinary churn, so the churn model has history to learn from); they get monthly email newsletters and
  sometimes answer by email.
* ``phone_people``: regulars who are called by phone and answer by phone, never by email.
* ``planted``: a high-churn cohort — they bought as often as regulars, complained by phone two or three
  times, then went silent 120 to 150 days ago.
* ``browsers``: visit the web site, never buy.
* ``billing``: customers of the billing department only, invoiced monthly in GBP; a third of them wrote a
  complaint letter in the last 60 days.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cdp.db.types import utcnow
from cdp.identity.service import IdentityService
from cdp.platform import Platform
from cdp.sources.ingest import IngestService
from cdp.sources.readers import RawRow
from cdp.sources.records import RecordRepository, SourceRepository

SHOP = """
name = "shop"
line_of_business = "sales"
default_country = "DE"
date_formats = ["%Y-%m-%d"]
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
Id = "source_record_id"
First = "first_name"
Last = "last_name"
Email = "email"
Country = "country"
Born = "date_of_birth"
[interactions.fields]
Ref = "interaction_id"
Id = "source_record_id"
At = "occurred_at"
Channel = "channel"
Direction = "direction"
Kind = "kind"
Amount = "amount"
Currency = "currency"
"""

BILLING = """
name = "ledger"
line_of_business = "billing"
default_country = "GB"
datetime_formats = ["%Y-%m-%d %H:%M"]
[records.fields]
Account = "source_record_id"
First = "first_name"
Last = "last_name"
Email = "email"
[interactions.fields]
Doc = "interaction_id"
Account = "source_record_id"
At = "occurred_at"
Channel = "channel"
Direction = "direction"
Kind = "kind"
Amount = "amount"
Currency = "currency"
"""

FIRST = ("Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas", "Karla", "Lukas",
         "Mia", "Noah", "Olga", "Paul", "Rosa", "Simon", "Tina", "Uwe")  # fmt: skip
LAST = ("Adler", "Brandt", "Conrad", "Dietz", "Engel", "Fuchs", "Graf", "Hahn", "Imhof", "Jung", "Kraus",
        "Lang", "Maier", "Neumann", "Otto", "Peters", "Quast", "Roth", "Sommer", "Thiel", "Ulrich",
        "Vogel", "Wolf", "Xander", "Zimmer")  # fmt: skip


@dataclass
class Population:
    regulars: list[str] = field(default_factory=list)
    phone_people: list[str] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)
    browsers: list[str] = field(default_factory=list)
    lapsed: list[str] = field(default_factory=list)
    """Regulars who stopped buying at some random time (ordinary churn)."""
    billing: list[str] = field(default_factory=list)
    billing_complainers: list[str] = field(default_factory=list)
    shop_records: list[dict[str, str]] = field(default_factory=list)
    shop_events: list[dict[str, str]] = field(default_factory=list)
    billing_records: list[dict[str, str]] = field(default_factory=list)
    billing_events: list[dict[str, str]] = field(default_factory=list)


def _at(now: datetime, days_ago: float) -> str:
    return (now - timedelta(days=days_ago)).strftime("%Y-%m-%d %H:%M")


def generate(now: datetime, *, seed: int = 7, regulars: int = 170, planted: int = 50) -> Population:
    rng = random.Random(seed)
    pop = Population()
    names = [(f, last) for last in LAST for f in FIRST]
    rng.shuffle(names)
    counter = iter(range(10_000_000))

    def person(prefix: str, index: int) -> dict[str, str]:
        first, last = names[index]
        return {
            "Id": f"{prefix}-{index}",
            "First": first,
            "Last": last,
            "Email": f"{first.lower()}.{last.lower()}.{index}@example.de",
            "Country": rng.choice(("DE", "DE", "AT", "CH")),
            "Born": f"{rng.randint(1950, 2002)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        }

    def event(
        record: str, days_ago: float, channel: str, direction: str, kind: str, amount: str = ""
    ) -> None:
        pop.shop_events.append(
            {
                "Ref": f"E{next(counter)}",
                "Id": record,
                "At": _at(now, days_ago),
                "Channel": channel,
                "Direction": direction,
                "Kind": kind,
                "Amount": amount,
                "Currency": "EUR" if amount else "",
            }
        )

    index = 0
    for i in range(regulars):
        rec = person("S", index)
        index += 1
        pop.shop_records.append(rec)
        pop.regulars.append(rec["Id"])
        phone = i < 30
        if phone:
            pop.phone_people.append(rec["Id"])
        start = rng.uniform(420, 720)
        stop = rng.uniform(100, 600) if rng.random() < 0.3 else -1.0
        if stop > 0:
            pop.lapsed.append(rec["Id"])
        day = start
        while day > max(stop, 1.0):
            event(rec["Id"], day, "web", "inbound", "purchase", f"{rng.lognormvariate(3.8, 0.5):.2f}")
            day -= rng.expovariate(1 / 28)
        for month in range(int(start // 30)):
            sent = start - month * 30 - rng.uniform(0, 3)
            if sent <= 0:
                break
            if phone:
                event(rec["Id"], sent, "phone", "outbound", "follow_up")
                if sent > stop and rng.random() < 0.6:
                    event(rec["Id"], max(sent - rng.uniform(0.1, 2), 0.01), "phone", "inbound", "inquiry")
            else:
                event(rec["Id"], sent, "email", "outbound", "mailing")
                if sent > stop and rng.random() < 0.3:
                    event(rec["Id"], max(sent - rng.uniform(0.1, 3), 0.01), "email", "inbound", "inquiry")
    for _ in range(planted):
        rec = person("S", index)
        index += 1
        pop.shop_records.append(rec)
        pop.planted.append(rec["Id"])
        start = rng.uniform(420, 720)
        silent_since = rng.uniform(120, 150)
        day = start
        while day > silent_since:
            event(rec["Id"], day, "web", "inbound", "purchase", f"{rng.lognormvariate(3.8, 0.5):.2f}")
            day -= rng.expovariate(1 / 28)
        for _ in range(rng.randint(2, 3)):
            event(rec["Id"], silent_since + rng.uniform(1, 60), "phone", "inbound", "complaint")
        for month in range(int(start // 30)):
            sent = start - month * 30 - rng.uniform(0, 3)
            if sent <= 0:
                break
            event(rec["Id"], sent, "email", "outbound", "mailing")
    for _ in range(40):
        rec = person("S", index)
        index += 1
        pop.shop_records.append(rec)
        pop.browsers.append(rec["Id"])
        for _ in range(rng.randint(1, 6)):
            event(rec["Id"], rng.uniform(1, 400), "web", "inbound", "visit")
    for i in range(30):
        first, last = names[index]
        index += 1
        account = f"B-{i}"
        pop.billing.append(account)
        pop.billing_records.append(
            {
                "Account": account,
                "First": first,
                "Last": last,
                "Email": f"{first.lower()}.{last.lower()}@ledger.uk",
            }
        )
        for month in range(24):
            pop.billing_events.append(
                {
                    "Doc": f"INV-{i}-{month}",
                    "Account": account,
                    "At": _at(now, 3 + month * 30.4),
                    "Channel": "email",
                    "Direction": "outbound",
                    "Kind": "invoice",
                    "Amount": f"{rng.uniform(20, 80):.2f}",
                    "Currency": "GBP",
                }
            )
        if i % 3 == 0:
            pop.billing_complainers.append(account)
            pop.billing_events.append(
                {
                    "Doc": f"CMP-{i}",
                    "Account": account,
                    "At": _at(now, rng.uniform(5, 60)),
                    "Channel": "letter",
                    "Direction": "inbound",
                    "Kind": "complaint",
                    "Amount": "",
                    "Currency": "",
                }
            )
    return pop


@dataclass(frozen=True)
class World:
    platform: Platform
    population: Population
    customer_of: dict[str, uuid.UUID]
    """Source record id (``S-3``, ``B-0``) -> the resolved customer (entity) id."""
    record_of: dict[str, uuid.UUID]

    def customers(self, ids: list[str]) -> set[uuid.UUID]:
        return {self.customer_of[i] for i in ids}


def _rows(items: list[dict[str, str]]) -> list[RawRow]:
    return [RawRow(number, values) for number, values in enumerate(items, start=1)]


def seed_world(platform: Platform, *, now: datetime | None = None, **sizes: int) -> World:
    population = generate(now or utcnow(), **sizes)
    ingest = IngestService(platform.db, platform.vault)
    ingest.register_source(SHOP)
    ingest.register_source(BILLING)
    for source, kind, items in (
        ("shop", "records", population.shop_records),
        ("shop", "interactions", population.shop_events),
        ("ledger", "records", population.billing_records),
        ("ledger", "interactions", population.billing_events),
    ):
        summary = ingest.ingest_rows(source, _rows(items), kind=kind)
        assert summary.rejected == 0, summary.rejections[:3]
    identity = IdentityService(platform.db, platform.vault)
    customer_of: dict[str, uuid.UUID] = {}
    record_of: dict[str, uuid.UUID] = {}
    with platform.db.read() as session:
        sources = SourceRepository(session)
        records = RecordRepository(session, platform.vault)
        for source, items, key in (
            ("shop", population.shop_records, "Id"),
            ("ledger", population.billing_records, "Account"),
        ):
            source_id = sources.id_of(source)
            for item in items:
                found = records.find_by_natural_key(source_id, item[key])
                assert found is not None
                record_of[item[key]] = found
    for natural, record_id in record_of.items():
        entity = identity.entity_of(record_id)
        assert entity is not None
        customer_of[natural] = entity
    assert len(set(customer_of.values())) == len(customer_of), "no two test customers may merge"
    return World(platform, population, customer_of, record_of)
