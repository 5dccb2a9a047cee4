"""Vault throughput: encrypt+write and read+decrypt of source records, against the same code path with
encryption switched off.

    python -m bench.vault_throughput [--subjects 100000] [--backends sqlite,postgres]
                                     [--batch 2000] [--repeat 2]

The plaintext baseline swaps only ``Vault.keys`` for a stand-in whose "cipher" is the bare value codec,
so SQL, row building, blind-index tokens, codec and record objects are exactly those of the encrypted
run. Each mode runs in its own fresh database (SQLite file / PostgreSQL schema).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import (
    BenchPlatform,
    Header,
    Stopwatch,
    console,
    current_rss_mib,
    fmt_rate,
    load_average,
    mib,
    parse_backends,
    peak_rss_mib,
    print_table,
    run_isolated,
    temp_platform,
)
from cdp.platform import Platform
from cdp.sources.records import RECORD_TABLE, CustomerRecord, LookupKeys, RecordRepository, SourceRepository
from cdp.vault import Vault, codec
from cdp.vault.cipher import field_aad
from cdp.vault.codec import FieldValue
from cdp.vault.keyring import FileKeyring
from cdp.vault.subject_keys import SubjectKeys, WrappedKey

SEED = 20_261_123
READ_BATCH = 500
ENCRYPTED_FIELDS_PER_RECORD = 16
"""Every CustomerRecord field is one ciphertext: source_record_id, 14 canonical fields (None included,
so absence does not leak) and ``attributes``. 10 canonical fields carry values in the generated data."""
POPULATED_FIELDS = 10

# ---------------------------------------------------------------------------------------------------
# Deterministic data


FIRST_NAMES = (
    "Amélie", "Søren", "Zoë", "José", "Łukasz", "Małgorzata", "Björn", "Øystein", "Ἀλέξανδρος", "Дмитрий",
    "Анастасия", "Οδυσσέας", "Ελένη", "Ngọc", "Thảo", "Đức", "İbrahim", "Çağla", "Şebnem", "Ağ\u0131r",
    "François", "Renée", "Siân", "Dafydd", "Aoife", "Tadhg", "Niamh", "Jürgen", "Grüße", "Ådne",
    "محمد", "فاطمة", "יוסף", "שרה", "अनन्या", "राहुल", "さくら", "太郎", "美咲", "민준", "서연",
    "伟", "秀英", "Kwame", "Chiamaka", "Oluwaseun", "Ngozi", "Mary", "John", "Priya", "Aarav",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schröder", "Nuñez", "García-Peña", "O'Brien", "Mac Giolla Phádraig", "Łęcki", "Wójcik",
    "Dvořák", "Novák", "Håkansson", "Ærøskøbing", "Иванов", "Кузнецова", "Παπαδόπουλος", "Nguyễn",
    "Trần", "Y\u0131lmaz", "Öztürk", "Ferreira", "Gonçalves", "van der Berg", "de la Cruz", "Smith",
    "Jones", "Okonkwo", "Adébáyọ̀", "Mensah", "حداد", "כהן", "शर्मा", "佐藤", "鈴木", "김", "이",
    "王", "李", "Ó Súilleabháin", "Zwetschgenbaum", "Llewellyn-Ap Gruffydd",
)  # fmt: skip
STREETS = (
    "Hauptstraße", "Rue de l'Église", "Calle Mayor", "High Street", "Åsgatan", "Ulica Długa",
    "Via Garibaldi", "Καλλιθέας", "улица Ленина", "Station Road", "Kirkegårdsvej", "Church Lane",
    "Praça do Comércio", "Øvre Slottsgate", "Çarş\u0131 Caddesi", "Nguyễn Huệ", "銀座通り", "Bahnhofstraße",
)  # fmt: skip
CITIES = (
    ("München", "DE"), ("Kraków", "PL"), ("Zürich", "CH"), ("São Paulo", "BR"), ("Malmö", "SE"),
    ("Århus", "DK"), ("Reykjavík", "IS"), ("Αθήνα", "GR"), ("Москва", "RU"), ("İstanbul", "TR"),
    ("Hà Nội", "VN"), ("東京", "JP"), ("서울", "KR"), ("Montréal", "CA"), ("Cardiff", "GB"),
    ("Dún Laoghaire", "IE"), ("Lagos", "NG"), ("Bengaluru", "IN"), ("Tel Aviv", "IL"), ("Lyon", "FR"),
)  # fmt: skip
MAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "post.example")


def _ascii_slug(value: str, fallback: str) -> str:
    slug = "".join(ch for ch in value.lower() if ch.isascii() and ch.isalnum())
    return slug or fallback


class RecordGenerator:
    """Reproducible customers: the same seed always yields the same records, in the same order."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.count = 0

    def record(self) -> tuple[CustomerRecord, LookupKeys]:
        rng = self.rng
        n = self.count
        self.count += 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, country = rng.choice(CITIES)
        email = f"{_ascii_slug(first, 'x')}.{_ascii_slug(last, 'y')}{n}@{rng.choice(MAIL_DOMAINS)}"
        phone = f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(1_000_000, 9_999_999)}"
        record = CustomerRecord(
            source_record_id=f"CRM-{n:08d}",
            first_name=first,
            last_name=last,
            date_of_birth=date(1930, 1, 1) + timedelta(days=rng.randrange(30_000)),
            email=email,
            phone=phone,
            street_number=str(rng.randint(1, 400)) + rng.choice(("", "", "", "a", "B", " bis")),
            address_line1=rng.choice(STREETS),
            city=city,
            postcode=f"{rng.randint(1000, 99999)}",
            country=country,
        )
        lookups = {"email": [email.casefold()], "phone": ["".join(ch for ch in phone if ch.isdigit())]}
        return record, lookups

    def batch(self, size: int) -> list[tuple[CustomerRecord, LookupKeys]]:
        return [self.record() for _ in range(size)]


# ---------------------------------------------------------------------------------------------------
# The encryption-off stand-in


class PlainCipher:
    """Duck-types FieldCipher: the value codec only, no AEAD, no AAD."""

    __slots__ = ("key_version", "subject_id")

    def __init__(self, subject_id: str) -> None:
        self.subject_id = subject_id
        self.key_version = 1

    def encrypt(self, table: str, record_id: str, field_name: str, value: FieldValue) -> bytes:
        return codec.encode(value)

    def decrypt(self, table: str, record_id: str, field_name: str, blob: bytes) -> FieldValue:
        return codec.decode(blob)

    def encrypt_many(self, table: str, record_id: str, values: Mapping[str, FieldValue]) -> dict[str, bytes]:
        return {name: codec.encode(value) for name, value in values.items()}

    def decrypt_many(self, table: str, record_id: str, blobs: Mapping[str, bytes]) -> dict[str, FieldValue]:
        return {name: codec.decode(blob) for name, blob in blobs.items()}


class PlainKeys:
    """Duck-types SubjectKeys: no data key is generated, wrapped, stored or unwrapped."""

    NO_KEY = b""

    def new(self, subject_id: uuid.UUID) -> tuple[WrappedKey, PlainCipher]:
        return WrappedKey(1, 1, self.NO_KEY), PlainCipher(str(subject_id))

    def open(self, subject_id: uuid.UUID, wrapped: WrappedKey) -> PlainCipher:
        return PlainCipher(str(subject_id))


def make_vault(bench: BenchPlatform, mode: str) -> Vault:
    """A fresh Vault (empty data-key cache) over the bench platform's keyring."""
    vault = Vault.from_settings(bench.settings)
    if mode == "plain":
        vault.keys = PlainKeys()  # type: ignore[assignment]
    return vault


# ---------------------------------------------------------------------------------------------------
# Phases


@dataclass
class ModeResult:
    backend: str
    mode: str
    records: int
    write_s: float = 0.0
    reads: dict[str, tuple[int, float]] = field(default_factory=dict)
    """phase name -> (records read, seconds)"""
    cache_notes: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    peak_rss_mib: float = 0.0
    rss_full_cache_mib: float = 0.0


def _chunks(ids: Sequence[uuid.UUID], size: int) -> Iterator[Sequence[uuid.UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def write_phase(platform: Platform, vault: Vault, subjects: int, batch: int) -> tuple[list[uuid.UUID], float]:
    with platform.db.transaction() as session:
        source_id = SourceRepository(session).add("bench-crm", "sales")
    generator = RecordGenerator()
    ids: list[uuid.UUID] = []
    watch = Stopwatch()
    remaining = subjects
    while remaining:
        items = generator.batch(min(batch, remaining))  # generated outside the timed block
        remaining -= len(items)
        with watch, platform.db.transaction() as session:
            ids.extend(RecordRepository(session, vault).add_many(source_id, items))
    return ids, watch.seconds


def read_phase(platform: Platform, vault: Vault, ids: Sequence[uuid.UUID]) -> float:
    watch = Stopwatch()
    read = 0
    with watch:
        for chunk in _chunks(ids, READ_BATCH):
            with platform.db.read() as session:
                read += len(RecordRepository(session, vault).get_many(chunk))
    if read != len(ids):
        raise RuntimeError(f"read back {read} records, expected {len(ids)}")
    return watch.seconds


def check_round_trip(platform: Platform, vault: Vault, ids: Sequence[uuid.UUID]) -> None:
    """The first records read back equal what was generated (guards against a benchmark that measures
    a broken path)."""
    sample = min(len(ids), 50)
    expected = [record for record, _ in RecordGenerator().batch(sample)]
    with platform.db.read() as session:
        got = [stored.data for stored in RecordRepository(session, vault).get_many(ids[:sample])]
    if got != expected:
        raise RuntimeError("round trip mismatch: decrypted records differ from the generated ones")


def _cache_info(vault: Vault) -> str:
    cached = getattr(vault.keys, "_unwrap_cached", None)
    info = getattr(cached, "cache_info", None)
    if info is None:
        return "n/a"
    ci = info()
    return f"hits={ci.hits:,} misses={ci.misses:,} size={ci.currsize:,}/{ci.maxsize:,}"


def _cache_size(vault: Vault) -> int | None:
    cached = getattr(vault.keys, "_unwrap_cached", None)
    info = getattr(cached, "cache_info", None)
    return None if info is None else int(info().maxsize)


def run_mode(backend: str, mode: str, subjects: int, batch: int, repeat: int) -> ModeResult:
    result = ModeResult(backend, mode, subjects)
    with temp_platform(backend, f"vault-{mode}") as bench:
        platform = bench.platform
        console.print(f"[dim]{backend}/{mode}: writing {subjects:,} records…[/dim]")
        ids, result.write_s = write_phase(platform, make_vault(bench, mode), subjects, batch)

        bench.settle()
        check_round_trip(platform, make_vault(bench, mode), ids)

        # Cold: a fresh Vault, so every data key is unwrapped from its stored form. Then a second full
        # pass with the same Vault: "warm" only if every key fits the data-key cache. Best of `repeat`.
        console.print(f"[dim]{backend}/{mode}: reading (cold, then again with the same vault)…[/dim]")
        cold, again = float("inf"), float("inf")
        for _ in range(repeat):
            vault = make_vault(bench, mode)
            cold = min(cold, read_phase(platform, vault, ids))
            result.cache_notes["read cold"] = _cache_info(vault)
            before = _cache_info(vault)
            again = min(again, read_phase(platform, vault, ids))
            result.cache_notes["read again (same vault)"] = f"after: {_cache_info(vault)} (before: {before})"
            result.rss_full_cache_mib = current_rss_mib()  # this vault's cache is as full as it gets
            del vault
        result.reads["read cold"] = (len(ids), cold)
        result.reads["read again (same vault)"] = (len(ids), again)

        # Warm on a working set that fits the cache: prime it, then time further passes.
        capacity = _cache_size(Vault.from_settings(bench.settings))  # same subset in both modes
        subset = ids[: min(len(ids), (capacity or len(ids)) // 2)]
        vault = make_vault(bench, mode)
        read_phase(platform, vault, subset)
        warm = min(read_phase(platform, vault, subset) for _ in range(repeat))
        result.reads["read warm (cache hit)"] = (len(subset), warm)
        result.cache_notes["read warm (cache hit)"] = _cache_info(vault)

        result.sizes = bench.db_size_bytes()
    result.peak_rss_mib = peak_rss_mib()
    return result


def micro_costs(n: int = 20_000) -> list[tuple[str, float]]:
    """Microseconds per operation for the pieces of the read path, in isolation (no database)."""
    with tempfile.TemporaryDirectory(prefix="cdp-vault-micro-") as tmp:
        keys = SubjectKeys(FileKeyring.create(Path(tmp) / "keys" / "keyring.json"))
        subject_ids = [uuid.uuid4() for _ in range(n)]
        wrapped = [keys.new(sid)[0] for sid in subject_ids]
        cipher = keys.new(uuid.uuid4())[1]
        record_ids = [str(uuid.uuid4()) for _ in range(n)]
        values = [f"person{i}@example.com" for i in range(n)]
        blobs = [cipher.encrypt(RECORD_TABLE, r, "email", v) for r, v in zip(record_ids, values, strict=True)]
        payloads = [codec.encode(v) for v in values]
        aead = AESGCM(AESGCM.generate_key(bit_length=256))
        nonce, aad = os.urandom(12), field_aad(RECORD_TABLE, record_ids[0], "email", 1)
        sealed = aead.encrypt(nonce, payloads[0], aad)
        key = AESGCM.generate_key(bit_length=256)
        pairs = list(zip(record_ids, blobs, strict=True))
        subjects = list(zip(subject_ids, wrapped, strict=True))

        def per_op(fn: Callable[[], object]) -> float:
            started = time.perf_counter()
            fn()
            return (time.perf_counter() - started) / n * 1e6

        results = [
            (
                "FieldCipher.decrypt, one field (all of it)",
                per_op(lambda: [cipher.decrypt(RECORD_TABLE, r, "email", b) for r, b in pairs]),
            ),
            (
                "  of which field_aad() (decrypt_many builds the record prefix once)",
                per_op(lambda: [field_aad(RECORD_TABLE, r, "email", 1) for r in record_ids]),
            ),
            (
                "  of which AESGCM.decrypt itself",
                per_op(lambda: [aead.decrypt(nonce, sealed, aad) for _ in pairs]),
            ),
            ("  of which codec.decode", per_op(lambda: [codec.decode(p) for p in payloads])),
        ]
        results.append(
            (
                "SubjectKeys.open, cache miss (unwrap + FieldCipher)",
                per_op(lambda: [keys.open(*s) for s in subjects]),
            )
        )
        results.append(("SubjectKeys.open, cache hit", per_op(lambda: [keys.open(*s) for s in subjects])))
        results.append(("AESGCM(key) construction", per_op(lambda: [AESGCM(key) for _ in pairs])))
        return results


# ---------------------------------------------------------------------------------------------------
# Report


def _ratio(enc: float, plain: float) -> str:
    return f"{enc / plain:.2f}x" if plain > 0 else "n/a"


def report(results: list[ModeResult], batch: int) -> list[str]:
    rows: list[list[object]] = []
    verdicts: list[str] = []
    by_key = {(r.backend, r.mode): r for r in results}
    backends = list(dict.fromkeys(r.backend for r in results))
    for backend in backends:
        plain, enc = by_key[(backend, "plain")], by_key[(backend, "encrypted")]
        phases: list[tuple[str, int, float, int, float]] = [
            ("encrypt+write", enc.records, enc.write_s, plain.records, plain.write_s)
        ]
        for name in enc.reads:
            n_enc, s_enc = enc.reads[name]
            n_plain, s_plain = plain.reads[name]
            phases.append((name, n_enc, s_enc, n_plain, s_plain))
        for name, n_enc, s_enc, n_plain, s_plain in phases:
            for mode, n, s in (("plain", n_plain, s_plain), ("encrypted", n_enc, s_enc)):
                per_rec_plain = s_plain / n_plain
                per_rec_enc = s_enc / n_enc
                rows.append(
                    [
                        backend,
                        f"{name} ({mode})",
                        f"{n:,}",
                        fmt_rate(n, s),
                        fmt_rate(n * ENCRYPTED_FIELDS_PER_RECORD, s),
                        f"{s:.2f}",
                        _ratio(per_rec_enc, per_rec_plain) if mode == "encrypted" else "",
                    ]
                )
        cold = enc.reads["read cold"][1] / plain.reads["read cold"][1]
        warm_n, warm_s = enc.reads["read warm (cache hit)"]
        pwarm_n, pwarm_s = plain.reads["read warm (cache hit)"]
        warm = (warm_s / warm_n) / (pwarm_s / pwarm_n)
        write = enc.write_s / plain.write_s
        verdicts.append(
            f"{backend}: write {write:.2f}x, read cold {cold:.2f}x "
            f"({'meets' if cold <= 1.5 else 'MISSES'} ≤1.5x), "
            f"read warm {warm:.2f}x ({'meets' if warm <= 1.5 else 'MISSES'} ≤1.5x)"
        )
    print_table(
        f"Throughput (write batch {batch:,}, read batch {READ_BATCH}; fields/s counts "
        f"{ENCRYPTED_FIELDS_PER_RECORD} stored values per record, {POPULATED_FIELDS} of them populated)",
        ["backend", "phase (mode)", "records", "records/s", "fields/s", "seconds", "enc/plain time"],
        rows,
    )

    cache_rows = [
        [r.backend, f"{phase} ({r.mode})", note]
        for r in results
        if r.mode == "encrypted"
        for phase, note in r.cache_notes.items()
    ]
    print_table("Data-key cache (encrypted runs)", ["backend", "phase", "lru_cache"], cache_rows)

    size_rows: list[list[object]] = []
    for backend in backends:
        plain, enc = by_key[(backend, "plain")], by_key[(backend, "encrypted")]
        for part in enc.sizes:
            size_rows.append(
                [
                    backend,
                    part,
                    mib(plain.sizes[part]),
                    mib(enc.sizes[part]),
                    _ratio(enc.sizes[part], plain.sizes[part]),
                ]
            )
        total_p, total_e = sum(plain.sizes.values()), sum(enc.sizes.values())
        size_rows.append([backend, "TOTAL", mib(total_p), mib(total_e), _ratio(total_e, total_p)])
        size_rows.append(
            [
                backend,
                "bytes/record",
                f"{total_p / plain.records:,.0f}",
                f"{total_e / enc.records:,.0f}",
                "",
            ]
        )
    print_table("Database size", ["backend", "part", "plain", "encrypted", "enc/plain"], size_rows)

    rss_rows = [
        [r.backend, r.mode, f"{r.rss_full_cache_mib:,.0f} MiB", f"{r.peak_rss_mib:,.0f} MiB"] for r in results
    ]
    print_table(
        "Memory (RSS while one Vault's data-key cache is at its fullest; process peak after each run)",
        ["backend", "mode", "RSS, cache full", "peak RSS so far"],
        rss_rows,
    )
    return verdicts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vault_throughput", description=__doc__)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2, help="read passes per phase; the fastest is kept")
    args = parser.parse_args(argv)
    if args.subjects < 1 or args.batch < 1 or args.repeat < 1:
        parser.error("--subjects, --batch and --repeat must be positive")
    backends = parse_backends(args.backends)

    Header(
        "cdp vault throughput",
        {
            "subjects": f"{args.subjects:,}",
            "backends": ",".join(backends),
            "write batch": args.batch,
            "read passes": f"best of {args.repeat}",
        },
    ).print(backends)
    results: list[ModeResult] = []
    for backend in backends:
        for mode in ("plain", "encrypted"):
            results.append(run_isolated(run_mode, backend, mode, args.subjects, args.batch, args.repeat))
    verdicts = report(results, args.batch)
    micro = run_isolated(micro_costs)
    print_table(
        f"Read-path pieces, isolated (1 record = {ENCRYPTED_FIELDS_PER_RECORD} field decrypts + 1 key open)",
        ["operation", "µs/op"],
        [[name, f"{us:.2f}"] for name, us in micro],
        left=1,
    )
    console.print(
        "[bold]Key ratios (encrypted/plain time per record; target read ≤ 1.5x):[/bold] "
        + "; ".join(verdicts)
        + f"  (load average at end: {load_average()})"
    )


if __name__ == "__main__":
    main()
