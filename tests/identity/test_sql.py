"""The batch pipeline as SQL (cdp.identity.sql) reproduces the NumPy engine exactly — on DuckDB and SQLite.

Synthetic records (duplicates with typos, nicknames, swapped names, transposed and shifted birth dates,
shared household e-mails, junk values, nulls) go through both paths; pair sets, rule attribution, the
satisfied-rules masks, every gamma and every match weight must agree.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from cdp.identity import sql
from cdp.identity.blocking import block
from cdp.identity.comparisons import compare
from cdp.identity.features import MATCH_COLUMNS
from cdp.identity.fellegi_sunter import FrozenFrequencies, MatchModel, compress, score, train
from cdp.identity.settings import (
    DERIVED_COLUMNS,
    LEVEL_KINDS,
    BlockingRule,
    Level,
    MatchSettings,
    SettingsError,
)
from cdp.identity.table import RecordTable

pytest.importorskip("duckdb")

FIRST = [
    "james", "john", "robert", "michael", "william", "david", "richard", "joseph", "thomas", "mary",
    "patricia", "jennifer", "linda", "elizabeth", "barbara", "susan", "jessica", "sarah", "maria", "jose",
    "ana", "luis", "carmen", "katherine", "anna",
]  # fmt: skip
NICKNAMES = {
    "william": "bill", "robert": "bob", "elizabeth": "liz", "james": "jim", "michael": "mike",
    "jose": "pepe", "john": "jon", "katherine": "kate",
}  # fmt: skip
LAST = [
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez",
    "lopez", "gonzalez", "wilson", "anderson", "taylor", "moore", "schmidt", "schmitt", "muller", "mueller",
]  # fmt: skip
CITIES = ["berlin", "hamburg", "munich", "cologne", "frankfurt"]
STREETS = ["main st", "oak ave", "hauptstrasse", "bahnhofstrasse", "park rd", "lindenweg"]
SOURCES = ["crm", "shop", "pos"]


def _typo(rng: random.Random, value: str) -> str:
    if len(value) < 3:
        return value + "x"
    i = rng.randrange(1, len(value) - 1)
    match rng.randrange(3):
        case 0:  # transposition
            return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
        case 1:  # substitution
            return value[:i] + rng.choice("aeiourstn") + value[i + 1 :]
        case _:  # deletion
            return value[:i] + value[i + 1 :]


def _records(seed: int = 7, people: int = 120) -> list[tuple[str, str, dict[str, str | None]]]:
    """~300 records of ``people`` persons, values shaped like the engine's normalized features.

    Birth years are 1970 or later: comparisons.py misses transpositions before 1970 (see
    ``test_transposed_date_before_1970``), and here both paths must agree.
    """
    rng = random.Random(seed)
    rows: list[tuple[str, str, dict[str, str | None]]] = []
    households: list[str] = []
    for person in range(people):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        year, month, day = rng.randrange(1970, 2005), rng.randrange(1, 13), rng.randrange(1, 29)
        if households and rng.random() < 0.25:
            email = rng.choice(households)  # a family sharing one address
        else:
            email = f"{first}.{last}{person}@mail.example"
            households.append(email)
        base: dict[str, str | None] = {
            "first_name": first,
            "last_name": last,
            "date_of_birth": f"{year:04d}-{month:02d}-{day:02d}",
            "email": email,
            "phone": f"+49151{rng.randrange(10**7):07d}",
            "national_id": f"{rng.randrange(10**9):09d}",
            "postcode": f"{rng.randrange(10000, 10100)}",
            "city": rng.choice(CITIES),
            "street": rng.choice(STREETS),
            "street_number": str(rng.randrange(1, 40)),
            "address_line2": rng.choice([None, None, "apt 1", "apt 2", "floor 3"]),
            "state": rng.choice(["be", "hh", "by"]),
            "country": "de",
        }
        for copy in range(rng.choice([1, 2, 2, 3, 3, 4])):
            features = dict(base)
            if copy:
                _perturb(rng, features, month, day)
            for column in MATCH_COLUMNS:
                if rng.random() < (0.05 if column in ("first_name", "last_name") else 0.15):
                    features[column] = None
            rows.append((rng.choice(SOURCES), f"p{person}-{copy}", features))
    # Placeholder values the default merge protection nulls on the way in.
    for i in range(4):
        rows.append(
            ("shop", f"junk{i}", {"first_name": "test", "last_name": "test", "email": "test@test.com"})
        )
    return rows


def _perturb(rng: random.Random, features: dict[str, str | None], month: int, day: int) -> None:
    first, last, dob = features["first_name"], features["last_name"], features["date_of_birth"]
    assert first is not None and last is not None and dob is not None
    roll = rng.random()
    if roll < 0.15:
        features["first_name"] = _typo(rng, first)
    elif roll < 0.25 and first in NICKNAMES:
        features["first_name"] = NICKNAMES[first]
    elif roll < 0.35:
        features["first_name"], features["last_name"] = last, first
    elif roll < 0.42:
        features["first_name"] = first[0]  # "J. Smith"
    if rng.random() < 0.2:
        features["last_name"] = _typo(rng, last)
    roll = rng.random()
    if roll < 0.15 and day <= 12 and day != month:
        features["date_of_birth"] = f"{dob[:4]}-{day:02d}-{month:02d}"
    elif roll < 0.25:
        features["date_of_birth"] = f"{dob[:8]}{min(day + rng.randrange(1, 9), 28):02d}"
    elif roll < 0.3:
        features["date_of_birth"] = f"{int(dob[:4]) + 1}{dob[4:]}"
    elif roll < 0.33:
        features["date_of_birth"] = f"{dob[:4]}-02-30"  # not a date: no date level may fire
    for column in ("email", "phone", "national_id", "postcode", "street"):
        value = features[column]
        if value is not None and rng.random() < 0.1:
            features[column] = _typo(rng, value)
    if rng.random() < 0.2:
        features["city"] = _typo(rng, features["city"] or "berlin")


@pytest.fixture(scope="module")
def settings() -> MatchSettings:
    default = MatchSettings.default()
    return dataclasses.replace(default, training=dataclasses.replace(default.training, u_sample_pairs=20_000))


@pytest.fixture(scope="module")
def table(settings: MatchSettings) -> RecordTable:
    return RecordTable.build(_records(), settings.protection)


@pytest.fixture(scope="module")
def model(table: RecordTable, settings: MatchSettings) -> MatchModel:
    pairs, _ = block(table, settings.blocking, max_block_size=settings.max_block_size)
    gammas = compare(table, settings.comparisons, pairs.left, pairs.right)
    return train(
        table, pairs, gammas, settings.comparisons, settings.blocking, settings.training, link_only=False
    )


def _engine(
    table: RecordTable, settings: MatchSettings, *, link_only: bool = False
) -> dict[tuple[int, int], Any]:
    """``(left, right) -> (rule, satisfied, gammas)`` from the NumPy engine, as plain ints."""
    pairs, _ = block(table, settings.blocking, link_only=link_only, max_block_size=settings.max_block_size)
    gammas = compare(table, settings.comparisons, pairs.left, pairs.right)
    return {
        (int(pairs.left[i]), int(pairs.right[i])): (
            int(pairs.rule[i]),
            int(pairs.satisfied[i]),
            tuple(gammas[:, i].tolist()),
        )
        for i in range(len(pairs))
    }


def _from_sql(run: sql.SqlRun) -> dict[tuple[int, int], Any]:
    return {
        (int(run.left[i]), int(run.right[i])): (
            int(run.rule[i]),
            int(run.satisfied[i]),
            tuple(run.gammas[:, i].tolist()),
        )
        for i in range(len(run.left))
    }


def _engine_weights(
    table: RecordTable, settings: MatchSettings, model: MatchModel
) -> dict[tuple[int, int], float]:
    pairs, _ = block(table, settings.blocking, max_block_size=settings.max_block_size)
    gammas = compare(table, settings.comparisons, pairs.left, pairs.right)
    weights = score(table, model, pairs.left, gammas, tf_floor=settings.training.tf_floor)
    return {(int(a), int(b)): float(w) for a, b, w in zip(pairs.left, pairs.right, weights, strict=True)}


def _sql_weights(run: sql.SqlRun) -> dict[tuple[int, int], float]:
    assert run.weights is not None
    return {(int(a), int(b)): float(w) for a, b, w in zip(run.left, run.right, run.weights, strict=True)}


def test_synthetic_data_exercises_every_level(table: RecordTable, settings: MatchSettings) -> None:
    """Equality below means something only if the data reaches every level of the name and date
    comparisons, and null, 'different' and the top level of every comparison."""
    assert 250 <= len(table) <= 400
    found = _engine(table, settings)
    for c, comparison in enumerate(settings.comparisons):
        seen = {gammas[c] for _, _, gammas in found.values()}
        top = comparison.level_count - 1
        everything = comparison.column in ("first_name", "last_name", "date_of_birth")
        assert seen >= (set(range(-1, top + 1)) if everything else {-1, 0, top}), comparison.name


@pytest.mark.parametrize("link_only", [False, True], ids=["dedupe", "link_only"])
@pytest.mark.parametrize("max_block_size", [None, 3], ids=["default_cap", "cap3"])
def test_blocking_same_pairs_rules_and_masks(
    table: RecordTable, settings: MatchSettings, link_only: bool, max_block_size: int | None
) -> None:
    if max_block_size is not None:
        settings = dataclasses.replace(settings, max_block_size=max_block_size)
        _, reports = block(table, settings.blocking, link_only=link_only, max_block_size=max_block_size)
        assert sum(r.oversized_blocks for r in reports) > 0  # the cap really bites
    expected = _engine(table, settings, link_only=link_only)
    got = _from_sql(sql.run_duckdb(table, settings, link_only=link_only))
    assert len(expected) > 100
    assert {k: v[:2] for k, v in got.items()} == {k: v[:2] for k, v in expected.items()}


def test_gammas_match_engine(table: RecordTable, settings: MatchSettings) -> None:
    expected = _engine(table, settings)
    got = _from_sql(sql.run_duckdb(table, settings))
    assert got.keys() == expected.keys()
    mismatched = [
        (pair, got[pair][2], expected[pair][2]) for pair in expected if got[pair][2] != expected[pair][2]
    ]
    assert mismatched == []


def test_weights_match_engine(table: RecordTable, settings: MatchSettings, model: MatchModel) -> None:
    got, expected = (
        _sql_weights(sql.run_duckdb(table, settings, model)),
        _engine_weights(table, settings, model),
    )
    assert got.keys() == expected.keys()
    assert max(abs(got[pair] - w) for pair, w in expected.items()) <= 1e-9
    assert any(w > settings.clustering.threshold for w in got.values())  # real matches score high


def test_levels_on_derived_and_composite_columns(table: RecordTable) -> None:
    """Levels reading another column than the comparison's: composites (fuzzy ones on the joined value),
    derived columns, term frequencies on both."""
    custom = MatchSettings.from_mapping(
        {
            "blocking": [{"columns": ["last_name"]}, {"columns": ["postcode_prefix", "birth_year"]}],
            "comparisons": [
                {"column": "first_name", "levels": [{"kind": "exact", "tf": True}, {"kind": "initial"}]},
                {
                    "name": "place",
                    "column": "street",
                    "levels": [
                        {"kind": "exact", "column": "street+street_number", "tf": True},
                        {"kind": "jaro_winkler", "threshold": 0.85, "column": "street+postcode"},
                        {"kind": "levenshtein", "threshold": 2, "column": "street+city"},
                        {"kind": "exact", "column": "postcode_prefix", "tf": True},
                        {"kind": "damerau_levenshtein", "threshold": 1, "column": "city"},
                    ],
                },
                {
                    "column": "date_of_birth",
                    "levels": [{"kind": "exact", "column": "birth_year", "tf": True}],
                },
            ],
            "training": {"u_sample_pairs": 5000},
        }
    )
    pairs, _ = block(table, custom.blocking, max_block_size=custom.max_block_size)
    gammas = compare(table, custom.comparisons, pairs.left, pairs.right)
    model = train(table, pairs, gammas, custom.comparisons, custom.blocking, custom.training, link_only=False)
    run = sql.run_duckdb(table, custom, model)
    assert _from_sql(run) == _engine(table, custom)
    assert len({g for g in run.gammas[1].tolist()}) >= 5
    got, expected = _sql_weights(run), _engine_weights(table, custom, model)
    assert max(abs(got[pair] - w) for pair, w in expected.items()) <= 1e-9


def test_frozen_frequencies(table: RecordTable, settings: MatchSettings, model: MatchModel) -> None:
    """A model carrying the frequencies of another table scores with those, values unseen there at 1/N."""
    rows = _records()
    earlier = RecordTable.build(rows[: len(rows) // 2], settings.protection)
    columns = list(
        dict.fromkeys(c.level_column(lv) for c in settings.comparisons for lv in c.levels if lv.tf)
    )
    frozen = dataclasses.replace(
        model, frequencies=FrozenFrequencies.capture(earlier, columns, lambda column, value: (column, value))
    )
    got, expected = (
        _sql_weights(sql.run_duckdb(table, settings, frozen)),
        _engine_weights(table, settings, frozen),
    )
    assert max(abs(got[pair] - w) for pair, w in expected.items()) <= 1e-9
    assert got != _sql_weights(sql.run_duckdb(table, settings, model))  # the frozen numbers were used


# ------------------------------------------------------------------------------------------------------
# A second engine: Python's built-in SQLite, same SQL text, same UDFs
# ------------------------------------------------------------------------------------------------------


def _sqlite(table: RecordTable) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    columns = sql.records_columns(table)
    names = list(columns)
    connection.execute(f"CREATE TABLE records_base ({', '.join(names)})")
    rows = zip(*(columns[n].tolist() for n in names), strict=True)
    connection.executemany(f"INSERT INTO records_base VALUES ({', '.join('?' for _ in names)})", rows)  # noqa: S608
    for udf in sql.python_udfs(table):
        name = getattr(sql.UDF_FUNCTIONS, udf.field)
        connection.create_function(name, len(udf.parameters), udf.function, deterministic=True)
    try:
        connection.execute("SELECT log2(2.0)")
    except sqlite3.OperationalError:  # built without SQLITE_ENABLE_MATH_FUNCTIONS
        connection.create_function("log2", 1, math.log2, deterministic=True)
    connection.execute(f"CREATE VIEW records AS {sql.derived_columns_sql('records_base')}")
    return connection


@pytest.fixture
def lite(table: RecordTable) -> Iterator[sqlite3.Connection]:
    connection = _sqlite(table)
    yield connection
    connection.close()


def test_sqlite_runs_the_same_sql(
    table: RecordTable, settings: MatchSettings, model: MatchModel, lite: sqlite3.Connection
) -> None:
    lite.execute(f"CREATE TABLE pairs AS {sql.blocking_sql(settings)}")
    lite.execute(f"CREATE TABLE comparison_vectors AS {sql.comparison_sql(settings, sql.UDF_FUNCTIONS)}")
    lite.execute(f"CREATE TABLE term_frequencies AS {sql.term_frequencies_sql(settings)}")
    scored = lite.execute(sql.scoring_sql(settings, model, sql.UDF_FUNCTIONS))
    names = [d[0] for d in scored.description]
    rows = scored.fetchall()
    gamma_names = [f"gamma_{c.name}" for c in settings.comparisons]
    got = {
        (row[names.index("left_row")], row[names.index("right_row")]): (
            row[names.index("rule")],
            row[names.index("satisfied")],
            tuple(row[names.index(g)] for g in gamma_names),
        )
        for row in rows
    }
    assert got == _engine(table, settings)

    weight_of = {(row[names.index("left_row")], row[names.index("right_row")]): row[-1] for row in rows}
    expected = _engine_weights(table, settings, model)
    assert max(abs(weight_of[pair] - w) for pair, w in expected.items()) <= 1e-9

    # The EM input: distinct (satisfied, gammas) patterns with counts, as compress() makes them.
    pairs, _ = block(table, settings.blocking, max_block_size=settings.max_block_size)
    gammas = compare(table, settings.comparisons, pairs.left, pairs.right)
    patterns = compress(gammas, pairs.satisfied, settings.comparisons)
    want = {
        (int(patterns.rules[p]), *map(int, patterns.gammas[:, p])): int(patterns.counts[p])
        for p in range(len(patterns.counts))
    }
    have = {tuple(row[:-1]): row[-1] for row in lite.execute(sql.patterns_sql(settings))}
    assert have == want


_DERIVED_QUERY = f"SELECT {', '.join(DERIVED_COLUMNS)} FROM records ORDER BY row_id"  # noqa: S608


def _assert_derived(table: RecordTable, rows: list[tuple[Any, ...]]) -> None:
    for i, name in enumerate(DERIVED_COLUMNS):
        column = table.column(name)
        assert [row[i] for row in rows] == [column.value(r) for r in range(len(table))], name


def test_derived_columns_match_the_table(table: RecordTable, lite: sqlite3.Connection) -> None:
    _assert_derived(table, lite.execute(_DERIVED_QUERY).fetchall())
    connection = sql.load_duckdb(table)
    try:
        _assert_derived(table, connection.execute(_DERIVED_QUERY).fetchall())
    finally:
        connection.close()


def test_awkward_values(settings: MatchSettings) -> None:
    """Quotes, SQL syntax, empty strings, several '@', non-ASCII: values are rows, never SQL text, and
    the derived columns and gammas still agree with the engine."""
    awkward = [
        ("o'brien", "x'; DROP TABLE records; --", "1990-01-02", "a@b@c", "10115"),
        ("", "x'; DROP TABLE records; --", "1990-02-01", "@nohost", "1"),
        ("josé", "x'; DROP TABLE records; --", "", "", ""),
        ("j", "x'; DROP TABLE records; --", "1990-1-2", "no-at-sign", "ab"),
        ("jo\\se", "x'; DROP TABLE records; --", "2024-02-30", "e@x", "10115"),
        ("ぼく", "x'; DROP TABLE records; --", "1990-01-02", "a@b@c", None),
    ]
    table = RecordTable.build(
        (
            (
                "crm" if i % 2 else "shop",
                str(i),
                dict(
                    zip(("first_name", "last_name", "date_of_birth", "email", "postcode"), row, strict=True)
                ),
            )
            for i, row in enumerate(awkward)
        )
    )
    connection = sql.load_duckdb(table)
    try:
        _assert_derived(table, connection.execute(_DERIVED_QUERY).fetchall())
    finally:
        connection.close()
    one_block = dataclasses.replace(settings, blocking=(BlockingRule("last_name", ("last_name",)),))
    expected = _engine(table, one_block)
    assert len(expected) == len(awkward) * (len(awkward) - 1) // 2
    assert _from_sql(sql.run_duckdb(table, one_block)) == expected


# ------------------------------------------------------------------------------------------------------
# Safety and edge cases
# ------------------------------------------------------------------------------------------------------


def test_duckdb_cannot_spill_or_touch_files(table: RecordTable) -> None:
    import duckdb

    connection = sql.load_duckdb(table)
    try:
        (setting,) = connection.execute("SELECT current_setting('temp_directory')").fetchone() or ("?",)
        assert setting == ""
        with pytest.raises(duckdb.Error):
            connection.execute("COPY records_base TO 'plaintext.csv'")
        with pytest.raises(duckdb.Error):
            connection.execute("SET temp_directory = '/tmp'")
    finally:
        connection.close()


def test_sql_text_holds_no_data_values(settings: MatchSettings, model: MatchModel) -> None:
    text = "\n".join(
        (
            sql.derived_columns_sql(),
            sql.blocking_sql(settings, link_only=True),
            sql.comparison_sql(settings),
            sql.term_frequencies_sql(settings),
            sql.scoring_sql(settings, model),
            sql.patterns_sql(settings),
        )
    )
    literals = set(re.findall(r"'([^']*)'", text))
    level_columns = {c.level_column(level) for c in settings.comparisons for level in c.levels}
    assert literals <= {"", "@", "\x1f", *level_columns}  # column names and the composite separator


def test_identifiers_are_validated(settings: MatchSettings) -> None:
    data: dict[str, Any] = {
        "blocking": [{"columns": ["email"]}],
        "comparisons": [
            {"name": "e'); DROP TABLE records; --", "column": "email", "levels": [{"kind": "exact"}]}
        ],
    }
    hostile = MatchSettings.from_mapping(data)
    with pytest.raises(SettingsError, match=r"comparisons\[0\]\.name"):
        sql.comparison_sql(hostile)
    with pytest.raises(ValueError, match="table"):
        sql.blocking_sql(settings, table="records; DROP TABLE records")
    with pytest.raises(ValueError, match="jaro_winkler"):
        sql.SqlFunctions(jaro_winkler="jw(1); --")


def test_every_level_kind_compiles() -> None:
    """A new level kind in settings needs SQL here too; this fails until it has some."""
    for kind in LEVEL_KINDS:
        column = "date_of_birth" if kind.startswith("date") else "first_name"
        level = Level(kind=kind, threshold=1.0, other="last_name" if kind == "swapped" else None)
        assert sql._level_sql(level, column, sql.UDF_FUNCTIONS)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_non_finite_model_constants_are_refused(settings: MatchSettings, model: MatchModel) -> None:
    broken = dataclasses.replace(model, m=[np.zeros_like(m) for m in model.m])
    with pytest.raises(ValueError, match="not finite"):
        sql.scoring_sql(settings, broken)


def test_nickname_cap_follows_the_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    compatible = sql._nickname_compatible(None)
    assert compatible("bill", "william")
    monkeypatch.setattr(sql, "_NICKNAME_KEY_CAP", 1)  # every shared key is now over-shared
    assert not sql._nickname_compatible(["bill", "william"])("bill", "william")


def _pair(first: str, second: str) -> RecordTable:
    return RecordTable.build(
        [
            ("crm", "1", {"first_name": "ann", "last_name": "lee", "date_of_birth": first}),
            ("shop", "2", {"first_name": "ann", "last_name": "lee", "date_of_birth": second}),
        ]
    )


def _transposed_gamma(settings: MatchSettings) -> tuple[int, int]:
    """(index of the date_of_birth comparison, gamma of its date_transposed level)."""
    c = [comparison.column for comparison in settings.comparisons].index("date_of_birth")
    levels = settings.comparisons[c].levels
    return c, len(levels) - [level.kind for level in levels].index("date_transposed")


def test_transposed_date_before_1970(settings: MatchSettings) -> None:
    c, transposed = _transposed_gamma(settings)
    run = sql.run_duckdb(_pair("1965-03-04", "1965-04-03"), settings)
    assert run.gammas[c].tolist() == [transposed]


def test_engine_transposed_date_before_1970(settings: MatchSettings) -> None:
    c, transposed = _transposed_gamma(settings)
    gammas = compare(
        _pair("1965-03-04", "1965-04-03"),
        settings.comparisons,
        np.array([0], np.int32),
        np.array([1], np.int32),
    )
    assert gammas[c].tolist() == [transposed]
