"""A deterministic, realistic multi-source customer data set with ground truth.

``generate(out_dir, people=..., seed=...)`` writes what four line-of-business systems of one company would
export about the same fictitious population, plus the truth about who is who:

================  =========  ==============================  =================================
source            business   records                         interactions
================  =========  ==============================  =================================
``crm``           sales      ``crm_contacts.csv``            ``crm_activities.csv``
``helpdesk``      support    ``helpdesk_contacts.jsonl``     ``helpdesk_tickets.jsonl``
``billing``       billing    ``billing_customers.csv``       ``billing_invoices.csv``
``newsletter``    marketing  ``newsletter_subscribers.csv``  ``newsletter_events.jsonl``
================  =========  ==============================  =================================

Each source has its own column names, formats and quality problems and a mapping in
``cdp/demo/mappings/<source>.toml`` (the format of :mod:`cdp.sources.mapping`). ``ground_truth.csv``
(source, source_record_id, person_id, household_id) and ``manifest.json`` (seed, counts per source, per
noise type and per population feature) sit beside them and are never mixed into a source file.

What makes it hard is what real customer data throws at identity resolution (see DESIGN.md):

* households: partners share address, surname, landline and sometimes one email; twins share surname,
  address and birth date; a junior shares name and address with his father; flat-shares share an address;
* namesakes: locale-typical Zipf-distributed names (Smith, Müller, García …) in Zipf-distributed cities,
  plus a deliberate share of the locale's most common full names in its biggest cities; emails that
  differ only in digits belong to different people;
* change over time: new email, new mobile, moved household, children who moved out, maiden names —
  each source shows a snapshot, older systems (billing, newsletter) more often the old one;
* sparse sources (newsletter: email + first name; helpdesk: free-form name, email, city);
* format noise: plus-addressing, dotted gmail and googlemail, national and international phone formats,
  day/month swaps, placeholder dates, lost leading zeros, diacritics vs transliteration, upper-case
  legacy, cp1252 mojibake, middle names and initials in the given-name field, nicknames, Spanish second
  surnames, Dutch particles, keyboard typos and transpositions, swapped first/last names, junk values,
  and duplicates within one source.

Everything is drawn from one ``random.Random(seed)`` stream (Faker instances are seeded per instance
and only fill pools up front), so the same ``(people, seed)`` gives byte-identical files with the same
Faker version (the manifest records it: Faker's name lists feed the pools). Rows are
written as they are made, chunk by chunk of households: memory stays flat at any size (a Bloom filter
keeps emails and phone numbers unique between different people).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import time
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

import faker
from faker import Faker

__all__ = [
    "FILES",
    "MAPPINGS_DIR",
    "SOURCES",
    "GenerationSummary",
    "SourceSummary",
    "generate",
]

GENERATOR_VERSION = 1
MAPPINGS_DIR = Path(__file__).parent / "mappings"
SOURCES: tuple[str, ...] = ("crm", "helpdesk", "billing", "newsletter")
FILES: dict[str, tuple[str, str]] = {
    "crm": ("crm_contacts.csv", "crm_activities.csv"),
    "helpdesk": ("helpdesk_contacts.jsonl", "helpdesk_tickets.jsonl"),
    "billing": ("billing_customers.csv", "billing_invoices.csv"),
    "newsletter": ("newsletter_subscribers.csv", "newsletter_events.jsonl"),
}
LINE_OF_BUSINESS = {"crm": "sales", "helpdesk": "support", "billing": "billing", "newsletter": "marketing"}
GROUND_TRUTH_FILE = "ground_truth.csv"
MANIFEST_FILE = "manifest.json"
BILLING_ENCODING = "cp1252"

START = date(2019, 1, 1)
END = date(2026, 3, 31)
_NDAYS = (END - START).days + 1
_CHUNK_PEOPLE = 2_000

CRM_COLUMNS = (
    "LeadId", "Salutation", "FirstName", "LastName", "EMail", "Phone", "DOB", "Street", "HouseNo", "Town",
    "PostCode", "State", "Country", "Segment", "LeadScore", "LeadSource", "Owner", "CreatedDate",
    "LastContact", "Notes",
)  # fmt: skip
CRM_ACTIVITY_COLUMNS = (
    "ActivityId", "LeadId", "ActivityDate", "Channel", "Direction", "Type", "Subject", "Outcome", "Amount",
    "Currency", "Owner",
)  # fmt: skip
HELPDESK_KEYS = ("KontaktId", "Name", "EMail", "Ort", "Sprache", "AngelegtAm", "LetzterKontakt")
HELPDESK_TICKET_KEYS = (
    "TicketNr", "KontaktId", "Erstellt", "Kanal", "Richtung", "Kategorie", "Betreff", "Status", "Prioritaet",
)  # fmt: skip
BILLING_COLUMNS = (
    "CUSTNO", "TITLE", "SURNAME", "FORENAMES", "BIRTHDATE", "ADDR1", "ADDR2", "ZIP", "TOWN", "CTRY", "TEL",
    "EMAIL", "NATID", "OPENED", "STATUS", "PAYMETH", "LASTINV", "OPERATOR",
)  # fmt: skip
BILLING_INVOICE_COLUMNS = (
    "DOCNO", "CUSTNO", "DOCDATE", "DOCTYPE", "CHANNEL", "DIR", "AMOUNT", "CURR", "DOCTEXT", "PAYSTATUS",
)  # fmt: skip
NEWSLETTER_COLUMNS = (
    "subscriber_id", "email", "first_name", "country", "signup_date", "signup_source", "opt_in", "status",
    "last_engaged", "list_id",
)  # fmt: skip
NEWSLETTER_EVENT_KEYS = ("event_id", "subscriber_id", "ts", "type", "campaign", "client")

# ---- intended rates (the tests check the data against these) -------------------------------------
SOURCE_COUNT_WEIGHTS = ((1, 0.15), (2, 0.36), (3, 0.31), (4, 0.18))
SOURCE_WEIGHTS = {"crm": 0.80, "billing": 0.62, "newsletter": 0.55, "helpdesk": 0.45}
DUPLICATE_RATE = {"crm": 0.04, "helpdesk": 0.06, "billing": 0.015, "newsletter": 0.03}
OLD_SNAPSHOT_RATE = {"crm": 0.15, "helpdesk": 0.35, "billing": 0.55, "newsletter": 0.45}
ORPHAN_RATE = 0.004
BILLING_UPPER_CASE_RATE = 0.72
BILLING_LOST_ZERO_RATE = 0.9
PLUS_ADDRESS_RATE = {"crm": 0.03, "helpdesk": 0.03, "billing": 0.01, "newsletter": 0.10}
DOB_PLACEHOLDER_RATE = {"crm": 0.015, "billing": 0.025}
JUNK_EMAIL_RATE = {"crm": 0.006, "helpdesk": 0.004, "billing": 0.01, "newsletter": 0.004}
TWIN_RATE = 0.09  # per family household with children
SHARED_EMAIL_RATE = 0.12  # per couple
NAMESAKE_RATE = 0.008  # households headed by one of the locale's five most common full names, in a big city

JUNK_EMAILS = ("test@test.com", "n/a", "none@none.com", "noemail@noemail.com", "x@x.com", "no@email.com")
JUNK_PHONES = ("000-000-0000", "0000000000", "n/a", "1234567", "00000 000000")
PLACEHOLDER_DOB = (1900, 1, 1)

T = TypeVar("T")


class _Choice(Generic[T]):
    """Weighted choice by bisection over normalized cumulative weights."""

    __slots__ = ("cum", "items")

    def __init__(self, pairs: Iterable[tuple[T, float]]) -> None:
        items: list[T] = []
        cum: list[float] = []
        total = 0.0
        for item, weight in pairs:
            total += weight
            items.append(item)
            cum.append(total)
        self.items = items
        self.cum = [c / total for c in cum]
        self.cum[-1] = 1.0

    def pick(self, r: float) -> T:
        return self.items[bisect_right(self.cum, r)]


def _zipf(items: Sequence[T], *, offset: float, exponent: float) -> _Choice[T]:
    return _Choice((item, 1.0 / (rank + offset) ** exponent) for rank, item in enumerate(items, 1))


# ---- locales --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BigCity:
    name: str
    area: str
    postcode: tuple[int, int] | tuple[str, ...]
    """numeric range (DE, ES, FR, US, NL four digits) or GB outward codes"""
    state: str = ""
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Spec:
    code: str
    country: str
    weight: float
    currency: str
    language: str
    cc: str
    trunk: str
    postcode_kind: str  # gb | nl | num5
    number_first: bool
    translit: str  # de (ä -> ae) | strip
    landline_rate: float
    big_cities: tuple[_BigCity, ...]
    domains: tuple[tuple[str, float], ...]
    old_domains: tuple[str, ...]
    country_names: tuple[str, ...]
    titles: tuple[tuple[str, ...], tuple[str, ...]]  # (male, female), as people write them
    common_last: tuple[str, ...]
    common_first: tuple[tuple[str, ...], tuple[str, ...]]
    namesakes: tuple[tuple[str, str, str], ...]  # (first, last, sex)
    nicknames: tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]
    middle: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    junior_rate: float = 0.06
    junior_suffix: tuple[str, str] = ("", "")


_EN_NICK_M = {
    "William": ("Bill", "Will", "Billy"), "Robert": ("Bob", "Rob", "Bobby"), "Richard": ("Rick", "Dick"),
    "James": ("Jim", "Jimmy", "Jamie"), "John": ("Jack", "Johnny"), "Michael": ("Mike", "Mick"),
    "Thomas": ("Tom", "Tommy"), "David": ("Dave",), "Joseph": ("Joe",), "Christopher": ("Chris",),
    "Daniel": ("Dan", "Danny"), "Anthony": ("Tony",), "Charles": ("Charlie", "Chuck"),
    "Edward": ("Ed", "Ted", "Eddie"), "Matthew": ("Matt",), "Andrew": ("Andy", "Drew"), "Benjamin": ("Ben",),
    "Jonathan": ("Jon",), "Nicholas": ("Nick",), "Steven": ("Steve",), "Timothy": ("Tim",),
    "Alexander": ("Alex",), "Samuel": ("Sam",), "Oliver": ("Ollie",),
}  # fmt: skip
_EN_NICK_F = {
    "Elizabeth": ("Liz", "Beth", "Betty", "Lizzie"), "Margaret": ("Maggie", "Peggy", "Meg"),
    "Katherine": ("Kate", "Kathy", "Katie"), "Jennifer": ("Jen", "Jenny"), "Patricia": ("Pat", "Trish"),
    "Susan": ("Sue", "Susie"), "Rebecca": ("Becky",), "Deborah": ("Debbie",), "Victoria": ("Vicky", "Tori"),
    "Jessica": ("Jess",), "Samantha": ("Sam",), "Alexandra": ("Alex",), "Catherine": ("Kate", "Cathy"),
    "Christine": ("Chris",), "Charlotte": ("Lottie",),
}  # fmt: skip

_SPECS: tuple[_Spec, ...] = (
    _Spec(
        code="en_GB", country="GB", weight=0.28, currency="GBP", language="en", cc="44", trunk="0",
        postcode_kind="gb", number_first=True, translit="strip", landline_rate=0.45,
        big_cities=(
            _BigCity("London", "20", ("SW1A", "E1", "N1", "NW3", "SE1", "W2", "EC1A", "E14", "SW11", "N16")),
            _BigCity("Birmingham", "121", ("B1", "B5", "B13", "B29")),
            _BigCity("Manchester", "161", ("M1", "M4", "M20", "M14")),
            _BigCity("Leeds", "113", ("LS1", "LS6", "LS17")),
            _BigCity("Glasgow", "141", ("G1", "G12", "G41")),
            _BigCity("Bristol", "117", ("BS1", "BS6", "BS8")),
            _BigCity("Liverpool", "151", ("L1", "L15", "L18")),
            _BigCity("Edinburgh", "131", ("EH1", "EH3", "EH10"), variants=("Edinburg",)),
            _BigCity("Cardiff", "29", ("CF10", "CF11", "CF24"), variants=("Caerdydd",)),
        ),
        domains=(("gmail.com", 35), ("hotmail.co.uk", 12), ("yahoo.co.uk", 8), ("outlook.com", 10),
                 ("btinternet.com", 8), ("icloud.com", 8), ("sky.com", 5), ("live.co.uk", 4),
                 ("googlemail.com", 3), ("aol.com", 2)),
        old_domains=("hotmail.co.uk", "yahoo.co.uk", "aol.com", "btinternet.com", "tiscali.co.uk"),
        country_names=("United Kingdom", "UK", "Great Britain"),
        titles=(("Mr", "Mr."), ("Mrs", "Ms", "Miss")),
        common_last=("Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
                     "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards",
                     "Hughes", "Green", "Hall"),
        common_first=(("Oliver", "James", "John", "David", "Michael", "Thomas", "William", "Robert",
                       "Richard", "Daniel"),
                      ("Sarah", "Emma", "Olivia", "Sophie", "Emily", "Jessica", "Elizabeth", "Margaret",
                       "Katherine", "Charlotte")),
        namesakes=(("John", "Smith", "M"), ("David", "Jones", "M"), ("Sarah", "Williams", "F"),
                   ("James", "Brown", "M"), ("Emma", "Taylor", "F")),
        nicknames=(_EN_NICK_M, _EN_NICK_F), junior_rate=0.12, junior_suffix=("Jr", "Sr"),
    ),
    _Spec(
        code="en_US", country="US", weight=0.12, currency="USD", language="en", cc="1", trunk="",
        postcode_kind="num5", number_first=True, translit="strip", landline_rate=0.25,
        big_cities=(
            _BigCity("New York", "212", (10001, 10292), "NY", ("New York City", "NYC")),
            _BigCity("Los Angeles", "213", (90001, 90089), "CA", ("LA",)),
            _BigCity("Chicago", "312", (60601, 60661), "IL"),
            _BigCity("Houston", "713", (77001, 77099), "TX"),
            _BigCity("Boston", "617", (2108, 2137), "MA"),
            _BigCity("Phoenix", "602", (85001, 85055), "AZ"),
            _BigCity("Newark", "973", (7102, 7114), "NJ"),
            _BigCity("Philadelphia", "215", (19102, 19154), "PA", ("Philly",)),
            _BigCity("Hartford", "860", (6101, 6120), "CT"),
        ),
        domains=(("gmail.com", 45), ("yahoo.com", 15), ("hotmail.com", 8), ("outlook.com", 8),
                 ("icloud.com", 10), ("aol.com", 5), ("comcast.net", 5), ("msn.com", 2)),
        old_domains=("aol.com", "yahoo.com", "hotmail.com", "earthlink.net", "msn.com"),
        country_names=("United States", "USA", "U.S.A.", "United States of America"),
        titles=(("Mr.",), ("Mrs.", "Ms.")),
        common_last=("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
                     "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor",
                     "Moore", "Jackson", "Martin", "Lee"),
        common_first=(("James", "Michael", "John", "Robert", "David", "William", "Richard", "Joseph",
                       "Thomas", "Christopher"),
                      ("Mary", "Jennifer", "Linda", "Patricia", "Elizabeth", "Susan", "Jessica", "Sarah",
                       "Karen", "Margaret")),
        namesakes=(("John", "Smith", "M"), ("Michael", "Johnson", "M"), ("Mary", "Williams", "F"),
                   ("James", "Brown", "M"), ("Jennifer", "Davis", "F")),
        nicknames=(_EN_NICK_M, _EN_NICK_F), junior_rate=0.25, junior_suffix=("Jr.", "Sr."),
    ),
    _Spec(
        code="de_DE", country="DE", weight=0.22, currency="EUR", language="de", cc="49", trunk="0",
        postcode_kind="num5", number_first=False, translit="de", landline_rate=0.55,
        big_cities=(
            _BigCity("Berlin", "30", (10115, 14199)),
            _BigCity("Hamburg", "40", (20095, 22769)),
            _BigCity("München", "89", (80331, 81929), variants=("Munich", "Muenchen")),
            _BigCity("Köln", "221", (50667, 51149), variants=("Cologne", "Koeln")),
            _BigCity("Frankfurt am Main", "69", (60306, 60599),
                     variants=("Frankfurt", "Frankfurt a.M.", "Frankfurt/Main")),
            _BigCity("Stuttgart", "711", (70173, 70629)),
            _BigCity("Düsseldorf", "211", (40210, 40629), variants=("Duesseldorf", "Dusseldorf")),
            _BigCity("Leipzig", "341", (4103, 4357)),
            _BigCity("Dresden", "351", (1067, 1328)),
            _BigCity("Nürnberg", "911", (90402, 90491), variants=("Nuremberg", "Nuernberg")),
        ),
        domains=(("gmail.com", 20), ("gmx.de", 18), ("web.de", 18), ("t-online.de", 10),
                 ("googlemail.com", 8), ("outlook.de", 5), ("yahoo.de", 5), ("freenet.de", 4),
                 ("icloud.com", 5), ("posteo.de", 3)),
        old_domains=("t-online.de", "gmx.net", "web.de", "arcor.de", "yahoo.de", "freenet.de"),
        country_names=("Germany", "Deutschland"),
        titles=(("Herr",), ("Frau",)),
        common_last=("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
                     "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder",
                     "Neumann", "Schwarz", "Zimmermann"),
        common_first=(("Thomas", "Michael", "Andreas", "Stefan", "Peter", "Christian", "Alexander",
                       "Johannes", "Wolfgang", "Matthias"),
                      ("Sabine", "Anna", "Maria", "Katharina", "Susanne", "Andrea", "Elisabeth", "Stefanie",
                       "Julia", "Franziska")),
        namesakes=(("Thomas", "Müller", "M"), ("Michael", "Schmidt", "M"), ("Andreas", "Schneider", "M"),
                   ("Sabine", "Fischer", "F"), ("Stefan", "Weber", "M")),
        nicknames=({"Johannes": ("Hans", "Jo"), "Wolfgang": ("Wolf",), "Friedrich": ("Fritz",),
                    "Alexander": ("Alex",), "Christian": ("Chris",), "Matthias": ("Matze",),
                    "Michael": ("Micha",), "Andreas": ("Andi",), "Thomas": ("Tom",)},
                   {"Katharina": ("Kathi", "Katja"), "Elisabeth": ("Lisa", "Elli"), "Stefanie": ("Steffi",),
                    "Franziska": ("Franzi",), "Susanne": ("Susi",), "Christina": ("Tina",),
                    "Gabriele": ("Gabi",), "Alexandra": ("Alex",), "Daniela": ("Dani",)}),
        junior_suffix=("jun.", "sen."),
    ),
    _Spec(
        code="es_ES", country="ES", weight=0.12, currency="EUR", language="es", cc="34", trunk="",
        postcode_kind="num5", number_first=False, translit="strip", landline_rate=0.40,
        big_cities=(
            _BigCity("Madrid", "91", (28001, 28055)),
            _BigCity("Barcelona", "93", (8001, 8042)),
            _BigCity("Valencia", "96", (46001, 46026), variants=("València",)),
            _BigCity("Sevilla", "95", (41001, 41020), variants=("Seville",)),
            _BigCity("Zaragoza", "976", (50001, 50021)),
            _BigCity("Málaga", "95", (29001, 29018), variants=("Malaga",)),
            _BigCity("Bilbao", "94", (48001, 48015), variants=("Bilbo",)),
            _BigCity("Vitoria-Gasteiz", "945", (1001, 1015), variants=("Vitoria", "Gasteiz")),
            _BigCity("Ávila", "920", (5001, 5005), variants=("Avila",)),
        ),
        domains=(("gmail.com", 45), ("hotmail.com", 20), ("yahoo.es", 10), ("outlook.es", 10),
                 ("telefonica.net", 5), ("icloud.com", 5)),
        old_domains=("hotmail.com", "terra.es", "yahoo.es", "ya.com", "telefonica.net"),
        country_names=("Spain", "España"),
        titles=(("Sr.", "D."), ("Sra.", "Dña.")),
        common_last=("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
                     "Gómez", "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez",
                     "Romero", "Alonso", "Gutiérrez"),
        common_first=(("José", "Antonio", "Manuel", "Francisco", "Juan", "David", "Javier", "Jesús",
                       "Carlos", "Alejandro"),
                      ("María", "Carmen", "Ana", "Laura", "Isabel", "Dolores", "Pilar", "Rosario", "Mercedes",
                       "Lucía")),
        namesakes=(("María", "García", "F"), ("José", "Fernández", "M"), ("Antonio", "González", "M"),
                   ("Carmen", "Rodríguez", "F"), ("Manuel", "López", "M")),
        nicknames=({"José": ("Pepe",), "Francisco": ("Paco", "Curro"), "Manuel": ("Manolo",),
                    "Antonio": ("Toni",), "Ignacio": ("Nacho",), "Enrique": ("Quique",), "Jesús": ("Chus",),
                    "Alejandro": ("Álex",), "Guillermo": ("Guille",)},
                   {"Dolores": ("Lola",), "Rosario": ("Charo",), "Mercedes": ("Merche",),
                    "Concepción": ("Concha",), "Pilar": ("Pili",), "Consuelo": ("Chelo",), "Isabel": ("Isa",),
                    "María": ("Mari",)}),
        middle=(("Luis", "Carlos", "Antonio", "Manuel", "Miguel", "Ángel", "José", "Ignacio"),
                ("José", "Carmen", "Isabel", "Teresa", "Luisa", "Pilar", "Dolores", "Jesús")),
    ),
    _Spec(
        code="fr_FR", country="FR", weight=0.14, currency="EUR", language="fr", cc="33", trunk="0",
        postcode_kind="num5", number_first=True, translit="strip", landline_rate=0.45,
        big_cities=(
            _BigCity("Paris", "1", (75001, 75020)),
            _BigCity("Marseille", "4", (13001, 13016), variants=("Marseilles",)),
            _BigCity("Lyon", "4", (69001, 69009), variants=("Lyons",)),
            _BigCity("Toulouse", "5", (31000, 31500)),
            _BigCity("Nice", "4", (6000, 6300)),
            _BigCity("Nantes", "2", (44000, 44300)),
            _BigCity("Strasbourg", "3", (67000, 67200), variants=("Straßburg",)),
            _BigCity("Bordeaux", "5", (33000, 33800)),
            _BigCity("Bourg-en-Bresse", "4", (1000, 1000), variants=("Bourg en Bresse",)),
            _BigCity("Laon", "3", (2000, 2000)),
        ),
        domains=(("gmail.com", 35), ("orange.fr", 15), ("hotmail.fr", 12), ("yahoo.fr", 8), ("free.fr", 10),
                 ("laposte.net", 8), ("sfr.fr", 6), ("wanadoo.fr", 3), ("outlook.fr", 3)),
        old_domains=("wanadoo.fr", "club-internet.fr", "hotmail.fr", "yahoo.fr", "neuf.fr"),
        country_names=("France", "République française"),
        titles=(("M.",), ("Mme", "Mlle")),
        common_last=("Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois",
                     "Moreau", "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand",
                     "Morel", "Fournier", "Girard"),
        common_first=(("Jean", "Pierre", "Nicolas", "Philippe", "Michel", "Alexandre", "Christophe",
                       "Frédéric", "Thomas", "Julien"),
                      ("Marie", "Nathalie", "Isabelle", "Catherine", "Sophie", "Véronique", "Sylvie",
                       "Christine", "Camille", "Julie")),
        namesakes=(("Marie", "Martin", "F"), ("Jean", "Bernard", "M"), ("Nathalie", "Dubois", "F"),
                   ("Philippe", "Thomas", "M"), ("Pierre", "Petit", "M")),
        nicknames=({"Nicolas": ("Nico",), "Alexandre": ("Alex",), "Frédéric": ("Fred",),
                    "Christophe": ("Chris",), "Philippe": ("Phil",), "Maximilien": ("Max",)},
                   {"Catherine": ("Cathy",), "Isabelle": ("Isa",), "Véronique": ("Véro",),
                    "Stéphanie": ("Steph",), "Dominique": ("Domi",)}),
    ),
    _Spec(
        code="nl_NL", country="NL", weight=0.12, currency="EUR", language="nl", cc="31", trunk="0",
        postcode_kind="nl", number_first=False, translit="strip", landline_rate=0.40,
        big_cities=(
            _BigCity("Amsterdam", "20", (1011, 1109)),
            _BigCity("Rotterdam", "10", (3011, 3089)),
            _BigCity("Den Haag", "70", (2491, 2599), variants=("'s-Gravenhage", "The Hague")),
            _BigCity("Utrecht", "30", (3511, 3585)),
            _BigCity("Eindhoven", "40", (5611, 5658)),
            _BigCity("Groningen", "50", (9711, 9747)),
        ),
        domains=(("gmail.com", 35), ("hotmail.com", 15), ("ziggo.nl", 12), ("kpnmail.nl", 10),
                 ("outlook.com", 8), ("live.nl", 8), ("home.nl", 4), ("planet.nl", 4), ("xs4all.nl", 4)),
        old_domains=("hotmail.com", "planet.nl", "home.nl", "chello.nl", "wanadoo.nl"),
        country_names=("Netherlands", "The Netherlands", "Nederland", "Holland"),
        titles=(("Dhr.", "De heer"), ("Mevr.", "Mevrouw")),
        common_last=("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen",
                     "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters",
                     "Hendriks", "van Leeuwen", "Dekker", "Brouwer"),
        common_first=(("Jan", "Johannes", "Peter", "Hendrik", "Cornelis", "Willem", "Jacobus", "Pieter",
                       "Gerardus", "Daan"),
                      ("Maria", "Anna", "Johanna", "Cornelia", "Emma", "Sanne", "Lotte", "Anne", "Elisabeth",
                       "Femke")),
        namesakes=(("Jan", "de Jong", "M"), ("Maria", "Jansen", "F"), ("Peter", "de Vries", "M"),
                   ("Johannes", "van den Berg", "M"), ("Anna", "Bakker", "F")),
        nicknames=({"Johannes": ("Jan", "Hans", "Johan"), "Cornelis": ("Kees", "Cor"), "Willem": ("Wim",),
                    "Hendrik": ("Henk",), "Jacobus": ("Koos", "Jaap"), "Gerardus": ("Gerard", "Gert"),
                    "Pieter": ("Piet",), "Adrianus": ("Arie", "Adri")},
                   {"Johanna": ("Anneke", "Jo"), "Cornelia": ("Corrie", "Nel"), "Elisabeth": ("Lies", "Bep"),
                    "Maria": ("Mieke", "Marieke"), "Wilhelmina": ("Wilma", "Mien"),
                    "Petronella": ("Nel", "Ellie")}),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class _City:
    name: str
    variants: tuple[str, ...]
    state: str
    area: str
    postcodes: tuple[str, ...]


@dataclass(frozen=True)
class _Locale:
    index: int
    spec: _Spec
    first: tuple[_Choice[str], _Choice[str]]
    last: _Choice[str]
    cities: _Choice[_City]
    top_cities: tuple[_City, ...]
    streets: tuple[str, ...]
    domains: _Choice[str]
    nick: tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]


_GB_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_NL_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"
# Real area codes (for the cities Faker invents) and mobile prefixes, so that every number is valid
# for its country's numbering plan; what makes a number hard to match is how it is written.
_AREA_CODES: dict[str, tuple[str, ...]] = {
    "1": ("201", "205", "206", "208", "214", "216", "301", "303", "305", "309", "404", "407", "410", "412",
          "415", "469", "502", "503", "504", "512", "513", "608", "612", "614", "615", "702", "704", "719",
          "801", "803", "804", "808", "813", "816", "901", "904", "909", "916", "919", "952", "971", "985"),
    "44": ("114", "115", "116", "118", "191", "1223", "1865", "1273", "1603", "1392", "1904", "1244", "1524",
           "1872", "1482", "1332", "1782", "1752", "1202", "1234", "1206", "1227", "1224", "1382", "1452"),
    "49": ("201", "231", "421", "511", "228", "251", "371", "391", "361", "331", "381", "431", "451", "521",
           "541", "561", "611", "621", "721", "761", "821", "841", "941", "931", "6131", "681", "7031",
           "8031", "9131", "4131", "5121", "6221", "7071", "2841", "3581"),
    "34": ("91", "93", "96", "95", "94", "981", "983", "985", "986", "987", "924", "925", "926", "927",
           "928", "942", "943", "944", "945", "947", "948", "949", "971", "972", "973", "974", "977"),
    "33": ("1", "2", "3", "4", "5"),
    "31": ("13", "15", "23", "24", "26", "33", "35", "36", "38", "43", "45", "46", "53", "55", "58", "71",
           "72", "73", "74", "75", "76", "77", "78", "79"),
}  # fmt: skip
_MOBILE_PREFIXES: dict[str, tuple[str, ...]] = {
    "44": ("740", "741", "742", "743", "744", "746", "747", "748", "749", "751", "753", "754", "755", "756",
           "757", "758", "759", "771", "772", "773", "774", "775", "776", "777", "780", "781", "784", "785",
           "786", "787", "788", "789", "790", "792", "794", "795", "796", "797", "798", "799"),
    "49": ("151", "152", "155", "157", "159", "160", "162", "163", "170", "171", "172", "173", "174", "175",
           "176", "177", "178", "179"),
    "34": ("6",) * 6 + ("71", "72", "73", "74"),
    "33": ("60", "61", "62", "64", "65", "66", "67", "68", "73", "74", "75", "76", "77", "78", "79"),
    "31": ("61", "62", "63", "64", "65", "68"),
}  # fmt: skip
_NSN_LENGTH = {"44": 10, "49": 11, "34": 9, "33": 9, "31": 9, "1": 10}
_LANDLINE_LENGTH = {"44": 10, "49": 10, "34": 9, "33": 9, "31": 9, "1": 10}


def _provider_values(fake: Any, attribute: str) -> list[str]:
    for provider in fake.get_providers():
        values = getattr(provider, attribute, None)
        if values:
            return [str(v) for v in dict.fromkeys(values)]
    return []


def _postcodes(spec: _Spec, seed_code: Any, prng: random.Random) -> tuple[str, ...]:
    out: list[str] = []
    if spec.postcode_kind == "gb":
        outwards = seed_code if isinstance(seed_code, tuple) else (seed_code,)
        for _ in range(14):
            outward = outwards[prng.randrange(len(outwards))]
            out.append(f"{outward} {prng.randrange(10)}{prng.choice(_GB_LETTERS)}{prng.choice(_GB_LETTERS)}")
    elif spec.postcode_kind == "nl":
        lo, hi = seed_code
        for _ in range(14):
            out.append(f"{prng.randint(lo, hi)} {prng.choice(_NL_LETTERS)}{prng.choice(_NL_LETTERS)}")
    else:
        lo, hi = seed_code
        for _ in range(10):
            out.append(f"{prng.randint(lo, hi):05d}")
    return tuple(dict.fromkeys(out))


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _build_locale(index: int, spec: _Spec, seed: int) -> _Locale:
    fake: Any = Faker(spec.code)
    fake.seed_instance(seed * 7919 + index)
    prng = random.Random(f"cdp-demo-pools:{seed}:{spec.code}")

    def ranked(common: Sequence[str], pool: list[str], extra: Iterable[str]) -> list[str]:
        rest = [name for name in dict.fromkeys([*pool, *extra]) if name not in common]
        prng.shuffle(rest)
        return [*common, *rest]

    firsts: list[_Choice[str]] = []
    for sex, attribute in enumerate(("first_names_male", "first_names_female")):
        pool = _provider_values(fake, attribute)
        names = ranked(spec.common_first[sex], pool, spec.nicknames[sex])
        firsts.append(_zipf(names, offset=4, exponent=0.9))
    last_pool = _provider_values(fake, "last_names")
    last = _zipf(ranked(spec.common_last, last_pool, ()), offset=5, exponent=0.8)

    big = {c.name for c in spec.big_cities}
    cities: list[_City] = []
    for bc in spec.big_cities:
        cities.append(_City(bc.name, bc.variants, bc.state, bc.area, _postcodes(spec, bc.postcode, prng)))
    seen = set(big)
    for _ in range(2_000):
        if len(cities) >= 260:
            break
        name = str(fake.city())
        if name in seen:
            continue
        seen.add(name)
        raw = str(fake.postcode())
        if spec.postcode_kind == "gb":
            code: Any = (raw.split()[0],)
        elif spec.postcode_kind == "nl":
            base = int(_digits(raw)[:4])
            code = (base, min(base + 30, 9999))
        else:
            base = int(_digits(raw)[:5] or "10000")
            code = (base, min(base + 80, 99999))
        areas = _AREA_CODES[spec.cc]
        area = areas[prng.randrange(len(areas))]
        state = str(fake.state_abbr()) if spec.cc == "1" else ""
        cities.append(_City(name, (), state, area, _postcodes(spec, code, prng)))
    streets = [str(fake.street_name()) for _ in range(700)]
    if spec.code == "de_DE":
        streets = [s[:-4] + "straße" if s.endswith("str.") else s for s in streets]
    return _Locale(
        index=index,
        spec=spec,
        first=(firsts[0], firsts[1]),
        last=last,
        cities=_zipf(cities, offset=1.5, exponent=1.0),
        top_cities=tuple(cities[:3]),
        streets=tuple(dict.fromkeys(streets)),
        domains=_Choice(spec.domains),
        nick=spec.nicknames,
    )


@lru_cache(maxsize=2)
def _locales(seed: int) -> tuple[_Locale, ...]:
    """Name, street and city pools per locale: built once per seed from seeded Faker instances."""
    return tuple(_build_locale(i, spec, seed) for i, spec in enumerate(_SPECS))


# ---- calendar ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    iso: tuple[str, ...]
    dmy: tuple[str, ...]
    compact: tuple[str, ...]
    offset: tuple[str, ...]
    month: tuple[str, ...]


@lru_cache(maxsize=1)
def _calendar() -> _Calendar:
    days = [START + timedelta(days=i) for i in range(_NDAYS)]
    return _Calendar(
        iso=tuple(d.isoformat() for d in days),
        dmy=tuple(f"{d.day:02d}/{d.month:02d}/{d.year}" for d in days),
        compact=tuple(f"{d.year}{d.month:02d}{d.day:02d}" for d in days),
        offset=tuple("+02:00" if 4 <= d.month <= 10 else "+01:00" for d in days),
        month=tuple(f"{d.year}-{d.month:02d}" for d in days),
    )


# ---- text noise ----------------------------------------------------------------------------------

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _adjacent_keys() -> dict[str, str]:
    out: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for c, ch in enumerate(row):
            near = [row[c - 1] if c else "", row[c + 1] if c + 1 < len(row) else ""]
            for other in (r - 1, r + 1):
                if 0 <= other < len(_ROWS):
                    near.extend(_ROWS[other][max(c - 1, 0) : c + 1])
            out[ch] = "".join(n for n in near if n)
    return out


_ADJ = _adjacent_keys()
_DE_TRANS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})
_SPECIAL = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                          "ł": "l", "Ł": "L", "đ": "d"})  # fmt: skip


@lru_cache(maxsize=65536)
def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=65536)
def _german_ascii(text: str) -> str:
    return _strip_accents(text.translate(_DE_TRANS))


@lru_cache(maxsize=65536)
def _slug(text: str, german: bool) -> str:
    base = _german_ascii(text) if german else _strip_accents(text)
    return "".join(ch for ch in base.lower() if ch.isalnum())


def _typo(rng: random.Random, text: str) -> str:
    """One keyboard slip: an adjacent key, a transposition, a dropped or a doubled letter."""
    n = len(text)
    if n < 3:
        return text
    for _ in range(4):
        i = rng.randrange(1, n)
        op = rng.random()
        if op < 0.4:
            ch = text[i]
            near = _ADJ.get(ch.lower())
            if not near:
                continue
            rep = near[rng.randrange(len(near))]
            out = text[:i] + (rep.upper() if ch.isupper() else rep) + text[i + 1 :]
        elif op < 0.7:
            j = i if i < n - 1 else n - 2
            out = text[:j] + text[j + 1] + text[j] + text[j + 2 :]
        elif op < 0.85:
            out = text[:i] + text[i + 1 :]
        else:
            out = text[: i + 1] + text[i:]
        if out != text and out.strip():
            return out
    return text


def _mojibake(text: str) -> str:
    """UTF-8 bytes read as cp1252 by a legacy import ("MÃœLLER")."""
    return text.encode("utf-8").decode("cp1252", errors="replace").replace("\ufffd", "?")


_ABBREVIATIONS = (
    ("Straße", "Str."), ("straße", "str."), ("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"),
    ("Lane", "Ln"), ("Drive", "Dr"), ("Court", "Ct"), ("Place", "Pl"), ("Square", "Sq"), ("Gardens", "Gdns"),
    ("Calle ", "C/ "), ("Avenida", "Avda."), ("Plaza", "Pza."), ("Paseo", "Pº"), ("Camino", "Cno."),
    ("avenue", "av."), ("boulevard", "bd"), ("chemin", "ch."), ("impasse", "imp."), ("place", "pl."),
    ("straat", "str."), ("laan", "ln."), ("Allee", "Al."), ("Platz", "Pl."),
)  # fmt: skip


def _abbreviate(street: str) -> str:
    for word, short in _ABBREVIATIONS:
        if word in street:
            return street.replace(word, short, 1)
    return street


class _Seen:
    """A Bloom filter over strings: ``add`` is False when the value may already be taken. A false
    positive only makes the caller pick another variant, so emails and phones stay unique between
    different people in bounded memory (a few MB per million people)."""

    def __init__(self, capacity: int) -> None:
        bits = 1 << max(20, (max(capacity, 1) * 40).bit_length())
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)

    def add(self, text: str) -> bool:
        h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")
        mask, bits = self._mask, self._bits
        i1, i2, i3 = h & mask, (h >> 42) & mask, (h >> 84) & mask
        if bits[i1 >> 3] >> (i1 & 7) & 1 and bits[i2 >> 3] >> (i2 & 7) & 1 and bits[i3 >> 3] >> (i3 & 7) & 1:
            return False
        bits[i1 >> 3] |= 1 << (i1 & 7)
        bits[i2 >> 3] |= 1 << (i2 & 7)
        bits[i3 >> 3] |= 1 << (i3 & 7)
        return True


class _Ids:
    """Record ids that say nothing about order or person: an affine permutation of a counter over a
    fixed id space. The top of the space is reserved for orphan references (ids never issued)."""

    def __init__(self, rng: random.Random, space: int) -> None:
        self.space = space
        a = rng.randrange(space // 3, space - 1)
        while math.gcd(a, space) != 1:
            a += 1
        self.a, self.b = a, rng.randrange(space)
        self.issued = 0
        self.orphans = 0

    def next(self) -> int:
        value = (self.a * self.issued + self.b) % self.space
        self.issued += 1
        return value

    def orphan(self) -> int:
        self.orphans += 1
        return (self.a * (self.space - self.orphans) + self.b) % self.space


_json_string: Callable[[str], str] = json.encoder.encode_basestring

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, r = divmod(value, 62)
        out.append(_B62[r])
    return "".join(reversed(out))


# ---- people --------------------------------------------------------------------------------------

_Address = tuple[str, str, str, _City, str]  # street, number, unit, city, postcode


class _Person:
    __slots__ = (
        "activity", "addr", "addr_old", "birth", "changed", "email", "email_old", "first", "hid", "index",
        "landline", "last", "last2", "last_old", "loc", "middle", "mobile", "mobile_old", "nick", "pid",
        "sex", "since", "suffix", "title",
    )  # fmt: skip

    def __init__(self, loc: _Locale, index: int, hid: int, sex: int) -> None:
        self.loc = loc
        self.index = index
        self.pid = f"P{index + 1:08d}"
        self.hid = f"H{hid:08d}"
        self.sex = sex  # 0 male, 1 female
        self.first = ""
        self.middle = ""
        self.last = ""
        self.last2 = ""  # Spanish second surname
        self.last_old = ""
        self.nick = ""
        self.suffix = ""
        self.title = ""
        self.birth: tuple[int, int, int] = (1980, 1, 1)
        self.email: str | None = None
        self.email_old: str | None = None
        self.mobile: str | None = None
        self.mobile_old: str | None = None
        self.landline: str | None = None
        self.addr: _Address | None = None
        self.addr_old: _Address | None = None
        self.changed = False
        self.activity = 1.0
        self.since = 0


_PHONE_SEPARATOR = {"en_GB": "-", "de_DE": "/", "nl_NL": "-"}
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# ---- interaction vocabularies ---------------------------------------------------------------------

_CRM_KINDS: tuple[tuple[str, float, _Choice[str], str, bool, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Inquiry", 26, _Choice((("E-mail", 40), ("Call", 35), ("Web", 15), ("Live Chat", 10))), "Inbound", False,
     ("Product question", "Price enquiry", "Availability", "Delivery times", "Opening hours"),
     ("Answered", "Answered", "Forwarded", "No reply needed")),
    ("Purchase", 20, _Choice((("Web", 50), ("In Store", 30), ("Call", 20))), "Inbound", True,
     ("Online order", "Store purchase", "Phone order", "Reorder", "Gift card"),
     ("Won", "Won", "Won", "Cancelled")),
    ("Follow-up", 17, _Choice((("Call", 60), ("E-mail", 40))), "Outbound", False,
     ("Follow-up call", "Check satisfaction", "Renewal reminder", "Offer follow-up"),
     ("Reached", "Voicemail", "No answer", "Call back later")),
    ("Quote", 10, _Choice((("E-mail", 80), ("Letter", 20))), "Outbound", True,
     ("Quote sent", "Revised quote", "Bundle offer"), ("Open", "Accepted", "Declined", "Expired")),
    ("Store Visit", 10, _Choice((("In Store", 1),)), "Inbound", False,
     ("Showroom visit", "Product demo", "Fitting appointment"),
     ("Interested", "Not interested", "Bought later")),
    ("Complaint", 8, _Choice((("Call", 50), ("E-mail", 40), ("Letter", 10))), "Inbound", False,
     ("Late delivery", "Damaged item", "Wrong item", "Unfriendly staff", "Overcharged"),
     ("Resolved", "Escalated", "Refund issued", "Open")),
    ("Mailing", 9, _Choice((("Letter", 60), ("E-mail", 40))), "Outbound", False,
     ("Catalogue", "Loyalty offer", "Seasonal offer", "Event invitation"), ("Sent",)),
)  # fmt: skip
_CRM_KIND = _Choice((k, k[1]) for k in _CRM_KINDS)
_HELPDESK_CATEGORIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("Anfrage", 34, ("Frage zur Bestellung", "Lieferzeit", "Produktinformation", "Kundenkonto", "Passwort")),
    (
        "Reklamation",
        28,
        ("Artikel defekt", "Falscher Artikel", "Lieferung unvollständig", "Lieferung verspätet"),
    ),
    ("Störung", 10, ("Login nicht möglich", "App stürzt ab", "Zahlung fehlgeschlagen")),
    ("Rücksendung", 10, ("Rücksendeetikett", "Umtausch", "Erstattung offen")),
    ("Rechnungsfrage", 12, ("Rechnung doppelt", "Betrag falsch", "Mahnung unklar")),
    ("Kündigung", 6, ("Vertrag kündigen", "Newsletter abbestellen", "Konto löschen")),
)
_HELPDESK_CATEGORY = _Choice((c, c[1]) for c in _HELPDESK_CATEGORIES)
_HELPDESK_CHANNEL = _Choice(
    (("E-Mail", 48), ("Telefon", 30), ("Chat", 12), ("Webformular", 7), ("Brief", 2), ("Vor Ort", 1))
)
_HELPDESK_STATUS = _Choice(
    (("gelöst", 45), ("geschlossen", 35), ("offen", 8), ("in Bearbeitung", 8), ("weitergeleitet", 4))
)
_HELPDESK_PRIORITY = _Choice((("niedrig", 25), ("normal", 55), ("hoch", 15), ("dringend", 5)))
_NEWSLETTER_EVENT = _Choice((("open", 62), ("click", 26), ("bounce", 3), ("unsubscribe", 2)))
_NEWSLETTER_CLIENT = _Choice(
    (("Gmail", 35), ("Apple Mail", 30), ("Outlook", 15), ("Yahoo Mail", 5), ("Samsung Email", 8),
     ("Thunderbird", 2), ("Web", 5))
)  # fmt: skip
_CAMPAIGN_THEMES = ("Spring Sale", "Summer Deals", "Back to School", "Black Friday", "Winter Offers",
                    "New Arrivals", "Loyalty Update", "Product News")  # fmt: skip
_SEGMENTS = _Choice((("B2C Standard", 50), ("B2C Premium", 20), ("Prospect", 15), ("SMB", 10), ("VIP", 5)))
_LEAD_SOURCES = ("Web", "Referral", "Trade Fair", "Store", "Cold Call", "Partner", "Newsletter")
_OWNERS = ("A. Patel", "M. Schneider", "L. Dubois", "J. Okafor", "S. Jansen", "R. Torres", "K. Walsh")
_CRM_NOTES = ("Prefers email", "Do not call before 10am", "Interested in premium range",
              "Spouse is also a customer", "Moved? check address", "Asked for catalogue")  # fmt: skip
_BUSINESS_HOURS = _Choice((h, w) for h, w in enumerate(
    (0, 0, 0, 0, 0, 0, 1, 3, 8, 11, 12, 11, 9, 10, 11, 11, 10, 8, 5, 3, 2, 1, 0.5, 0.2)))  # fmt: skip
_EVENING_HOURS = _Choice((h, w) for h, w in enumerate(
    (1, 0.5, 0.3, 0.2, 0.2, 0.5, 2, 5, 7, 6, 5, 5, 6, 5, 5, 5, 5, 6, 8, 10, 11, 9, 6, 3)))  # fmt: skip


@lru_cache(maxsize=4)
def _day_seconds(hours: _Choice[int], size: int = 86_400) -> list[int]:
    """Quantiles of the time of day: a uniform index into this list is a draw from ``hours``, spread
    evenly within each hour."""
    out = []
    cum = hours.cum
    for k in range(size):
        u = (k + 0.5) / size
        h = bisect_right(cum, u)
        lo = cum[h - 1] if h else 0.0
        out.append(min(int((hours.items[h] + (u - lo) / (cum[h] - lo)) * 3600), 86_399))
    return out


class _Rec:
    __slots__ = ("created", "inters", "person", "row")

    def __init__(self, person: _Person, created: int, row: Any, inters: list[tuple[Any, ...]]) -> None:
        self.person = person
        self.created = created
        self.row = row
        self.inters = inters


@dataclass(frozen=True)
class SourceSummary:
    name: str
    line_of_business: str
    records_path: Path
    interactions_path: Path
    mapping_path: Path
    records: int
    persons: int
    duplicate_records: int
    interactions: int
    orphan_interactions: int


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    seed: int
    people: int
    households: int
    sources: dict[str, SourceSummary]
    ground_truth_path: Path
    manifest_path: Path
    noise: dict[str, int] = field(default_factory=dict)
    """Total count per noise type over all sources (details per source in the manifest)."""
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(s.records for s in self.sources.values())

    @property
    def interactions(self) -> int:
        return sum(s.interactions for s in self.sources.values())


def _national_id_display(code: str, value: str) -> str:
    """The other way each country writes its identifier (spaces, dashes, dots)."""
    if code == "en_GB":
        return f"{value[:2]} {value[2:4]} {value[4:6]} {value[6:8]} {value[8:]}"
    if code == "en_US":
        return value.replace("-", "")
    if code == "de_DE":
        return f"{value[:2]} {value[2:5]} {value[5:8]} {value[8:]}"
    if code == "es_ES":
        return f"{value[:8]}-{value[8:]}"
    if code == "fr_FR":
        return f"{value[0]} {value[1:3]} {value[3:5]} {value[5:7]} {value[7:10]} {value[10:13]} {value[13:]}"
    return f"{value[:4]}.{value[4:6]}.{value[6:]}"


def _subset_tables(pool: tuple[str, ...]) -> dict[int, _Choice[tuple[str, ...]]]:
    """For each size, the sets of sources a person is in, weighted by the product of source weights."""
    return {
        k: _Choice((combo, math.prod(SOURCE_WEIGHTS[s] for s in combo)) for combo in combinations(pool, k))
        for k in range(1, len(pool) + 1)
    }


class _Generator:
    def __init__(self, out_dir: Path, people: int, seed: int) -> None:
        self.out_dir = out_dir
        self.people = people
        self.seed = seed
        self.rng = random.Random(seed)
        self.locales = _locales(seed)
        self.locale_choice = _Choice((loc, loc.spec.weight) for loc in self.locales)
        self.cal = _calendar()
        self.business_seconds = _day_seconds(_BUSINESS_HOURS)
        self.evening_seconds = _day_seconds(_EVENING_HOURS)
        self.seen = _Seen(people * 3)
        self.noise: dict[str, Counter[str]] = {s: Counter() for s in SOURCES}
        self.population: Counter[str] = Counter()
        self.multiplicity: Counter[int] = Counter()
        self.locale_counts: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.persons_in: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.interactions: Counter[str] = Counter()
        self.orphans: Counter[str] = Counter()
        self.next_person = 0
        self.next_household = 0
        self.next_interaction: Counter[str] = Counter()
        rng = self.rng
        self.ids = {
            "crm": _Ids(rng, 62**12),
            "helpdesk": _Ids(rng, 9_000_000),
            "billing": _Ids(rng, 100_000_000),
            "newsletter": _Ids(rng, 16**10),
        }
        self.natid_perm = {loc.spec.code: _Ids(rng, self._natid_space(loc.spec.code)) for loc in self.locales}
        self.source_count = _Choice(SOURCE_COUNT_WEIGHTS)
        self.subsets = _subset_tables(SOURCES)
        self.subsets_without_email = _subset_tables(tuple(s for s in SOURCES if s != "newsletter"))
        self.builders: dict[str, Callable[[_Person, bool], _Rec]] = {
            "crm": self._crm,
            "helpdesk": self._helpdesk,
            "billing": self._billing,
            "newsletter": self._newsletter,
        }

    # -- ids -------------------------------------------------------------------------------------

    @staticmethod
    def _natid_space(code: str) -> int:
        return {
            "en_GB": 14 * 19 * 10**6,
            "en_US": 898 * 99 * 9999,
            "de_DE": 9 * 10**9,
            "es_ES": 10**8,
            "fr_FR": 95 * 10**6,
            "nl_NL": 9 * 10**7,
        }[code]

    def _record_id(self, source: str, value: int) -> Any:
        if source == "crm":
            return "00Q" + _base62(value, 12)
        if source == "helpdesk":
            return 1_000_000 + value
        if source == "billing":
            return f"{value:08d}"
        return f"{value:010x}"

    def _national_id(self, p: _Person) -> str | None:
        """A checksum-valid national identifier, unique per person (a permutation of the person index)."""
        code = p.loc.spec.code
        perm = self.natid_perm[code]
        v = (perm.a * p.index + perm.b) % perm.space
        if code == "en_GB":
            head, digits = divmod(v, 10**6)
            first, second = divmod(head, 19)
            prefix = "ACEHJLMOPRSWXY"[first] + "ABCEGHJKLMNPRSTWXYZ"[second]
            return f"{prefix}{digits:06d}{'ABCD'[p.index % 4]}"
        if code == "en_US":
            area, rest = divmod(v, 99 * 9999)
            group, serial = divmod(rest, 9999)
            area += 1
            if area >= 666:
                area += 1
            return f"{area:03d}-{group + 1:02d}-{serial + 1:04d}"
        if code == "de_DE":
            body = f"{v + 10**9:010d}"
            product = 10
            for ch in body:
                total = (int(ch) + product) % 10 or 10
                product = (total * 2) % 11
            check = (11 - product) % 10
            return body + str(check)
        if code == "es_ES":
            return f"{v:08d}{'TRWAGMYFPDXBNJZSQVHLCKE'[v % 23]}"
        if code == "fr_FR":
            y, m, _ = p.birth
            dept, rest = divmod(v, 10**6)
            body = f"{p.sex + 1}{y % 100:02d}{m:02d}{dept + 1:02d}{rest:06d}"
            return f"{body}{97 - int(body) % 97:02d}"
        body = f"{v + 10**7:08d}"
        check = sum(int(d) * w for d, w in zip(body, range(9, 1, -1), strict=True)) % 11
        return None if check == 10 else body + str(check)

    # -- people ----------------------------------------------------------------------------------

    def _birth(self, year: int) -> tuple[int, int, int]:
        rng = self.rng
        month = 1 + int(rng.random() * 12)
        days = _DAYS_IN_MONTH[month - 1] + (1 if month == 2 and year % 4 == 0 else 0)
        return (year, month, 1 + int(rng.random() * days))

    def _first_name(self, loc: _Locale, sex: int) -> str:
        return loc.first[sex].pick(self.rng.random())

    def _surname(self, loc: _Locale) -> str:
        return loc.last.pick(self.rng.random())

    def _address(self, loc: _Locale, city: _City | None = None) -> _Address:
        rng = self.rng
        if city is None:
            city = loc.cities.pick(rng.random())
        street = loc.streets[int(rng.random() * len(loc.streets))]
        number = str(min(int(rng.paretovariate(1.1)), 250))
        r = rng.random()
        code = loc.spec.code
        unit = ""
        if r < 0.05:
            number += "abc"[int(rng.random() * 3)] if code != "en_US" else ""
        elif r < (0.45 if code == "es_ES" else 0.18):
            n = 1 + int(rng.random() * 12)
            unit = {
                "en_GB": f"Flat {n}",
                "en_US": f"Apt {n}{'ABCD'[int(rng.random() * 4)]}",
                "de_DE": f"{n}. OG",
                "es_ES": f"{n}º {'ABCDI'[int(rng.random() * 5)]}",
                "fr_FR": f"Appt {n}",
                "nl_NL": f"{n} hoog",
            }[code]
        postcode = city.postcodes[int(rng.random() * len(city.postcodes))]
        return (street, number, unit, city, postcode)

    def _moved_address(self, loc: _Locale, current: _Address) -> _Address:
        return self._address(loc, current[3] if self.rng.random() < 0.6 else None)

    def _number(self, prefix: str, length: int, head: int = 0, first: str = "23456789") -> str:
        """A number unique between people, kept as "<area or mobile prefix> <subscriber number>" (the
        first ``head`` digits form the prefix when it is longer than ``prefix``)."""
        rnd = self.rng.random
        rest = length - len(prefix) - 1
        number = ""
        for _ in range(20):
            digits = f"{prefix}{first[int(rnd() * len(first))]}{int(rnd() * 10**rest):0{rest}d}"
            split = head or len(prefix)
            number = f"{digits[:split]} {digits[split:]}"
            if self.seen.add("t" + digits):
                break
        return number

    def _mobile(self, loc: _Locale, city: _City) -> str:
        cc = loc.spec.cc
        if cc == "1":
            return self._number(city.area, 10)
        prefixes = _MOBILE_PREFIXES[cc]
        prefix = prefixes[int(self.rng.random() * len(prefixes))]
        head = {"44": 4, "49": 3, "31": 1}.get(cc, 0)
        return self._number(prefix, _NSN_LENGTH[cc], head, "0123456789")

    def _landline(self, loc: _Locale, city: _City) -> str:
        cc = loc.spec.cc
        if cc == "44":
            first = "378" if city.area == "20" else ("2" if len(city.area) < 4 else "23456789")
        elif cc == "33":
            first = "123457"  # 0262/0269 are Réunion and Mayotte
        else:
            first = "23456789"
        return self._number(city.area, _LANDLINE_LENGTH[cc], first=first)

    def _email(self, p: _Person, last: str, *, old: bool = False) -> str:
        rng = self.rng
        loc = p.loc
        german = loc.spec.translit == "de" and rng.random() < 0.75
        f = _slug(p.first if rng.random() > 0.08 or not p.nick else p.nick, german)
        surname = last.split("-")[0] if "-" in last and rng.random() < 0.5 else last
        lst = _slug(surname, german)
        if not f:
            f = "info"
        if not lst:
            lst = f
        yy = f"{p.birth[0] % 100:02d}"
        r = rng.random()
        if r < 0.30:
            local = f"{f}.{lst}"
        elif r < 0.40:
            local = f"{f}{lst}"
        elif r < 0.50:
            local = f"{f[0]}{lst}"
        elif r < 0.62:
            local = f"{f}.{lst}{yy}"
        elif r < 0.68:
            local = f"{f}{yy}"
        elif r < 0.73:
            local = f"{lst}.{f}"
        elif r < 0.78:
            local = f"{f}_{lst}"
        elif r < 0.86:
            local = f"{f}.{lst}{(1 + int(rng.random() * 99))}"
        elif r < 0.92:
            local = f"{f[0]}.{lst}"
        else:
            local = f"{lst}{f[0]}"
        domain = (
            loc.spec.old_domains[int(rng.random() * len(loc.spec.old_domains))]
            if old and rng.random() < 0.6
            else loc.domains.pick(rng.random())
        )
        email = f"{local}@{domain}"
        tries = 0
        while not self.seen.add("e" + email.replace(".", "").replace("googlemail", "gmail")):
            tries += 1
            suffix = yy if tries == 1 else str(1 + int(rng.random() * (99 if tries < 4 else 9999)))
            email = f"{local}{suffix}@{domain}"
        return email

    def _new_person(self, loc: _Locale, hid: int, sex: int, birth_year: int) -> _Person:
        rng = self.rng
        p = _Person(loc, self.next_person, hid, sex)
        self.next_person += 1
        p.first = self._first_name(loc, sex)
        spec = loc.spec
        if spec.middle[sex] and rng.random() < 0.22:
            p.middle = spec.middle[sex][int(rng.random() * len(spec.middle[sex]))]
        elif rng.random() < 0.14:
            p.middle = self._first_name(loc, sex)
            if p.middle == p.first:
                p.middle = ""
        nicks = loc.nick[sex].get(p.first)
        if nicks:
            p.nick = nicks[int(rng.random() * len(nicks))]
        p.birth = self._birth(birth_year)
        p.title = "Dr" if rng.random() < 0.03 else ""
        p.activity = min(rng.paretovariate(1.4), 60.0)
        p.since = int(rng.random() * (_NDAYS - 90))
        self.locale_counts[spec.code] += 1
        return p

    def _contacts(self, p: _Person, city: _City) -> None:
        """Email and mobile, and what they were before (a share of people changed them)."""
        rng = self.rng
        if rng.random() < 0.95:
            p.email = self._email(p, p.last)
            if rng.random() < 0.25:
                p.email_old = self._email(p, p.last_old, old=True)
                self.population["email_changed"] += 1
            elif p.last_old != p.last:
                p.email_old = self._email(p, p.last_old, old=True)
        if rng.random() < 0.85:
            p.mobile = self._mobile(p.loc, city)
            if rng.random() < 0.15:
                p.mobile_old = self._mobile(p.loc, city)
                self.population["phone_changed"] += 1
        p.changed = bool(p.email_old or p.mobile_old or p.addr_old is not None or p.last_old != p.last)

    def _adult_year(self, lo: int = 18, hi: int = 90, mode: float = 38) -> int:
        return 2025 - round(self.rng.triangular(lo, hi, mode))

    def _household(self, limit: int) -> list[_Person]:
        """One household of at most ``limit`` people: a single, a couple, a family with adult children
        (twins, a junior) or a flat-share — all at one address, some with one landline."""
        rng = self.rng
        loc = self.locale_choice.pick(rng.random())
        self.next_household += 1
        hid = self.next_household
        roll = rng.random()
        if limit == 1:
            roll = 0.0
        elif limit == 2 and roll >= 0.93:
            roll = 0.5
        namesake = roll < 0.93 and rng.random() < NAMESAKE_RATE
        addr = self._address(loc, loc.top_cities[int(rng.random() * 3)] if namesake else None)
        addr_old: _Address | None = None
        if rng.random() < 0.15:
            addr_old = self._moved_address(loc, addr)
            self.population["moved_households"] += 1
        landline = self._landline(loc, addr[3]) if rng.random() < loc.spec.landline_rate else None
        spanish = loc.spec.code == "es_ES"
        members: list[_Person] = []

        def settle(p: _Person, home: _Address, before: _Address | None) -> None:
            p.addr, p.addr_old = home, before
            p.landline = landline if home is addr else None
            if p.last_old == "":
                p.last_old = p.last
            self._contacts(p, home[3])
            members.append(p)

        if roll < 0.40:
            kind = "single"
            p = self._new_person(loc, hid, int(rng.random() < 0.5), self._adult_year())
            self._name_single(p, spanish)
            if namesake:
                self._namesake(p)
            settle(p, addr, addr_old)
        elif roll < 0.93:
            family = roll >= 0.72
            kind = "family" if family else "couple"
            mixed = rng.random() < 0.92
            year = (1945 + int(rng.random() * 36)) if family else self._adult_year(24, 88, 45)
            a = self._new_person(loc, hid, 0 if mixed else int(rng.random() < 0.5), year)
            b_year = max(1936, min(year + round(rng.gauss(2 if mixed else 0, 4)), 2004))
            b = self._new_person(loc, hid, 1 if mixed else a.sex, b_year)
            self._name_single(a, spanish)
            self._name_single(b, spanish)
            if namesake:
                self._namesake(a)
            self._marry(a, b, spanish, mixed)
            settle(a, addr, addr_old)
            settle(b, addr, addr_old)
            if rng.random() < SHARED_EMAIL_RATE and a.email and b.email:
                shared = self._household_email(a, b)
                for partner in (a, b):
                    partner.email_old = partner.email_old or partner.email
                    partner.email = shared
                    partner.changed = True
                self.population["shared_email_couples"] += 1
            self.population["couples"] += 1
            if family:
                self._children(loc, hid, a, b, spanish, settle, limit - 2, addr, addr_old)
        else:
            kind = "flatshare"
            for _ in range(min(limit, 2 if rng.random() < 0.7 else 3)):
                p = self._new_person(loc, hid, int(rng.random() < 0.5), self._adult_year(19, 40, 26))
                self._name_single(p, spanish)
                settle(p, addr, addr_old)
        if landline is not None:
            self.population["households_with_landline"] += 1
        self.population[f"households_{kind}"] += 1
        return members

    def _name_single(self, p: _Person, spanish: bool) -> None:
        p.last = self._surname(p.loc)
        if spanish and self.rng.random() < 0.92:
            p.last2 = self._surname(p.loc)
        p.last_old = ""

    def _namesake(self, p: _Person) -> None:
        loc = p.loc
        first, last, sex = loc.spec.namesakes[int(self.rng.random() * len(loc.spec.namesakes))]
        p.first, p.last, p.sex = first, last, 0 if sex == "M" else 1
        nicks = loc.nick[p.sex].get(first)
        p.nick = nicks[0] if nicks else ""
        self.population["namesakes_injected"] += 1

    def _marry(self, a: _Person, b: _Person, spanish: bool, mixed: bool) -> None:
        """Partner b takes a's surname, joins it with a hyphen or keeps their own; a recent marriage
        leaves the maiden name in older systems."""
        rng = self.rng
        if spanish:
            return
        r = rng.random()
        if r < (0.68 if mixed else 0.35):
            maiden = b.last
            b.last = a.last
        elif r < (0.80 if mixed else 0.45):
            maiden = b.last
            b.last = f"{maiden}-{a.last}" if b.loc.spec.code == "de_DE" else f"{a.last}-{maiden}"
            self.population["hyphenated_names"] += 1
        else:
            return
        if rng.random() < 0.35:
            b.last_old = maiden
            self.population["maiden_name_changes"] += 1
        else:
            b.last_old = b.last

    def _household_email(self, a: _Person, b: _Person) -> str:
        rng = self.rng
        german = a.loc.spec.translit == "de"
        last = _slug(a.last, german)
        fa, fb = _slug(a.first, german), _slug(b.first, german)
        both = f"{fa}und{fb}" if german else f"{fa}and{fb}"
        options = (f"{last}.family", f"{fa}.{fb}.{last}", f"{fa[:1]}{fb[:1]}{last}", f"the{last}s", both)
        local = options[int(rng.random() * len(options))]
        domain = a.loc.domains.pick(rng.random())
        email = f"{local}@{domain}"
        while not self.seen.add("e" + email.replace(".", "")):
            email = f"{local}{(1 + int(rng.random() * 999))}@{domain}"
        return email

    def _children(
        self,
        loc: _Locale,
        hid: int,
        a: _Person,
        b: _Person,
        spanish: bool,
        settle: Callable[..., None],
        room: int,
        addr: _Address,
        addr_old: _Address | None,
    ) -> None:
        rng = self.rng
        if room <= 0:
            return
        count = 1 if rng.random() < 0.45 else (2 if rng.random() < 0.7 else 3)
        oldest = max(a.birth[0], b.birth[0])
        twins = rng.random() < TWIN_RATE
        junior_done = False
        made = 0
        while made < min(count, room):
            year = min(oldest + 22 + int(rng.random() * (max(0, min(38, 2007 - oldest - 22)) + 1)), 2007)
            child = self._new_person(loc, hid, int(rng.random() < 0.5), year)
            self._child_surname(child, a, b, spanish)
            father = a if a.sex == 0 else (b if b.sex == 0 else None)
            if (
                father is not None
                and child.sex == 0
                and not junior_done
                and rng.random() < loc.spec.junior_rate * 2
            ):
                child.first, child.nick = father.first, father.nick
                child.suffix, father.suffix = loc.spec.junior_suffix
                junior_done = True
                self.population["junior_senior_pairs"] += 1
            group = [child]
            if twins and made == 0 and room - made >= 2:
                twin = self._new_person(loc, hid, int(rng.random() < 0.5), year)
                twin.birth = child.birth
                self._child_surname(twin, a, b, spanish)
                if rng.random() < 0.35:
                    for _ in range(30):
                        name = self._first_name(loc, twin.sex)
                        if name[0] == child.first[0] and name != child.first:
                            twin.first = name
                            break
                if twin.first == child.first:
                    twin.first = self._first_name(loc, twin.sex)
                    if twin.first == child.first:
                        twin.first = twin.first + "a" if twin.sex else twin.first + "o"
                nicks = loc.nick[twin.sex].get(twin.first)
                twin.nick = nicks[0] if nicks else ""
                group.append(twin)
                self.population["twin_pairs"] += 1
            for member in group:
                if len(group) == 1 and rng.random() < 0.35:
                    settle(member, self._moved_address(loc, addr), addr)
                    self.population["moved_out_children"] += 1
                else:
                    settle(member, addr, addr_old)
            made += len(group)

    @staticmethod
    def _child_surname(child: _Person, a: _Person, b: _Person, spanish: bool) -> None:
        if spanish:
            father, mother = (a, b) if a.sex == 0 else (b, a)
            child.last, child.last2 = father.last, mother.last
        else:
            child.last = a.last
        child.last_old = ""

    # -- sources ---------------------------------------------------------------------------------

    def _pick_sources(self, p: _Person) -> tuple[str, ...]:
        rng = self.rng
        k = self.source_count.pick(rng.random())
        tables = self.subsets if p.email or p.email_old else self.subsets_without_email
        return tables[min(k, len(tables))].pick(rng.random())

    def _old(self, source: str, p: _Person) -> bool:
        return p.changed and self.rng.random() < OLD_SNAPSHOT_RATE[source]

    def _snapshot(
        self, p: _Person, old: bool, nz: Counter[str], shows: str = "nemap"
    ) -> tuple[str, str | None, str | None, _Address | None]:
        """The person as a source saw them: today, or (``old``) before the last change. ``shows`` names
        what the source holds (name, email, mobile, address, phone) so only visible changes count."""
        last = p.last
        email = p.email
        mobile = p.mobile
        addr = p.addr
        if old:
            if p.last_old != p.last:
                last = p.last_old
                if "n" in shows:
                    nz["maiden_name"] += 1
            if p.email_old:
                email = p.email_old
                if "e" in shows:
                    nz["stale_email"] += 1
            if p.mobile_old:
                mobile = p.mobile_old
                if "m" in shows:
                    nz["stale_phone"] += 1
            if p.addr_old is not None:
                addr = p.addr_old
                if "a" in shows:
                    nz["stale_address"] += 1
        return last, email, mobile, addr

    def _created(self, p: _Person) -> int:
        return p.since + int(self.rng.random() * min(400, _NDAYS - p.since))

    def _times(self, created: int, count: int, day_seconds: list[int]) -> list[int]:
        """``count`` moments between ``created`` and the end of the period (or an earlier churn), in
        sorted order, at the time of day the channel is used."""
        rnd = self.rng.random
        end = _NDAYS - 1 if rnd() < 0.75 else min(_NDAYS - 1, created + int(self.rng.expovariate(1 / 500)))
        span = end - created + 1
        n = len(day_seconds)
        out = [(created + int(rnd() * span)) * 86400 + day_seconds[int(rnd() * n)] for _ in range(count)]
        out.sort()
        return out

    def _count(self, p: _Person, base: float, cap: int) -> int:
        return min(int(base * p.activity * (0.3 + self.rng.random())), cap)

    def _email_variant(self, email: str, source: str, nz: Counter[str], *, legacy_upper: float = 0.0) -> str:
        rng = self.rng
        if rng.random() < JUNK_EMAIL_RATE[source]:
            nz["junk_email"] += 1
            return JUNK_EMAILS[int(rng.random() * len(JUNK_EMAILS))]
        local, _, domain = email.partition("@")
        if rng.random() < PLUS_ADDRESS_RATE[source]:
            tags = ("shop", "news", "deals", "crm", "amazon", "2021", "spam")
            local = f"{local}+{tags[int(rng.random() * len(tags))]}"
            nz["plus_address"] += 1
        if domain in ("gmail.com", "googlemail.com") and rng.random() < 0.12:
            if rng.random() < 0.25:
                domain = "googlemail.com" if domain == "gmail.com" else "gmail.com"
                nz["googlemail_swap"] += 1
            else:
                base, plus, tag = local.partition("+")
                if "." in base:
                    base = base.replace(".", "", 1 if rng.random() < 0.5 else -1)
                elif len(base) > 3:
                    i = rng.randrange(1, len(base) - 1)
                    base = base[:i] + "." + base[i:]
                local = base + plus + tag
                nz["gmail_dots"] += 1
        if rng.random() < 0.005:
            local = _typo(rng, local)
            nz["typo_email"] += 1
        out = f"{local}@{domain}"
        if rng.random() < legacy_upper:
            nz["email_upper_case"] += 1
            return out.upper()
        if rng.random() < 0.02:
            nz["email_mixed_case"] += 1
            return local.capitalize() + "@" + domain
        return out

    def _phone_text(self, loc: _Locale, number: str, style: str) -> str:
        """Render a number stored as "<area or mobile prefix> <subscriber>" in one of the ways people
        and systems write it: national, compact, locale separators, international with or without the
        trunk zero, or with the 00 prefix."""
        spec = loc.spec
        cc, trunk, code = spec.cc, spec.trunk, spec.code
        head, _, tail = number.partition(" ")
        nsn = head + tail
        intl = style.startswith("intl")
        if code == "en_US":
            a, b, c = nsn[:3], nsn[3:6], nsn[6:]
            if style == "national":
                return f"({a}) {b}-{c}"
            if style == "compact":
                return nsn
            if style == "alt":
                return f"{a}-{b}-{c}" if head else f"{a}.{b}.{c}"
            if style == "intl":
                return f"+1 {a}-{b}-{c}"
            if style == "intl_compact":
                return f"+1{nsn}"
            return f"1-{a}-{b}-{c}" if style == "intl_trunk" else f"001 {a} {b} {c}"
        if code == "fr_FR":
            spaced = f"{nsn[0]} " + " ".join(nsn[i : i + 2] for i in range(1, 9, 2))
            if not intl:
                national = trunk + nsn
                if style == "compact":
                    return national
                pairs = " ".join(national[i : i + 2] for i in range(0, 10, 2))
                return pairs if style == "national" else pairs.replace(" ", ".")
            if style == "intl":
                return f"+33 {spaced}"
            if style == "intl_compact":
                return f"+33{nsn}"
            return f"+33 (0){spaced}" if style == "intl_trunk" else f"0033 {spaced}"
        if code == "es_ES":
            if style == "national":
                return f"{nsn[:3]} {nsn[3:6]} {nsn[6:]}"
            if style == "compact":
                return nsn
            if style == "alt":
                return f"{nsn[:3]}-{nsn[3:5]}-{nsn[5:7]}-{nsn[7:]}"
            if style == "intl":
                return f"+34 {nsn[:3]} {nsn[3:6]} {nsn[6:]}"
            if style == "intl_compact":
                return f"+34{nsn}"
            return f"34 {nsn}" if style == "intl_trunk" else f"0034 {nsn}"
        # GB, DE, NL: trunk 0 + area or mobile prefix + subscriber number
        if style == "national":
            return f"{trunk}{head} {tail}"
        if style == "compact":
            return trunk + nsn
        if style == "alt":
            return f"{trunk}{head}{_PHONE_SEPARATOR[code]}{tail}"
        if style == "intl":
            return f"+{cc} {head} {tail}"
        if style == "intl_compact":
            return f"+{cc}{nsn}"
        if style == "intl_trunk":
            return f"+{cc} (0){head} {tail}"
        return f"00{cc} {head} {tail}"

    def _phone_variant(
        self, loc: _Locale, nsn: str, styles: _Choice[str], nz: Counter[str], junk: float
    ) -> str:
        rng = self.rng
        if rng.random() < junk:
            nz["junk_phone"] += 1
            return JUNK_PHONES[int(rng.random() * len(JUNK_PHONES))]
        style = styles.pick(rng.random())
        nz["phone_international_format" if style.startswith("intl") else "phone_national_format"] += 1
        return self._phone_text(loc, nsn, style)

    def _given(self, p: _Person, nz: Counter[str], *, middle: float, nick: float, typo: float = 0.0) -> str:
        rng = self.rng
        first = p.first
        if p.middle and rng.random() < middle:
            first = f"{first} {p.middle}"
            nz["middle_name_in_given"] += 1
        elif p.nick and rng.random() < nick:
            first = p.nick
            nz["nickname"] += 1
        if typo and rng.random() < typo:
            first = _typo(rng, first)
            nz["typo_first_name"] += 1
        return first

    def _ascii_variant(self, text: str, p: _Person, nz: Counter[str]) -> str:
        if text.isascii():
            return text
        if p.loc.spec.translit == "de" and self.rng.random() < 0.6:
            nz["transliterated"] += 1
            return _german_ascii(text)
        nz["accents_stripped"] += 1
        return _strip_accents(text)

    def _city_variant(self, city: _City, nz: Counter[str], rate: float) -> str:
        """Exonyms and other spellings (München/Munich, Den Haag/'s-Gravenhage), no accents, or a typo."""
        rng = self.rng
        if rng.random() >= rate:
            return city.name
        if city.variants:
            nz["city_variant"] += 1
            return city.variants[int(rng.random() * len(city.variants))]
        if not city.name.isascii():
            nz["city_variant"] += 1
            return _strip_accents(city.name)
        if rng.random() < 0.3:
            nz["typo_city"] += 1
            return _typo(rng, city.name)
        return city.name

    def _postcode_variant(
        self, loc: _Locale, postcode: str, nz: Counter[str], lost_zero: float, fmt: float
    ) -> str:
        rng = self.rng
        kind = loc.spec.postcode_kind
        if kind == "num5":
            if postcode[0] == "0" and rng.random() < lost_zero:
                nz["postcode_lost_leading_zero"] += 1
                return postcode.lstrip("0")
            if loc.spec.code == "en_US" and rng.random() < fmt:
                nz["postcode_format"] += 1
                return f"{postcode}-{(1000 + int(rng.random() * 9000))}"
            return postcode
        if rng.random() < fmt:
            nz["postcode_format"] += 1
            return postcode.replace(" ", "") if rng.random() < 0.75 else postcode.lower()
        return postcode

    def _dob_noise(
        self, p: _Person, nz: Counter[str], placeholder: float, swap: float
    ) -> tuple[int, int, int]:
        rng = self.rng
        if rng.random() < placeholder:
            nz["dob_placeholder"] += 1
            return PLACEHOLDER_DOB
        y, m, d = p.birth
        if d <= 12 and d != m and rng.random() < swap:
            nz["dob_day_month_swapped"] += 1
            return (y, d, m)
        if rng.random() < 0.005:
            nz["dob_typo"] += 1
            if rng.random() < 0.5:
                return (y + (1 if rng.random() < 0.5 else -1), m, d)
            return (y, m, d + 1 if d < 28 else d - 1)
        return p.birth

    # crm ---------------------------------------------------------------------------------------

    _CRM_PHONE = _Choice(
        (("national", 35), ("compact", 10), ("alt", 10), ("intl", 25), ("intl_compact", 10),
         ("intl_trunk", 5), ("intl_00", 5))
    )  # fmt: skip

    def _crm(self, p: _Person, old: bool) -> _Rec:
        rng = self.rng
        rnd = rng.random
        nz = self.noise["crm"]
        loc = p.loc
        spec = loc.spec
        last, email, mobile, addr = self._snapshot(p, old, nz)
        first = self._given(p, nz, middle=0.25, nick=0.12)
        if p.last2:
            if rnd() < 0.45:
                nz["second_surname_dropped"] += 1
            else:
                last = f"{last} {p.last2}"
        if p.suffix and rnd() < 0.4:
            last = f"{last} {p.suffix}"
            nz["generational_suffix"] += 1
        if last[:1].islower() and rnd() < 0.25:
            last = last[0].upper() + last[1:]
            nz["particle_variant"] += 1
        if rnd() < 0.15:
            first, last = self._ascii_variant(first, p, nz), self._ascii_variant(last, p, nz)
        if rnd() < 0.025:
            if rnd() < 0.5:
                first = _typo(rng, first)
                nz["typo_first_name"] += 1
            else:
                last = _typo(rng, last)
                nz["typo_last_name"] += 1
        if rnd() < 0.015:
            first, last = last, first
            nz["swapped_names"] += 1
        r = rnd()
        if r < 0.03:
            first, last = first.lower(), last.lower()
            nz["lower_case_name"] += 1
        elif r < 0.05:
            first, last = first.upper(), last.upper()
            nz["upper_case_name"] += 1
        if rnd() < 0.002:
            first, last = "Test", last if rnd() < 0.5 else "Test"
            nz["junk_name"] += 1

        email_text = ""
        if email and rnd() >= 0.06:
            email_text = self._email_variant(email, "crm", nz)
        phone_text = ""
        r = rnd()
        number = mobile if r < 0.7 else (p.landline or mobile) if r < 0.85 else None
        if number:
            phone_text = self._phone_variant(loc, number, self._CRM_PHONE, nz, 0.006)
        dob_text = ""
        if rnd() < 0.7:
            y, m, d = self._dob_noise(
                p, nz, DOB_PLACEHOLDER_RATE["crm"], 0.4 if spec.code == "en_US" else 0.02
            )
            dob_text = f"{d:02d}/{m:02d}/{y}"
        street = number_text = town = postcode = state = ""
        if addr is not None and rnd() < 0.9:
            street, number_text = addr[0], addr[1]
            if rnd() < 0.12:
                street = _abbreviate(street)
                nz["street_abbreviated"] += 1
            if rnd() < 0.015:
                street = _typo(rng, street)
                nz["typo_street"] += 1
            if rnd() < 0.05:
                street = f"{number_text} {street}" if spec.number_first else f"{street} {number_text}"
                number_text = ""
                nz["house_number_in_street"] += 1
            town = self._city_variant(addr[3], nz, 0.06)
            postcode = self._postcode_variant(loc, addr[4], nz, 0.04, 0.15)
            state = addr[3].state
        r = rnd()
        if r < (0.15 if spec.country == "GB" else 0.03):
            country = ""
            nz["country_missing"] += 1
        elif r < 0.55:
            country = spec.country
        else:
            country = spec.country_names[int(rng.random() * len(spec.country_names))]
            nz["country_as_name"] += 1
        salutation = "Dr" if p.title else ("Mr" if p.sex == 0 else ("Mrs", "Ms")[rng.random() < 0.5])
        created = self._created(p)
        row = [
            "", salutation, first, last, email_text, phone_text, dob_text, street, number_text, town,
            postcode, state, country, _SEGMENTS.pick(rnd()), str(int(rng.random() * 101)),
            _LEAD_SOURCES[int(rnd() * len(_LEAD_SOURCES))], _OWNERS[int(rnd() * len(_OWNERS))],
            self.cal.dmy[created], "", _CRM_NOTES[int(rnd() * len(_CRM_NOTES))] if rnd() < 0.15 else "",
        ]  # fmt: skip
        inters: list[tuple[Any, ...]] = []
        currency = spec.currency
        for t in self._times(created, self._count(p, 1.0, 250), self.business_seconds):
            kind = _CRM_KIND.pick(rnd())
            amount = f"{rng.lognormvariate(4.1, 0.9):.2f}" if kind[4] else ""
            inters.append(
                (t, kind[2].pick(rnd()), kind[3], kind[0], kind[5][int(rng.random() * len(kind[5]))],
                 kind[6][int(rng.random() * len(kind[6]))], amount, currency if amount else "",
                 _OWNERS[int(rng.random() * len(_OWNERS))])
            )  # fmt: skip
        return _Rec(p, created, row, inters)

    # helpdesk ----------------------------------------------------------------------------------

    def _free_name(self, p: _Person, last: str, email: str | None, nz: Counter[str]) -> str:
        rng = self.rng
        rnd = rng.random
        first = p.first
        if p.last2 and rnd() < 0.4:
            last = f"{last} {p.last2}"
        if p.suffix and rnd() < 0.3:
            last = f"{last} {p.suffix}"
            nz["generational_suffix"] += 1
        titles = p.loc.spec.titles[p.sex]
        r = rnd()
        if r < 0.40:
            name = f"{first} {last}"
        elif r < 0.55:
            name = f"{last}, {first}"
            nz["name_last_comma_first"] += 1
        elif r < 0.65:
            name = f"{titles[int(rng.random() * len(titles))]} {first[0]}. {last}"
            nz["name_title_initial"] += 1
        elif r < 0.68:
            name = f"{titles[int(rng.random() * len(titles))]} {last}"
            nz["name_title_only"] += 1
        elif r < 0.76:
            name = f"{first} {last}".lower()
            nz["lower_case_name"] += 1
        elif r < 0.79:
            name = f"{last.upper()} {first}"
            nz["name_last_upper_first"] += 1
        elif r < 0.83:
            name = first
            nz["name_first_only"] += 1
        elif r < 0.88 and p.middle:
            name = f"{first} {p.middle} {last}"
            nz["middle_name_in_given"] += 1
        elif r < 0.93 and p.nick:
            name = f"{p.nick} {last}"
            nz["nickname"] += 1
        elif r < 0.96 and email and "@" in email:
            name = email.split("@")[0]
            nz["name_from_email"] += 1
        elif r < 0.98:
            name = f"{first[0]}. {last}"
            nz["name_initial"] += 1
        else:
            name = f"{first} {last}"
        if rnd() < 0.1:
            name = self._ascii_variant(name, p, nz)
        if rnd() < 0.02:
            name = _typo(rng, name)
            nz["typo_name"] += 1
        return name

    def _helpdesk(self, p: _Person, old: bool) -> _Rec:
        rng = self.rng
        rnd = rng.random
        nz = self.noise["helpdesk"]
        last, email, _, addr = self._snapshot(p, old, nz, "nea")
        email_text: str | None = None
        if email and rnd() >= 0.08:
            email_text = self._email_variant(email, "helpdesk", nz)
        created = self._created(p)
        row: dict[str, Any] = {
            "KontaktId": 0,
            "Name": self._free_name(p, last, email_text, nz),
            "EMail": email_text,
        }
        if addr is not None and rnd() < 0.85:
            city = self._city_variant(addr[3], nz, 0.08)
            r = rnd()
            if r < 0.04:
                city = city.lower()
                nz["city_lower_case"] += 1
            elif r < 0.07:
                city = f"{addr[4]} {city}"
                nz["city_with_postcode"] += 1
            row["Ort"] = city
        row["Sprache"] = p.loc.spec.language
        cal = self.cal
        hh, rest = divmod(self.business_seconds[int(rnd() * 86_400)], 3600)
        row["AngelegtAm"] = (
            f"{cal.iso[created]}T{hh:02d}:{rest // 60:02d}:{rest % 60:02d}{cal.offset[created]}"
        )
        row["LetzterKontakt"] = None
        inters: list[tuple[Any, ...]] = []
        for t in self._times(created, max(1, self._count(p, 0.6, 80)), self.business_seconds):
            cat = _HELPDESK_CATEGORY.pick(rnd())
            inters.append(
                (t, _HELPDESK_CHANNEL.pick(rnd()), "eingehend" if rnd() < 0.85 else "ausgehend", cat[0],
                 cat[2][int(rng.random() * len(cat[2]))], _HELPDESK_STATUS.pick(rnd()),
                 _HELPDESK_PRIORITY.pick(rnd()))
            )  # fmt: skip
        return _Rec(p, created, row, inters)

    # billing -----------------------------------------------------------------------------------

    _BILLING_PHONE = _Choice(
        (("national", 30), ("compact", 35), ("alt", 15), ("intl", 5), ("intl_compact", 5), ("intl_00", 10))
    )

    def _legacy(self, text: str, p: _Person, upper: bool, nz: Counter[str]) -> str:
        """What a cp1252 legacy system keeps of a value: often upper case, sometimes without accents,
        rarely UTF-8 read as cp1252; characters it cannot hold become '?'."""
        if upper:
            text = text.upper()
        if text.isascii():
            return text
        r = self.rng.random()
        if r < 0.006:
            nz["mojibake"] += 1
            text = _mojibake(text)
        elif r < 0.2:
            text = self._ascii_variant(text, p, nz)
        try:
            text.encode(BILLING_ENCODING)
        except UnicodeEncodeError:
            nz["unencodable_replaced"] += 1
            text = text.encode(BILLING_ENCODING, errors="replace").decode(BILLING_ENCODING)
        return text

    def _billing(self, p: _Person, old: bool) -> _Rec:
        rng = self.rng
        rnd = rng.random
        nz = self.noise["billing"]
        loc = p.loc
        spec = loc.spec
        last, email, mobile, addr = self._snapshot(p, old, nz)
        upper = rnd() < BILLING_UPPER_CASE_RATE
        if upper:
            nz["upper_case_name"] += 1
        forenames = p.first
        r = rnd()
        if r < 0.06:
            forenames = ".".join(n[0] for n in (p.first, p.middle) if n) + "."
            nz["initials_only"] += 1
        elif p.middle and r < 0.75:
            forenames = f"{p.first} {p.middle}"
            nz["middle_name_in_given"] += 1
        if p.last2:
            if rnd() < 0.92:
                last = f"{last} {p.last2}"
            else:
                nz["second_surname_dropped"] += 1
        if p.suffix and rnd() < 0.3:
            last = f"{last} {p.suffix.rstrip('.')}"
            nz["generational_suffix"] += 1
        if " " in last and last[:1].islower() and rnd() < 0.15:
            particle, _, core = last.rpartition(" ")
            last = f"{core} {particle}"
            nz["particle_variant"] += 1
        if rnd() < 0.02:
            if rnd() < 0.5:
                forenames = _typo(rng, forenames)
                nz["typo_first_name"] += 1
            else:
                last = _typo(rng, last)
                nz["typo_last_name"] += 1
        if rnd() < 0.02:
            forenames, last = last, forenames
            nz["swapped_names"] += 1
        surname = self._legacy(last, p, upper, nz)
        forenames = self._legacy(forenames, p, upper, nz)
        title = (
            ("DR" if p.title else ("MR" if p.sex == 0 else ("MRS", "MS")[rnd() < 0.4])) if rnd() < 0.8 else ""
        )
        dob = ""
        if rnd() < 0.75:
            y, m, d = self._dob_noise(p, nz, DOB_PLACEHOLDER_RATE["billing"], 0.0)
            if rnd() < 0.01 and d <= 12 and d != m:
                nz["dob_day_month_swapped"] += 1
                m, d = d, m
            dob = f"{y}{m:02d}{d:02d}"
        addr1 = addr2 = zip_code = town = ""
        if addr is not None:
            street = addr[0]
            if rnd() < 0.45:
                street = _abbreviate(street)
                nz["street_abbreviated"] += 1
            if rnd() < 0.015:
                street = _typo(rng, street)
                nz["typo_street"] += 1
            if spec.number_first:
                addr1 = f"{addr[1]} {street}"
            elif spec.code == "es_ES":
                addr1 = f"{street}, {addr[1]}"
            else:
                addr1 = f"{street} {addr[1]}"
            addr1 = self._legacy(addr1, p, upper, nz)
            addr2 = self._legacy(addr[2], p, upper, nz)
            zip_code = self._postcode_variant(loc, addr[4], nz, BILLING_LOST_ZERO_RATE, 0.45)
            town = self._legacy(self._city_variant(addr[3], nz, 0.03), p, upper, nz)
        ctry = spec.country
        if rnd() < (0.25 if spec.country == "DE" else 0.02):
            ctry = ""
            nz["country_missing"] += 1
        tel = ""
        if rnd() < 0.65:
            number = p.landline if p.landline and rnd() < 0.5 else mobile
            if number:
                tel = self._phone_variant(loc, number, self._BILLING_PHONE, nz, 0.015)
        email_text = ""
        if email and rnd() < 0.55:
            email_text = self._email_variant(email, "billing", nz, legacy_upper=0.4 if upper else 0.0)
        natid = ""
        if rnd() < 0.35:
            value = self._national_id(p)
            if value:
                r = rnd()
                if r < 0.015:
                    i = int(rng.random() * len(value))
                    digit = str((int(value[i]) + 1) % 10) if value[i].isdigit() else value[i]
                    natid = value[:i] + digit + value[i + 1 :]
                    nz["national_id_typo"] += 1
                elif r < 0.02:
                    natid = "000000000"
                    nz["junk_national_id"] += 1
                elif r < 0.2:
                    natid = _national_id_display(p.loc.spec.code, value)
                    nz["national_id_format"] += 1
                else:
                    natid = value
        created = self._created(p)
        row = [
            "", title, surname, forenames, dob, addr1, addr2, zip_code, town, ctry, tel, email_text, natid,
            self.cal.compact[created], "A" if rnd() < 0.8 else ("C", "S")[rnd() < 0.4],
            ("DD", "CC", "INV", "PP")[int(rnd() * 4)], "", ("SYS", "BATCH01", "MIGR")[int(rnd() * 3)],
        ]  # fmt: skip
        inters: list[tuple[Any, ...]] = []
        currency = spec.currency
        end = (_NDAYS - 1) * 86400
        for t in self._times(created, self._count(p, 0.9, 120), self.business_seconds):
            cents = int(rng.lognormvariate(4.3, 0.8) * 100)
            amount = f"{cents // 100},{cents % 100:02d}"
            inters.append(
                (t, "INV", "EMAIL" if rnd() < 0.6 else "POST", "O", amount, currency, "INVOICE", "PAID")
            )
            r = rnd()
            if r < 0.06:
                due = t + 35 * 86400
                if due <= end:
                    inters.append((due, "DUN", "POST", "O", amount, currency, "REMINDER", "OVERDUE"))
            elif r < 0.1:
                credit = f"-{cents // 400},{cents % 100:02d}"
                credit_t = t + 86400 * (3 + int(rnd() * 18))
                inters.append((credit_t, "CRN", "EMAIL", "O", credit, currency, "CREDIT NOTE", "SETTLED"))
            pay = t + 86400 * (2 + int(rng.random() * 29))
            if pay <= end and r >= 0.02:
                channel = ("PORTAL", "PORTAL", "PORTAL", "CASH", "PHONE")[int(rng.random() * 5)]
                inters.append((pay, "PAY", channel, "I", amount, currency, "PAYMENT RECEIVED", "PAID"))
        inters = [i for i in inters if i[0] <= end]
        return _Rec(p, created, row, inters)

    # newsletter --------------------------------------------------------------------------------

    def _newsletter(self, p: _Person, old: bool) -> _Rec:
        rng = self.rng
        rnd = rng.random
        nz = self.noise["newsletter"]
        spec = p.loc.spec
        _, email, _, _ = self._snapshot(p, old, nz, "e")
        email = email or p.email or p.email_old or ""
        email_text = self._email_variant(email, "newsletter", nz)
        first = ""
        r = rnd()
        if r >= 0.18:
            first = self._given(p, nz, middle=0.03, nick=0.10, typo=0.015)
            r2 = rnd()
            if r2 < 0.12:
                first = first.lower()
                nz["lower_case_name"] += 1
            elif r2 < 0.16:
                first = f"{first} {p.last}"
                nz["full_name_in_first_name"] += 1
        country = ""
        if rnd() < 0.35:
            country = spec.country.lower() if rnd() < 0.5 else spec.country
            if spec.country == "GB" and rnd() < 0.5:
                country = "uk"
        else:
            nz["country_missing"] += 1
        created = self._created(p)
        cal = self.cal
        inters: list[tuple[Any, ...]] = []
        status = "subscribed"
        times = self._times(created, self._count(p, 1.0, 300), self.evening_seconds)
        signup_t = created * 86400 + self.evening_seconds[int(rnd() * 86_400)]
        inters.append((signup_t, "signup", f"{cal.month[created]} Welcome", "Web"))
        for t in times:
            if t <= signup_t:
                continue
            kind = _NEWSLETTER_EVENT.pick(rnd())
            day = t // 86400
            theme = _CAMPAIGN_THEMES[(day // 30) % len(_CAMPAIGN_THEMES)]
            inters.append((t, kind, f"{cal.month[day]} {theme}", _NEWSLETTER_CLIENT.pick(rnd())))
            if kind == "unsubscribe":
                status = "unsubscribed"
                break
            if kind == "bounce" and rnd() < 0.3:
                status = "bounced"
                break
        row = [
            "", email_text, first, country, cal.iso[created],
            ("website", "checkout", "popup", "event", "import")[int(rng.random() * 5)],
            "double" if rnd() < 0.7 else "single", status, "", ("main", "offers")[rnd() < 0.3],
        ]  # fmt: skip
        return _Rec(p, created, row, inters)

    # -- writing ---------------------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None) -> GenerationSummary:
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = {s: (self.out_dir / FILES[s][0], self.out_dir / FILES[s][1]) for s in SOURCES}
        handles: list[TextIO] = []

        def open_text(path: Path, encoding: str = "utf-8") -> TextIO:
            handle = path.open("w", encoding=encoding, newline="", errors="strict")
            handles.append(handle)
            return handle

        try:
            crm_f = csv.writer(open_text(paths["crm"][0]), lineterminator="\n")
            crm_i = csv.writer(open_text(paths["crm"][1]), lineterminator="\n")
            hd_f = open_text(paths["helpdesk"][0])
            hd_i = open_text(paths["helpdesk"][1])
            bill_f = csv.writer(
                open_text(paths["billing"][0], BILLING_ENCODING), delimiter=";", lineterminator="\n"
            )
            bill_i = csv.writer(
                open_text(paths["billing"][1], BILLING_ENCODING), delimiter=";", lineterminator="\n"
            )
            nl_f = csv.writer(open_text(paths["newsletter"][0]), lineterminator="\n")
            nl_i = open_text(paths["newsletter"][1])
            gt = csv.writer(open_text(self.out_dir / GROUND_TRUTH_FILE), lineterminator="\n")
            crm_f.writerow(CRM_COLUMNS)
            crm_i.writerow(CRM_ACTIVITY_COLUMNS)
            bill_f.writerow(BILLING_COLUMNS)
            bill_i.writerow(BILLING_INVOICE_COLUMNS)
            nl_f.writerow(NEWSLETTER_COLUMNS)
            gt.writerow(("source", "source_record_id", "person_id", "household_id"))
            encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

            def json_records(handle: TextIO) -> Callable[[list[Any]], Any]:
                return lambda rows: handle.write("".join(encoder.encode(r) + "\n" for r in rows))

            def lines(handle: TextIO) -> Callable[[list[Any]], Any]:
                return lambda rows: handle.write("".join(rows))

            sinks = {
                "crm": (crm_f.writerows, crm_i.writerows),
                "helpdesk": (json_records(hd_f), lines(hd_i)),
                "billing": (bill_f.writerows, bill_i.writerows),
                "newsletter": (nl_f.writerows, lines(nl_i)),
            }
            while self.next_person < self.people:
                chunk: list[_Person] = []
                while len(chunk) < _CHUNK_PEOPLE and self.next_person < self.people:
                    chunk.extend(self._household(self.people - self.next_person))
                buffers = self._records(chunk)
                for source in SOURCES:
                    self._write_chunk(source, buffers[source], sinks[source], gt.writerows)
                if progress is not None:
                    progress(self.next_person)
        finally:
            for handle in handles:
                handle.close()
        summary = self._summary(paths, time.perf_counter() - started)
        self._write_manifest(summary)
        return summary

    def _records(self, chunk: list[_Person]) -> dict[str, list[_Rec]]:
        rng = self.rng
        buffers: dict[str, list[_Rec]] = {s: [] for s in SOURCES}
        for p in chunk:
            chosen = self._pick_sources(p)
            self.multiplicity[len(chosen)] += 1
            for source in chosen:
                self.persons_in[source] += 1
                old = self._old(source, p)
                build = self.builders[source]
                buffers[source].append(build(p, old))
                if rng.random() < DUPLICATE_RATE[source]:
                    if source == "newsletter" and not (p.email_old and p.email):
                        continue
                    buffers[source].append(build(p, not old if p.changed else False))
                    self.duplicates[source] += 1
                    self.noise[source]["duplicate_record"] += 1
        return buffers

    def _write_chunk(
        self,
        source: str,
        recs: list[_Rec],
        sinks: tuple[Callable[[list[Any]], Any], Callable[[list[Any]], Any]],
        truth: Callable[[list[Any]], Any],
    ) -> None:
        """Shuffle the chunk's records, give them ids, write them with their ground truth, then write
        their interactions in time order (a small share pointing at ids that were never issued)."""
        rng = self.rng
        rng.shuffle(recs)
        ids = self.ids[source]
        cal = self.cal
        rows: list[Any] = []
        truths: list[tuple[str, Any, str, str]] = []
        pending: list[tuple[int, Any, tuple[Any, ...]]] = []
        for rec in recs:
            rid = self._record_id(source, ids.next())
            inters = rec.inters
            last = max([i[0] for i in inters]) if inters else rec.created * 86400 + 43200
            day, secs = divmod(last, 86400)
            row = rec.row
            if source == "crm":
                row[0] = rid
                row[18] = f"{cal.dmy[day]} {secs // 3600:02d}:{secs % 3600 // 60:02d}"
            elif source == "helpdesk":
                row["KontaktId"] = rid
                clock = f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
                row["LetzterKontakt"] = f"{cal.iso[day]}T{clock}{cal.offset[day]}"
            elif source == "billing":
                row[0] = rid
                row[16] = cal.compact[day]
            else:
                row[0] = rid
                row[8] = cal.iso[day]
            rows.append(row)
            truths.append((source, rid, rec.person.pid, rec.person.hid))
            for inter in inters:
                pending.append((inter[0], rid, inter))
        sinks[0](rows)
        truth(truths)
        self.records[source] += len(rows)
        pending.sort(key=lambda item: item[0])
        sinks[1](self._interaction_rows(source, pending))

    def _interaction_rows(self, source: str, pending: list[tuple[int, Any, tuple[Any, ...]]]) -> list[Any]:
        rnd = self.rng.random
        ids = self.ids[source]
        cal = self.cal
        dmy, iso, compact, offset = cal.dmy, cal.iso, cal.compact, cal.offset
        q = _json_string
        counter = self.next_interaction[source]
        out: list[Any] = []
        append = out.append
        for t, rid, inter in pending:
            counter += 1
            if rnd() < ORPHAN_RATE:
                rid = self._record_id(source, ids.orphan())
                self.orphans[source] += 1
            day, secs = divmod(t, 86400)
            if source == "crm":
                stamp = f"{dmy[day]} {secs // 3600:02d}:{secs % 3600 // 60:02d}"
                append([f"ACT-{counter:09d}", rid, stamp, *inter[1:]])
            elif source == "billing":
                append([f"D{counter:09d}", rid, compact[day], *inter[1:]])
            elif source == "helpdesk":
                stamp = f"{iso[day]}T{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}{offset[day]}"
                append(
                    f'{{"TicketNr":{4_000_000 + counter},"KontaktId":{rid},"Erstellt":"{stamp}",'
                    f'"Kanal":{q(inter[1])},"Richtung":{q(inter[2])},"Kategorie":{q(inter[3])},'
                    f'"Betreff":{q(inter[4])},"Status":{q(inter[5])},"Prioritaet":{q(inter[6])}}}\n'
                )
            else:
                stamp = f"{iso[day]}T{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}Z"
                append(
                    f'{{"event_id":"ev{counter:010x}","subscriber_id":"{rid}","ts":"{stamp}",'
                    f'"type":{q(inter[1])},"campaign":{q(inter[2])},"client":{q(inter[3])}}}\n'
                )
        self.interactions[source] += counter - self.next_interaction[source]
        self.next_interaction[source] = counter
        return out

    def _summary(self, paths: dict[str, tuple[Path, Path]], seconds: float) -> GenerationSummary:
        sources = {
            s: SourceSummary(
                name=s,
                line_of_business=LINE_OF_BUSINESS[s],
                records_path=paths[s][0],
                interactions_path=paths[s][1],
                mapping_path=MAPPINGS_DIR / f"{s}.toml",
                records=self.records[s],
                persons=self.persons_in[s],
                duplicate_records=self.duplicates[s],
                interactions=self.interactions[s],
                orphan_interactions=self.orphans[s],
            )
            for s in SOURCES
        }
        totals: Counter[str] = Counter()
        for counts in self.noise.values():
            totals.update(counts)
        return GenerationSummary(
            out_dir=self.out_dir,
            seed=self.seed,
            people=self.next_person,
            households=self.next_household,
            sources=sources,
            ground_truth_path=self.out_dir / GROUND_TRUTH_FILE,
            manifest_path=self.out_dir / MANIFEST_FILE,
            noise=dict(sorted(totals.items())),
            seconds=seconds,
        )

    def _write_manifest(self, summary: GenerationSummary) -> None:
        noise: dict[str, Any] = {}
        for source in SOURCES:
            records = max(self.records[source], 1)
            for kind, count in self.noise[source].items():
                entry = noise.setdefault(kind, {"total": 0, "by_source": {}, "rate_by_source": {}})
                entry["total"] += count
                entry["by_source"][source] = count
                entry["rate_by_source"][source] = round(count / records, 5)
        manifest = {
            "generator": "cdp.demo.generator",
            "version": GENERATOR_VERSION,
            "faker_version": faker.VERSION,
            "seed": self.seed,
            "people": summary.people,
            "households": summary.households,
            "period": {"start": START.isoformat(), "end": END.isoformat()},
            "ground_truth": GROUND_TRUTH_FILE,
            "sources": {
                s.name: {
                    "line_of_business": s.line_of_business,
                    "records_file": s.records_path.name,
                    "interactions_file": s.interactions_path.name,
                    "mapping": f"cdp/demo/mappings/{s.name}.toml",
                    "encoding": BILLING_ENCODING if s.name == "billing" else "utf-8",
                    "records": s.records,
                    "persons": s.persons,
                    "duplicate_records": s.duplicate_records,
                    "interactions": s.interactions,
                    "orphan_interactions": s.orphan_interactions,
                }
                for s in summary.sources.values()
            },
            "records": summary.records,
            "interactions": summary.interactions,
            "orphan_interactions": sum(self.orphans.values()),
            "persons_by_source_count": {str(k): self.multiplicity[k] for k in sorted(self.multiplicity)},
            "population": dict(sorted(self.population.items())),
            "locales": dict(sorted(self.locale_counts.items())),
            "noise": dict(sorted(noise.items())),
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        summary.manifest_path.write_text(text, encoding="utf-8")


def generate(
    out_dir: Path,
    *,
    people: int,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Write the four sources' record and interaction files, ``ground_truth.csv`` and ``manifest.json``
    for ``people`` fictitious people into ``out_dir``. The same ``(people, seed)`` gives byte-identical
    files. ``progress`` is called after each chunk with the number of people written so far."""
    if people < 1:
        raise ValueError("people must be at least 1")
    if people > 20_000_000:
        raise ValueError("people must be at most 20,000,000")
    return _Generator(Path(out_dir), people, seed).run(progress)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the demo customer data set with ground truth.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    summary = generate(args.out_dir, people=args.people, seed=args.seed)
    rate = summary.people / summary.seconds if summary.seconds else 0.0
    print(
        f"{summary.people:,} people, {summary.records:,} records, {summary.interactions:,} interactions "
        f"in {summary.seconds:.1f}s ({rate:,.0f} people/s) -> {summary.out_dir}"
    )


if __name__ == "__main__":
    main()
