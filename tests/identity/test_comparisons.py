"""Comparison levels: one test per level kind, the implied null (-1) and else (0) levels, level order, and
gammas computed once per distinct value pair.

Features are the folded match keys the normalizers produce (``schmidt``, not ``Schmidt``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from cdp.identity.comparisons import compare, compare_column
from cdp.identity.settings import Comparison, Level
from cdp.identity.table import RecordTable

Features = Mapping[str, str | None]


def gammas(comparison: Comparison, *pairs: tuple[Features, Features]) -> list[int]:
    """Gamma of each ``(left, right)`` feature pair, all in one table."""
    rows = [("crm", f"r{i}", features) for i, features in enumerate(f for pair in pairs for f in pair)]
    table = RecordTable.build(rows)
    left = np.arange(0, 2 * len(pairs), 2, dtype=np.int32)
    right = left + 1
    return [int(g) for g in compare_column(table, comparison, left, right)]


def gamma(comparison: Comparison, left: Features, right: Features) -> int:
    return gammas(comparison, (left, right))[0]


def one_level(column: str, kind: str, threshold: float | None = None, other: str | None = None) -> Comparison:
    return Comparison(column, column, (Level(kind, threshold=threshold, other=other),))


def fn(value: str | None) -> Features:
    return {"first_name": value}


def ln(value: str | None) -> Features:
    return {"last_name": value}


def dob(value: str | None) -> Features:
    return {"date_of_birth": value}


def nid(value: str | None) -> Features:
    return {"national_id": value}


# ---- one test per level kind ------------------------------------------------------------------------------


def test_exact_level_needs_equal_values() -> None:
    exact = Comparison("last_name", "last_name", (Level("exact"),))

    assert gammas(exact, (ln("schmidt"), ln("schmidt")), (ln("schmidt"), ln("schmitt"))) == [1, 0]


def test_nickname_level_links_bill_and_william() -> None:
    nickname = one_level("first_name", "nickname")

    assert gamma(nickname, fn("bill"), fn("william")) == 1
    assert gamma(nickname, fn("william"), fn("bill")) == 1
    assert gamma(nickname, fn("bill"), fn("george")) == 0


def test_phonetic_level_links_schmidt_and_schmitt() -> None:
    phonetic = one_level("last_name", "phonetic")

    assert gamma(phonetic, ln("schmidt"), ln("schmitt")) == 1
    assert gamma(phonetic, ln("schmidt"), ln("smith")) == 0


def test_jaro_winkler_threshold_is_inclusive_at_the_boundary() -> None:
    # Jaro-Winkler(martha, marhta): Jaro 17/18, common prefix 3, so 17/18 + 3 * 0.1 * (1 - 17/18).
    exactly = 17 / 18 + 3 * 0.1 * (1 - 17 / 18)
    pair = (fn("martha"), fn("marhta"))

    assert gamma(one_level("first_name", "jaro_winkler", exactly), *pair) == 1
    assert gamma(one_level("first_name", "jaro_winkler", exactly - 1e-9), *pair) == 1
    assert gamma(one_level("first_name", "jaro_winkler", exactly + 1e-9), *pair) == 0


def test_jaro_winkler_threshold_on_a_second_value_pair() -> None:
    # dwayne/duane is the textbook 0.84.
    assert gamma(one_level("first_name", "jaro_winkler", 0.84), fn("dwayne"), fn("duane")) == 1
    assert gamma(one_level("first_name", "jaro_winkler", 0.85), fn("dwayne"), fn("duane")) == 0


def test_damerau_levenshtein_counts_a_transposition_as_one_edit() -> None:
    pair = (nid("1234567"), nid("1243567"))

    assert gamma(one_level("national_id", "damerau_levenshtein", 1), *pair) == 1
    assert gamma(one_level("national_id", "damerau_levenshtein", 0), *pair) == 0
    assert gamma(one_level("national_id", "damerau_levenshtein", 1), nid("1234567"), nid("1243576")) == 0


def test_levenshtein_counts_a_transposition_as_two_edits() -> None:
    transposed = (nid("1234567"), nid("1243567"))

    assert gamma(one_level("national_id", "levenshtein", 1), *transposed) == 0
    assert gamma(one_level("national_id", "levenshtein", 2), *transposed) == 1
    assert gamma(one_level("national_id", "levenshtein", 1), nid("1234567"), nid("1234568")) == 1
    assert gamma(one_level("national_id", "levenshtein", 1), nid("1234567"), nid("123457")) == 1


def test_date_transposed_links_day_and_month_exchanged() -> None:
    transposed = one_level("date_of_birth", "date_transposed")

    assert gamma(transposed, dob("1985-04-03"), dob("1985-03-04")) == 1
    assert gamma(transposed, dob("1985-04-03"), dob("1986-03-04")) == 0  # another year
    assert gamma(transposed, dob("1985-04-03"), dob("1985-04-30")) == 0
    assert gamma(transposed, dob("1985-04-04"), dob("1985-04-05")) == 0


def test_date_within_days_threshold_is_inclusive() -> None:
    pair = (dob("1985-04-03"), dob("1985-04-10"))

    assert gamma(one_level("date_of_birth", "date_within_days", 7), *pair) == 1
    assert gamma(one_level("date_of_birth", "date_within_days", 6), *pair) == 0
    assert (
        gamma(one_level("date_of_birth", "date_within_days", 366), dob("1985-12-31"), dob("1986-01-02")) == 1
    )


def test_swapped_level_needs_first_and_last_name_exchanged_both_ways() -> None:
    swapped = one_level("first_name", "swapped", other="last_name")
    chen_wei = {"first_name": "chen", "last_name": "wei"}

    assert gamma(swapped, chen_wei, {"first_name": "wei", "last_name": "chen"}) == 1
    assert gamma(swapped, chen_wei, {"first_name": "wei", "last_name": "zhang"}) == 0
    assert gamma(swapped, chen_wei, {"first_name": "wei", "last_name": None}) == 0
    assert gamma(swapped, chen_wei, {"first_name": "chen", "last_name": "wei"}) == 0


def test_swapped_level_works_when_the_other_value_is_unknown_to_this_column() -> None:
    # "li" appears only as a last name: its code in the last_name vocabulary has no first_name counterpart.
    swapped = one_level("last_name", "swapped", other="first_name")

    assert (
        gamma(swapped, {"first_name": "ana", "last_name": "li"}, {"first_name": "li", "last_name": "ana"})
        == 1
    )
    assert (
        gamma(swapped, {"first_name": "ana", "last_name": "li"}, {"first_name": "bo", "last_name": "ana"})
        == 0
    )


# ---- implied levels and level order -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"), [(None, "schmidt"), ("schmidt", None), (None, None)], ids=["left", "right", "both"]
)
def test_a_null_on_either_side_is_gamma_minus_one(left: str | None, right: str | None) -> None:
    comparison = Comparison("last_name", "last_name", (Level("exact"), Level("phonetic")))

    assert gamma(comparison, ln(left), ln(right)) == -1


def test_a_pair_meeting_no_level_is_gamma_zero() -> None:
    comparison = Comparison(
        "last_name", "last_name", (Level("exact"), Level("jaro_winkler", 0.9), Level("phonetic"))
    )

    assert gamma(comparison, ln("schmidt"), ln("okonkwo")) == 0


def test_gamma_counts_down_from_the_strongest_level() -> None:
    comparison = Comparison(
        "first_name",
        "first_name",
        (Level("exact"), Level("jaro_winkler", 0.92), Level("nickname"), Level("jaro_winkler", 0.8)),
    )

    assert gammas(
        comparison,
        (fn("john"), fn("john")),  # exact
        (fn("jon"), fn("john")),  # Jaro-Winkler 0.933 (also a nickname: the first level wins)
        (fn("bill"), fn("william")),  # nickname only
        (fn("dwayne"), fn("duane")),  # Jaro-Winkler 0.84
        (fn("john"), fn("mary")),
        (fn(None), fn("mary")),
    ) == [4, 3, 2, 1, 0, -1]


def test_the_first_satisfied_level_wins_even_when_a_later_one_is_stricter() -> None:
    loose_first = Comparison(
        "first_name", "first_name", (Level("jaro_winkler", 0.8), Level("jaro_winkler", 0.92))
    )

    assert gamma(loose_first, fn("jon"), fn("john")) == 2


# Regression: compare_column once evaluated fuzzy levels only on rows whose codes differ, so identical values
# fell to 'different' whenever no exact level preceded the fuzzy one.
@pytest.mark.parametrize(
    ("column", "level"),
    [
        ("first_name", Level("jaro_winkler", 0.9)),
        ("first_name", Level("damerau_levenshtein", 1)),
        ("first_name", Level("levenshtein", 1)),
        ("first_name", Level("nickname")),
        ("first_name", Level("phonetic")),
        ("date_of_birth", Level("date_within_days", 30)),
    ],
    ids=lambda v: v if isinstance(v, str) else v.kind,
)
def test_identical_values_satisfy_a_fuzzy_level_without_an_exact_level_before_it(
    column: str, level: Level
) -> None:
    comparison = Comparison(column, column, (level,))
    value = "1985-04-03" if column == "date_of_birth" else "john"

    assert gamma(comparison, {column: value}, {column: value}) == 1


def test_identical_dates_are_not_a_day_month_transposition() -> None:
    transposed = one_level("date_of_birth", "date_transposed")

    assert gamma(transposed, dob("1985-04-03"), dob("1985-04-03")) == 0
    assert gamma(transposed, dob("1985-04-04"), dob("1985-04-04")) == 0


# ---- per distinct value pair ------------------------------------------------------------------------------


def test_a_value_pair_repeated_across_many_record_pairs_gets_identical_gammas() -> None:
    comparison = Comparison(
        "first_name",
        "first_name",
        (Level("exact"), Level("jaro_winkler", 0.92), Level("nickname"), Level("jaro_winkler", 0.8)),
    )
    names = ["jon", "john", "bill", "william", "dwayne", "duane", "mary", None]
    rng = np.random.default_rng(7)
    rows = [("crm", f"r{i}", fn(names[i % len(names)])) for i in range(400)]
    table = RecordTable.build(rows)
    left = rng.integers(0, len(rows), 5000).astype(np.int32)
    right = rng.integers(0, len(rows), 5000).astype(np.int32)

    batch = compare_column(table, comparison, left, right)

    # Reference: every ordered value pair once, each in its own record pair of a separate table.
    ordered = [(a, b) for a in names for b in names]
    reference = dict(zip(ordered, gammas(comparison, *[(fn(a), fn(b)) for a, b in ordered]), strict=True))
    seen = set()
    for a, b, g in zip(left.tolist(), right.tolist(), batch.tolist(), strict=True):
        values = (rows[a][2]["first_name"], rows[b][2]["first_name"])
        assert g == reference[values], values
        assert reference[values[::-1]] == g  # the metrics are symmetric
        seen.add(values)
    assert len(seen) == len(ordered)
    assert reference[("jon", "john")] == 3
    assert reference[("bill", "william")] == 2


def test_compare_stacks_one_row_of_gammas_per_comparison() -> None:
    comparisons = (
        Comparison("first_name", "first_name", (Level("exact"), Level("nickname"))),
        Comparison("date_of_birth", "date_of_birth", (Level("exact"), Level("date_transposed"))),
    )
    table = RecordTable.build(
        [
            ("crm", "a", {"first_name": "bill", "date_of_birth": "1985-04-03"}),
            ("crm", "b", {"first_name": "william", "date_of_birth": "1985-03-04"}),
            ("crm", "c", {"first_name": "bill", "date_of_birth": None}),
        ]
    )

    out = compare(table, comparisons, np.array([0, 0, 1], np.int32), np.array([1, 2, 2], np.int32))

    assert out.dtype == np.int8
    assert out.tolist() == [[1, 2, 1], [1, -1, -1]]


def test_no_pairs_give_an_empty_gamma_matrix() -> None:
    table = RecordTable.build([("crm", "a", fn("ann"))])
    comparisons = (Comparison("first_name", "first_name", (Level("exact"), Level("jaro_winkler", 0.9))),)

    out = compare(table, comparisons, np.empty(0, np.int32), np.empty(0, np.int32))

    assert out.shape == (1, 0)
