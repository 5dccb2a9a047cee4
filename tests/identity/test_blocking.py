"""Blocking: which pairs each rule generates, how rules exclude each other, the per-rule report, and a
property test against a brute-force enumeration of all pairs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.identity.blocking import CandidatePairs, RuleReport, block, rule_key
from cdp.identity.settings import BlockingRule
from cdp.identity.table import RecordTable

Row = tuple[str, str, Mapping[str, str | None]]


def table_of(*features: Mapping[str, str | None], sources: Sequence[str] | None = None) -> RecordTable:
    sources = sources or ["crm"] * len(features)
    return RecordTable.build((s, f"r{i}", f) for i, (s, f) in enumerate(zip(sources, features, strict=True)))


def rule(*columns: str) -> BlockingRule:
    return BlockingRule("+".join(columns), columns)


def pair_set(pairs: CandidatePairs) -> set[tuple[int, int]]:
    return set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))


def by_pair(pairs: CandidatePairs) -> dict[tuple[int, int], tuple[int, int]]:
    """(left, right) -> (generating rule, satisfied mask)."""
    return {
        (a, b): (r, s)
        for a, b, r, s in zip(
            pairs.left.tolist(),
            pairs.right.tolist(),
            pairs.rule.tolist(),
            pairs.satisfied.tolist(),
            strict=True,
        )
    }


def test_a_rule_pairs_only_rows_agreeing_on_all_its_columns() -> None:
    table = table_of(
        {"first_name": "maria", "last_name": "garcia"},
        {"first_name": "maria", "last_name": "garcia"},
        {"first_name": "maria", "last_name": "lopez"},
        {"first_name": "jose", "last_name": "garcia"},
        {"first_name": "maria", "last_name": "garcia"},
    )

    pairs, reports = block(table, [rule("first_name", "last_name")])

    assert pair_set(pairs) == {(0, 1), (0, 4), (1, 4)}
    assert reports == [RuleReport("first_name+last_name", 3, 3, 1, 3, 0, 0)]


def test_null_keys_never_block() -> None:
    table = table_of(
        {"first_name": None, "last_name": "garcia"},
        {"first_name": None, "last_name": "garcia"},
        {"first_name": "maria", "last_name": None},
        {"first_name": "maria", "last_name": None},
        {"email": None},
        {"email": None},
    )

    pairs, reports = block(table, [rule("first_name", "last_name"), rule("email")])

    assert len(pairs) == 0
    assert [r.blocks for r in reports] == [0, 0]
    assert list(rule_key(table, rule("first_name", "last_name"))) == [-1] * 6


def test_a_pair_found_by_an_earlier_rule_is_not_generated_again() -> None:
    table = table_of(
        {"email": "maria@shop.de", "last_name": "garcia"},
        {"email": "maria@shop.de", "last_name": "garcia"},
        {"email": "jose@shop.de", "last_name": "garcia"},
    )

    pairs, reports = block(table, [rule("email"), rule("last_name")])

    found = by_pair(pairs)
    assert sorted(found) == [(0, 1), (0, 2), (1, 2)]
    assert found[(0, 1)][0] == 0  # generated once, by the first rule that finds it
    assert found[(0, 2)][0] == found[(1, 2)][0] == 1
    assert (reports[1].pairs, reports[1].pairs_before_dedup) == (2, 3)
    assert (reports[0].pairs, reports[0].pairs_before_dedup) == (1, 1)


def test_link_only_gives_only_cross_source_pairs() -> None:
    table = table_of(
        *[{"last_name": "garcia"}] * 5,
        sources=["crm", "crm", "shop", "shop", "pos"],
    )

    pairs, reports = block(table, [rule("last_name")], link_only=True)

    assert pair_set(pairs) == {(0, 2), (0, 3), (1, 2), (1, 3), (0, 4), (1, 4), (2, 4), (3, 4)}
    assert reports[0].pairs == reports[0].pairs_before_dedup == 8
    all_pairs, _ = block(table, [rule("last_name")])
    assert len(all_pairs) == 10


def test_an_oversized_block_generates_no_pairs_and_is_reported() -> None:
    table = table_of(
        *[{"last_name": "smith"}] * 4,
        {"last_name": "okonkwo"},
        {"last_name": "okonkwo"},
    )

    pairs, reports = block(table, [rule("last_name")], max_block_size=3)

    assert pair_set(pairs) == {(4, 5)}
    report = reports[0]
    assert report.oversized_blocks == 1
    assert report.records_in_oversized_blocks == 4
    assert report.largest_block == 4
    assert report.blocks == 1  # only the kept block
    assert report.to_dict()["oversized_blocks"] == 1


def test_a_block_of_exactly_max_block_size_still_pairs() -> None:
    table = table_of(*[{"last_name": "smith"}] * 3)

    pairs, reports = block(table, [rule("last_name")], max_block_size=3)

    assert len(pairs) == 3
    assert reports[0].oversized_blocks == 0


def test_rows_of_an_oversized_block_still_pair_under_later_rules() -> None:
    table = table_of(
        {"last_name": "smith", "email": "a@shop.de"},
        {"last_name": "smith", "email": "a@shop.de"},
        {"last_name": "smith", "email": "b@shop.de"},
        {"last_name": "smith", "email": "c@shop.de"},
    )

    pairs, reports = block(table, [rule("last_name"), rule("email")], max_block_size=3)

    found = by_pair(pairs)
    assert list(found) == [(0, 1)]
    # The oversized rule never paired them, so it neither excludes the pair nor counts as satisfied:
    # training must not treat the pair as found by a rule that could not have generated it.
    assert found[(0, 1)] == (1, 0b10)
    assert reports[1].pairs == reports[1].pairs_before_dedup == 1


def test_satisfied_marks_every_rule_a_pair_agrees_on() -> None:
    table = table_of(
        {"email": "m@shop.de", "phone": "+4917612345678", "last_name": "garcia", "first_name": "maria"},
        {"email": "m@shop.de", "phone": "+4917699999999", "last_name": "garcia", "first_name": "maria"},
        {"email": "x@shop.de", "phone": "+4917612345678", "last_name": "lopez", "first_name": "maria"},
    )
    rules = [rule("email"), rule("phone"), rule("last_name"), rule("first_name")]

    pairs, _ = block(table, rules)

    found = by_pair(pairs)
    assert found[(0, 1)] == (0, 0b1101)  # email, last_name, first_name
    assert found[(0, 2)] == (1, 0b1010)  # phone, first_name
    assert found[(1, 2)] == (3, 0b1000)  # first_name only
    for r, mask in zip(pairs.rule.tolist(), pairs.satisfied.tolist(), strict=True):
        assert mask & (1 << r)
        assert mask & ((1 << r) - 1) == 0  # no earlier rule agrees: it would have claimed the pair


def test_first_initial_blocks_on_the_first_letter_of_the_first_name() -> None:
    table = table_of(
        {"first_name": "john", "last_name": "smith"},
        {"first_name": "jane", "last_name": "smith"},
        {"first_name": "mary", "last_name": "smith"},
        {"first_name": "jo", "last_name": "jones"},
    )

    pairs, _ = block(table, [rule("last_name", "first_initial")])

    assert pair_set(pairs) == {(0, 1)}


def test_birth_year_blocks_on_the_year_of_the_date_of_birth() -> None:
    table = table_of(
        {"date_of_birth": "1985-04-03"},
        {"date_of_birth": "1985-11-30"},
        {"date_of_birth": "1986-04-03"},
        {"date_of_birth": None},
    )

    pairs, _ = block(table, [rule("birth_year")])

    assert pair_set(pairs) == {(0, 1)}
    assert table.column("birth_year").vocab == ["1985", "1986"]


def test_last_name_phonetic_blocks_names_that_sound_alike() -> None:
    table = table_of(
        {"last_name": "schmidt", "date_of_birth": "1970-01-01"},
        {"last_name": "schmitt", "date_of_birth": "1970-06-30"},
        {"last_name": "smith", "date_of_birth": "1970-01-01"},
        {"last_name": "schmidt", "date_of_birth": "1971-01-01"},
    )

    pairs, _ = block(table, [rule("last_name_phonetic", "birth_year")])

    assert pair_set(pairs) == {(0, 1)}


def test_derived_columns_keep_null_for_null_base_values() -> None:
    table = table_of({"first_name": None}, {"first_name": None}, {"first_name": "ann"})

    assert table.column("first_initial").codes.tolist() == [-1, -1, 0]
    pairs, _ = block(table, [rule("first_initial")])
    assert len(pairs) == 0


def test_no_rows_and_no_rules_give_no_pairs() -> None:
    empty = RecordTable.build([])

    pairs, reports = block(empty, [rule("email")])
    assert len(pairs) == 0
    assert reports[0].largest_block == 0

    pairs, reports = block(table_of({"email": "a"}, {"email": "a"}), [])
    assert len(pairs) == 0
    assert reports == []


# ---- property: blocking equals brute force -----------------------------------------------------------

PROPERTY_RULES = [
    rule("email"),
    rule("first_name", "last_name"),
    rule("last_name", "first_initial"),
    rule("postcode"),
]
_BASE = ("email", "first_name", "last_name", "postcode")


def _key(features: Mapping[str, str | None], column: str) -> str | None:
    if column == "first_initial":
        first = features.get("first_name")
        return first[:1] if first else None
    return features.get(column)


def brute_force(
    rows: list[Row], link_only: bool, max_block_size: int = 10_000
) -> dict[tuple[int, int], tuple[int, int]]:
    """Pairs agreeing on a rule whose block (all rows sharing the key) is not oversized."""
    block_size = [
        Counter(
            key for row in rows if None not in (key := tuple(_key(row[2], c) for c in blocking_rule.columns))
        )
        for blocking_rule in PROPERTY_RULES
    ]
    expected = {}
    for i, j in combinations(range(len(rows)), 2):
        if link_only and rows[i][0] == rows[j][0]:
            continue
        mask = 0
        for r, blocking_rule in enumerate(PROPERTY_RULES):
            keys = [(_key(rows[i][2], c), _key(rows[j][2], c)) for c in blocking_rule.columns]
            agree = all(a is not None and a == b for a, b in keys)
            if agree and block_size[r][tuple(a for a, _ in keys)] <= max_block_size:
                mask |= 1 << r
        if mask:
            first = (mask & -mask).bit_length() - 1
            expected[(i, j)] = (first, mask)
    return expected


_values = st.one_of(st.none(), st.sampled_from(["aa", "ab", "ba", "bb", "c"]))
_rows = st.lists(
    st.tuples(
        st.sampled_from(["crm", "shop", "pos"]),
        st.fixed_dictionaries({column: _values for column in _BASE}),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_rows, link_only=st.booleans())
def test_blocking_equals_brute_force_enumeration_of_pairs_agreeing_on_any_rule(
    raw: list[tuple[str, dict[str, str | None]]], link_only: bool
) -> None:
    rows: list[Row] = [(source, f"r{i}", features) for i, (source, features) in enumerate(raw)]
    table = RecordTable.build(rows)

    pairs, reports = block(table, PROPERTY_RULES, link_only=link_only, max_block_size=10_000)

    left, right = pairs.left.tolist(), pairs.right.tolist()
    assert all(a < b for a, b in zip(left, right, strict=True))
    assert len(set(zip(left, right, strict=True))) == len(pairs)  # each pair exactly once
    assert by_pair(pairs) == brute_force(rows, link_only)
    assert sum(r.pairs for r in reports) == len(pairs)
    assert all(r.oversized_blocks == 0 for r in reports)
    assert pairs.left.dtype == pairs.right.dtype == np.int32


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_rows, link_only=st.booleans(), max_block_size=st.integers(2, 6))
def test_blocking_with_oversized_blocks_equals_brute_force_over_the_blocks_kept(
    raw: list[tuple[str, dict[str, str | None]]], link_only: bool, max_block_size: int
) -> None:
    rows: list[Row] = [(source, f"r{i}", features) for i, (source, features) in enumerate(raw)]
    table = RecordTable.build(rows)

    pairs, _ = block(table, PROPERTY_RULES, link_only=link_only, max_block_size=max_block_size)

    assert by_pair(pairs) == brute_force(rows, link_only, max_block_size)
