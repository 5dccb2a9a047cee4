"""Matching settings as data: the default document loads, and every malformed setting is rejected with a
:class:`SettingsError` whose message starts with the exact key path that is wrong."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cdp.identity.features import MATCH_COLUMNS
from cdp.identity.settings import (
    BLOCKING_COLUMNS,
    Comparison,
    Level,
    MatchSettings,
    MergeProtection,
    SettingsError,
)

BASE: dict[str, Any] = {
    "blocking": [{"columns": ["last_name"]}, {"columns": ["email"]}],
    "comparisons": [
        {
            "column": "first_name",
            "levels": [
                {"kind": "exact", "tf": True},
                {"kind": "swapped", "with": "last_name"},
                {"kind": "jaro_winkler", "threshold": 0.9},
            ],
        },
        {"column": "last_name", "levels": [{"kind": "exact"}, {"kind": "phonetic"}]},
        {"column": "email", "levels": [{"kind": "exact"}, {"kind": "damerau_levenshtein", "threshold": 1}]},
    ],
}


def settings_with(change: Any) -> dict[str, Any]:
    """A deep copy of :data:`BASE` after ``change(copy)``."""
    data = copy.deepcopy(BASE)
    change(data)
    return data


def rejected(data: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        MatchSettings.from_mapping(data)
    return str(caught.value)


# ---- the default document ---------------------------------------------------------------------------


def test_default_settings_load_with_every_documented_section() -> None:
    settings = MatchSettings.default()

    assert [rule.columns for rule in settings.blocking][:4] == [
        ("national_id",),
        ("email",),
        ("phone",),
        ("name_set",),
    ]
    assert all(set(rule.columns) <= BLOCKING_COLUMNS for rule in settings.blocking)
    names = [c.name for c in settings.comparisons]
    assert len(names) == len(set(names))
    assert names[:3] == ["first_name", "last_name", "date_of_birth"]
    assert all(c.column in MATCH_COLUMNS for c in settings.comparisons)
    assert settings.max_block_size == 1000
    assert settings.clustering.contradiction_weight < settings.clustering.threshold
    assert settings.clustering.contradiction_weight < 0
    assert settings.training.u_sample_pairs == 100_000
    assert settings.protection.limits["national_id"] == 1
    assert set(settings.protection.limits) == {"national_id", "date_of_birth", "email", "phone"}
    assert settings.protection.limit_override_weight is not None
    assert settings.protection.limit_override_weight > settings.clustering.threshold
    assert settings.protection.priority == ("national_id", "email", "phone")
    assert settings.protection.junk_values and settings.protection.junk_patterns


def test_default_first_name_comparison_levels_are_ordered_strongest_first() -> None:
    first = MatchSettings.default().comparison("first_name")

    assert first.levels[0] == Level("exact", tf=True)
    assert first.levels[1] == Level("swapped", other="last_name")
    assert first.level_count == len(first.levels) + 1
    # Gamma counts down from the strongest level; 0 is 'different' and -1 is null.
    top = first.level_count - 1
    assert first.level_label(top) == "exact match (term-frequency adjusted)"
    assert [first.level_label(g) for g in range(top, 0, -1)] == [level.label for level in first.levels]
    assert first.level_label(0) == "different"
    assert first.level_label(-1) == "null (no evidence)"


def test_settings_from_a_file_equal_the_same_text_parsed() -> None:
    path = Path(__file__).parents[2] / "cdp" / "identity" / "default_settings.toml"

    assert MatchSettings.from_file(path) == MatchSettings.default()


def test_the_minimal_base_document_is_valid() -> None:
    settings = MatchSettings.from_mapping(BASE)

    assert settings.comparison("email") == Comparison(
        "email", "email", (Level("exact"), Level("damerau_levenshtein", threshold=1.0))
    )
    with pytest.raises(KeyError):
        settings.comparison("phone")


# ---- malformed settings name the key ------------------------------------------------------------------


def test_unknown_top_level_key_is_named() -> None:
    message = rejected(settings_with(lambda d: d.update(blocking_rules=[])))

    assert message == "blocking_rules: unknown key"


def test_unknown_nested_key_is_named_with_its_full_path() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][1]["levels"][0].update(weight=3)))

    assert message == "comparisons[1].levels[0].weight: unknown key"


def test_unknown_section_key_is_named() -> None:
    message = rejected(settings_with(lambda d: d.update(clustering={"treshold": 5.0})))

    assert message == "clustering.treshold: unknown key"


def test_unknown_level_kind_is_named() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][1]["levels"][1].update(kind="soundex")))

    assert message.startswith("comparisons[1].levels[1].kind: unknown level kind 'soundex'")


@pytest.mark.parametrize("threshold", [-0.01, 1.01, 92])
def test_jaro_winkler_threshold_outside_zero_one_is_named(threshold: float) -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][0]["levels"][2].update(threshold=threshold)))

    assert message == "comparisons[0].levels[2].threshold: must be between 0 and 1"


@pytest.mark.parametrize("threshold", [0, 0.0, 1, 1.0])
def test_jaro_winkler_threshold_bounds_are_inclusive(threshold: float) -> None:
    settings = MatchSettings.from_mapping(
        settings_with(lambda d: d["comparisons"][0]["levels"][2].update(threshold=threshold))
    )

    assert settings.comparisons[0].levels[2].threshold == threshold


def test_non_numeric_threshold_is_named() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][0]["levels"][2].update(threshold=True)))

    assert message == "comparisons[0].levels[2].threshold: must be a number"


def test_fractional_edit_distance_threshold_is_named() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][2]["levels"][1].update(threshold=1.5)))

    assert message == "comparisons[2].levels[1].threshold: must be an integer"


def test_term_frequency_on_a_non_exact_level_is_named() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][0]["levels"][2].update(tf=True)))

    assert message == (
        "comparisons[0].levels[2].tf: term-frequency adjustment applies to 'exact' levels only"
    )


@pytest.mark.parametrize("kind", ["jaro_winkler", "damerau_levenshtein", "levenshtein"])
def test_missing_threshold_is_named(kind: str) -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][2]["levels"].append({"kind": kind})))

    assert message == f"comparisons[2].levels[2].threshold: required for kind {kind!r}"


def test_threshold_on_a_kind_that_takes_none_is_named() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][1]["levels"][1].update(threshold=0.5)))

    assert message == "comparisons[1].levels[1].threshold: not used by kind 'phonetic'"


def test_unknown_blocking_column_is_named() -> None:
    message = rejected(settings_with(lambda d: d["blocking"].append({"columns": ["email", "surname"]})))

    assert message.startswith("blocking[2].columns[1]: unknown column 'surname' (expected one of: ")


def test_derived_columns_are_valid_blocking_columns() -> None:
    settings = MatchSettings.from_mapping(
        settings_with(lambda d: d["blocking"].append({"columns": ["last_name_phonetic", "birth_year"]}))
    )

    assert settings.blocking[2].columns == ("last_name_phonetic", "birth_year")
    assert settings.blocking[2].name == "last_name_phonetic+birth_year"


def test_derived_column_is_not_a_comparison_column() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][1].update(column="birth_year")))

    assert message.startswith("comparisons[1].column: unknown column 'birth_year'")


def test_duplicate_comparison_name_is_named() -> None:
    # Two comparisons of one column without explicit names both take the column's name.
    duplicate = {"column": "last_name", "levels": [{"kind": "jaro_winkler", "threshold": 0.8}]}
    message = rejected(settings_with(lambda d: d["comparisons"].append(duplicate)))

    assert message == "comparisons[3].name: duplicate comparison name 'last_name'"


def test_two_comparisons_of_one_column_with_distinct_names_are_valid() -> None:
    second = {"name": "surname_fuzzy", "column": "last_name", "levels": [{"kind": "phonetic"}]}
    settings = MatchSettings.from_mapping(settings_with(lambda d: d["comparisons"].append(second)))

    assert settings.comparison("surname_fuzzy").column == "last_name"


def test_bad_regular_expression_in_junk_patterns_is_named() -> None:
    patterns = {"email": ["^test@", "^(unclosed"]}
    message = rejected(settings_with(lambda d: d.update(merge_protection={"junk_patterns": patterns})))

    assert message.startswith("merge_protection.junk_patterns.email[1]: not a valid regular expression (")


@pytest.mark.parametrize("contradiction", [6.0, 7.5])
def test_contradiction_weight_not_below_threshold_is_named(contradiction: float) -> None:
    clustering = {"threshold": 6.0, "contradiction_weight": contradiction}
    message = rejected(settings_with(lambda d: d.update(clustering=clustering)))

    assert message == "clustering.contradiction_weight: must be below clustering.threshold"


def test_swapped_level_with_a_column_no_comparison_uses_is_named() -> None:
    message = rejected(settings_with(lambda d: d["comparisons"][0]["levels"][1].update({"with": "city"})))

    assert message == "comparisons[0].levels[1].with: no comparison uses that column"


def test_swapped_level_with_its_own_column_is_named() -> None:
    message = rejected(
        settings_with(lambda d: d["comparisons"][0]["levels"][1].update({"with": "first_name"}))
    )

    assert message == "comparisons[0].levels[1].with: must name another column"


@pytest.mark.parametrize(
    ("column", "level", "key"),
    [
        ("first_name", {"kind": "date_transposed"}, "kind"),
        ("last_name", {"kind": "nickname"}, "kind"),
    ],
)
def test_column_specific_level_on_another_column_is_named(
    column: str, level: dict[str, Any], key: str
) -> None:
    message = rejected({"blocking": BASE["blocking"], "comparisons": [{"column": column, "levels": [level]}]})

    assert message.startswith(f"comparisons[0].levels[0].{key}: ")


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"comparisons": BASE["comparisons"]}, "blocking"),
        ({"blocking": [], "comparisons": BASE["comparisons"]}, "blocking"),
        ({"blocking": BASE["blocking"], "comparisons": []}, "comparisons"),
        ({**BASE, "max_block_size": 1}, "max_block_size"),
        ({**BASE, "training": {"u_sample_pairs": 10}}, "training.u_sample_pairs"),
        ({**BASE, "merge_protection": {"limits": {"national_id": 0}}}, "merge_protection.limits.national_id"),
        ({**BASE, "merge_protection": {"priority": ["ssn"]}}, "merge_protection.priority[0]"),
        ({**BASE, "merge_protection": {"junk_values": {"email": "x"}}}, "merge_protection.junk_values.email"),
    ],
)
def test_other_malformed_values_name_their_key(data: dict[str, Any], path: str) -> None:
    assert rejected(data).startswith(f"{path}: ")


def test_invalid_toml_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"^settings are not valid TOML: "):
        MatchSettings.from_toml("[[blocking]\ncolumns = [")


def test_unreadable_settings_file_names_the_file_only(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^cannot read settings file missing\.toml: "):
        MatchSettings.from_file(tmp_path / "missing.toml")


def test_error_messages_never_echo_a_configured_value_beyond_the_bad_key() -> None:
    # A junk pattern might be a real address somebody pasted; a bad one is reported by position only.
    patterns = {"email": ["maria.garcia@example.org(("]}
    message = rejected(settings_with(lambda d: d.update(merge_protection={"junk_patterns": patterns})))

    assert "maria" not in message


# ---- junk detection ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protection() -> MergeProtection:
    return MatchSettings.default().protection


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("email", "test@test.com"),  # listed value
        ("email", "noreply42@shop.de"),  # pattern on the local part
        ("email", "maria@example.com"),  # pattern on the domain
        ("phone", "+0000000"),
        ("phone", "+77777777"),
        ("first_name", "unknown"),
        ("last_name", "xxx"),
        ("city", "n/a"),  # the "*" list applies to every column
        ("postcode", "?"),
    ],
)
def test_default_junk_values_and_patterns_are_junk(
    protection: MergeProtection, column: str, value: str
) -> None:
    assert protection.is_junk(column, value)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("email", "maria.garcia@gmail.com"),
        ("email", "contest@shop.de"),  # 'test' inside the local part is not the junk pattern
        ("phone", "+447700900123"),
        ("first_name", "maria"),
        ("city", "test"),  # 'test' is junk for names only
        ("first_name", "Unknown"),  # junk is compared after normalization (folded keys)
    ],
)
def test_real_looking_values_are_not_junk(protection: MergeProtection, column: str, value: str) -> None:
    assert not protection.is_junk(column, value)


def test_junk_patterns_from_toml_search_anywhere_unless_anchored() -> None:
    protection = MatchSettings.from_toml(
        """
[[blocking]]
columns = ["email"]
[[comparisons]]
column = "email"
levels = [{ kind = "exact" }]
[merge_protection]
junk_values."*" = ["-"]
junk_patterns.email = ['dummy']
junk_patterns."*" = ['^zz+$']
"""
    ).protection

    assert protection.is_junk("email", "x.dummy.y@shop.de")
    assert protection.is_junk("city", "zzz")
    assert protection.is_junk("street", "-")
    assert not protection.is_junk("city", "dummy")
    assert not protection.is_junk("city", "azzz")
    assert isinstance(protection.junk_patterns["email"][0], re.Pattern)


def test_a_contradiction_rule_may_carry_its_own_override_weight() -> None:
    settings = MatchSettings.default()
    overrides = settings.protection.contradiction_overrides
    assert len(overrides) == len(settings.protection.contradictions)
    assert overrides[0] is None and overrides[1] == 2.0


def test_a_contradiction_rule_without_comparisons_is_refused() -> None:
    data = tomllib.loads(MatchSettings.default_text())
    data["merge_protection"]["contradictions"] = [{"override_weight": 1.0}]
    with pytest.raises(SettingsError, match=r"merge_protection\.contradictions\[0\]: needs at least one"):
        MatchSettings.from_mapping(data)
