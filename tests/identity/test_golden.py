"""Golden profile: survivorship strategies, tie-breaks, quality flags, address groups, provenance, config."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.identity.golden import (
    CANONICAL_ATTRIBUTES,
    DECIDERS,
    GoldenProfile,
    MemberRecord,
    Strategy,
    SurvivorshipConfigError,
    SurvivorshipRules,
    golden_profile,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ADDRESS = ("street_number", "address_line1", "address_line2", "city", "postcode", "state", "country")


def member(
    record_id: str,
    source: str = "crm",
    *,
    days: int = 0,
    active: int | None = None,
    quality: frozenset[str] | set[str] = frozenset(),
    **values: Any,
) -> MemberRecord:
    """A member updated ``days`` after T0 and (optionally) last active ``active`` days after T0."""
    return MemberRecord(
        record_id=record_id,
        source=source,
        source_record_id=f"{source}-{record_id}",
        updated_at=T0 + timedelta(days=days),
        last_activity_at=None if active is None else T0 + timedelta(days=active),
        values=values,
        quality=frozenset(quality),
    )


def rules(attribute_rules: dict[str, list[str]], **top: Any) -> SurvivorshipRules:
    config: dict[str, Any] = {"source_priority": ["billing", "crm", "helpdesk", "newsletter"], **top}
    config["rules"] = {name: {"strategies": strategies} for name, strategies in attribute_rules.items()}
    return SurvivorshipRules.from_mapping(config)


# --------------------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------------------


def test_defaults_load_from_the_packaged_toml() -> None:
    assert resources.files("cdp.identity").joinpath("survivorship.toml").is_file()
    default = SurvivorshipRules.default()
    assert default is SurvivorshipRules.default()  # parsed once
    assert default.source_priority == ("billing", "crm", "helpdesk", "newsletter")
    assert default.rules["email"].strategies[0] is Strategy.MOST_RECENT
    assert default.rules["phone"].strategies[0] is Strategy.MOST_RECENT
    assert default.rules["first_name"].strategies[0] is Strategy.MOST_FREQUENT
    assert default.rules["last_name"].strategies == (Strategy.MOST_FREQUENT, Strategy.MOST_TRUSTED_SOURCE)
    assert default.rules["date_of_birth"].strategies == (
        Strategy.MOST_TRUSTED_SOURCE,
        Strategy.MOST_FREQUENT,
    )
    assert default.rules["national_id"].strategies[0] is Strategy.MOST_TRUSTED_SOURCE
    assert default.groups == {"address": ADDRESS}
    assert "city" not in default.rules and "address" in default.rules
    assert default.quality_flags["placeholder_date"] == {"date_of_birth"}
    assert default.quality_flags["junk_phone"] == {"phone"}
    assert default.quality_flags["invalid_postcode"] == {"postcode"}


def test_canonical_attributes_match_the_storage_model() -> None:
    from cdp.db.models import CANONICAL_FIELDS

    assert CANONICAL_FIELDS == CANONICAL_ATTRIBUTES


def test_omitted_tables_fall_back_to_safe_defaults() -> None:
    bare = SurvivorshipRules.from_mapping({})
    assert bare.groups == {"address": ADDRESS}  # forgetting [groups] must not allow mixed addresses
    assert bare.quality_flags["placeholder_date"] == {"date_of_birth"}
    assert bare.rules["email"].strategies == (Strategy.MOST_RECENT,)
    assert set(bare.rules) == {a for a in CANONICAL_ATTRIBUTES if a not in ADDRESS} | {"address"}
    assert SurvivorshipRules.from_mapping({"groups": {}}).groups == {}


# --------------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------------


def test_most_recent_uses_last_activity_then_updated_at() -> None:
    r = rules({"email": ["most_recent"]})
    old_but_active = member("a", days=1, active=30, email="active@example.com")
    newer_update = member("b", days=10, email="updated@example.com")
    stale = member("c", days=5, active=2, email="stale@example.com")
    gv = golden_profile([old_but_active, newer_update, stale], r).attributes["email"]
    assert (gv.value, gv.record_id, gv.strategy) == ("active@example.com", "a", "most_recent")
    # Without activity the fallback to updated_at decides.
    gv = golden_profile([newer_update, stale], r).attributes["email"]
    assert gv.value == "updated@example.com"


def test_most_recent_mixes_naive_and_aware_datetimes() -> None:
    naive = MemberRecord("a", "crm", "1", datetime(2024, 3, 1), values={"email": "naive@example.com"})
    aware = member("b", days=0, email="aware@example.com")
    gv = golden_profile([aware, naive], rules({"email": ["most_recent"]})).attributes["email"]
    assert gv.record_id == "a"


def test_most_trusted_source_follows_priority_and_unlisted_rank_last() -> None:
    r = rules({"national_id": ["most_trusted_source"]})
    members = [
        member("a", "newsletter", national_id="N1"),
        member("b", "partner_api", national_id="N2"),
        member("c", "crm", national_id="N3"),
    ]
    gv = golden_profile(members, r).attributes["national_id"]
    assert (gv.value, gv.source, gv.strategy) == ("N3", "crm", "most_trusted_source")
    assert [alt.source for alt in gv.alternatives] == ["newsletter", "partner_api"]


def test_rule_level_source_priority_overrides_global() -> None:
    r = SurvivorshipRules.from_mapping(
        {
            "source_priority": ["billing", "crm"],
            "rules": {"last_name": {"strategies": ["most_trusted_source"], "source_priority": ["crm"]}},
        }
    )
    members = [member("a", "billing", last_name="Meyer"), member("b", "crm", last_name="Maier")]
    assert golden_profile(members, r).attributes["last_name"].value == "Maier"


def test_most_frequent_counts_normalized_spellings_together() -> None:
    r = rules({"last_name": ["most_frequent", "most_trusted_source"]})
    members = [
        member("a", "billing", last_name="Mueller"),
        member("b", "crm", last_name="MÜLLER"),
        member("c", "helpdesk", last_name="Müller"),
    ]
    gv = golden_profile(members, r).attributes["last_name"]
    assert gv.strategy == "most_frequent"
    assert gv.support == 2
    # The value is "Müller" either way; the mixed-case spelling is shown over the legacy upper-case one.
    assert (gv.value, gv.record_id) == ("Müller", "c")
    assert [(alt.value, alt.support) for alt in gv.alternatives] == [("Mueller", 1)]


def test_most_frequent_casefolds_other_attributes() -> None:
    r = rules({"email": ["most_frequent", "most_recent"]})
    members = [
        member("a", days=9, email="new@example.com"),
        member("b", days=1, email="Old@Example.com"),
        member("c", days=2, email="old@example.com"),
    ]
    gv = golden_profile(members, r).attributes["email"]
    assert gv.value.casefold() == "old@example.com" and gv.support == 2
    assert gv.strategy == "most_frequent"


def test_most_frequent_tie_is_broken_by_the_next_strategy() -> None:
    r = rules({"first_name": ["most_frequent", "most_trusted_source"]})
    members = [
        member("a", "newsletter", first_name="Jon"),
        member("b", "helpdesk", first_name="Jon"),
        member("c", "crm", first_name="John"),
        member("d", "billing", first_name="John"),
    ]
    gv = golden_profile(members, r).attributes["first_name"]
    assert (gv.value, gv.source, gv.strategy) == ("John", "billing", "most_trusted_source")


def test_most_complete_prefers_the_informative_value() -> None:
    r = rules({"first_name": ["most_complete"]})
    members = [
        member("a", first_name="J."),
        member("b", first_name="Jonathan"),
        member("c", first_name="Jon"),
    ]
    gv = golden_profile(members, r).attributes["first_name"]
    assert (gv.value, gv.strategy) == ("Jonathan", "most_complete")
    assert [alt.value for alt in gv.alternatives] == ["Jon", "J."]


def test_punctuation_does_not_count_as_completeness() -> None:
    r = rules({"first_name": ["most_complete", "most_trusted_source"]})
    members = [member("a", "newsletter", first_name="J....."), member("b", "billing", first_name="Jo")]
    assert golden_profile(members, r).attributes["first_name"].value == "Jo"


def test_final_tie_break_is_record_id_not_input_order() -> None:
    r = rules({"phone": ["most_recent", "most_trusted_source"]})
    members = [member("b", phone="+4930111"), member("a", phone="+4930222"), member("c", phone="+4930333")]
    for order in (members, members[::-1]):
        gv = golden_profile(order, r).attributes["phone"]
        assert (gv.record_id, gv.value, gv.strategy) == ("a", "+4930222", "tie_break")


def test_strategy_reported_is_the_one_that_decided() -> None:
    r = rules({"email": ["most_trusted_source", "most_recent"]})
    members = [
        member("a", "crm", days=1, email="one@example.com"),
        member("b", "crm", days=2, email="two@x.io"),
    ]
    assert golden_profile(members, r).attributes["email"].strategy == "most_recent"


def test_agreement_is_reported_as_unanimous() -> None:
    r = rules({"email": ["most_trusted_source"]})
    members = [member("a", "crm", email="same@example.com"), member("b", "billing", email="SAME@example.com")]
    gv = golden_profile(members, r).attributes["email"]
    assert gv.strategy == "unanimous" and gv.alternatives == () and gv.support == 2
    assert gv.source == "billing"  # the strategies still choose which record is cited


# --------------------------------------------------------------------------------------------------------
# Quality flags
# --------------------------------------------------------------------------------------------------------


def test_flagged_value_loses_against_unflagged() -> None:
    r = SurvivorshipRules.default()
    members = [
        member("a", "billing", quality={"placeholder_date"}, date_of_birth=date(1900, 1, 1)),
        member("b", "newsletter", date_of_birth=date(1984, 7, 3)),
    ]
    gv = golden_profile(members, r).attributes["date_of_birth"]
    assert (gv.value, gv.record_id, gv.strategy, gv.flags) == (date(1984, 7, 3), "b", "quality", ())
    (alt,) = gv.alternatives
    assert (alt.value, alt.flags) == (date(1900, 1, 1), ("placeholder_date",))


def test_flag_only_removes_flagged_values_then_strategies_decide() -> None:
    r = rules({"phone": ["most_recent"]})
    members = [
        member("a", days=30, quality={"junk_phone"}, phone="0000000"),
        member("b", days=10, phone="+4930111"),
        member("c", days=20, phone="+4930222"),
    ]
    gv = golden_profile(members, r).attributes["phone"]
    assert (gv.value, gv.strategy) == ("+4930222", "most_recent")
    assert [alt.value for alt in gv.alternatives] == ["+4930111", "0000000"]  # flagged ranks last


def test_when_every_value_is_flagged_one_still_survives_with_its_flags() -> None:
    r = rules({"phone": ["most_recent"]})
    members = [
        member("a", days=1, quality={"junk_phone"}, phone="111"),
        member("b", days=2, quality={"junk_phone"}, phone="999"),
    ]
    gv = golden_profile(members, r).attributes["phone"]
    assert (gv.value, gv.flags, gv.strategy) == ("999", ("junk_phone",), "most_recent")


def test_flag_for_another_attribute_does_not_discredit() -> None:
    r = rules({"email": ["most_recent"]})
    members = [
        member("a", days=9, quality={"junk_phone"}, email="new@example.com", phone="000"),
        member("b", days=1, email="old@example.com"),
    ]
    assert golden_profile(members, r).attributes["email"].record_id == "a"


# --------------------------------------------------------------------------------------------------------
# Address group
# --------------------------------------------------------------------------------------------------------


def test_address_survives_as_one_group() -> None:
    r = SurvivorshipRules.default()
    moved = member("new", "newsletter", active=90, address_line1="Hauptstraße 5", city="Köln", country="DE")
    old = member(
        "old",
        "billing",
        active=10,
        street_number="12",
        address_line1="Gartenweg 12",
        address_line2="2. OG",
        city="Berlin",
        postcode="10115",
        country="DE",
    )
    profile = golden_profile([old, moved], r)
    address = {a: gv for a, gv in profile.attributes.items() if a in ADDRESS}
    # Never the newer street with the older postcode: the attributes the winner lacks stay absent.
    assert set(address) == {"address_line1", "city", "country"}
    assert {gv.record_id for gv in address.values()} == {"new"}
    assert {gv.group for gv in address.values()} == {"address"}
    assert {gv.strategy for gv in address.values()} == {"most_recent"}
    assert profile.attributes["city"].alternatives[0].value == "Berlin"
    whole = profile.groups["address"]
    assert dict(whole.value) == {"address_line1": "Hauptstraße 5", "city": "Köln", "country": "DE"}
    (alt,) = whole.alternatives
    assert alt.record_id == "old" and alt.value["postcode"] == "10115"


def test_invalid_postcode_makes_the_whole_address_lose() -> None:
    r = SurvivorshipRules.default()
    flagged = member("a", "billing", active=50, quality={"invalid_postcode"}, city="Wien", postcode="1O1O")
    clean = member("b", "newsletter", active=1, city="Graz", postcode="8010")
    profile = golden_profile([flagged, clean], r)
    assert (profile.attributes["city"].value, profile.attributes["postcode"].value) == ("Graz", "8010")
    assert profile.groups["address"].strategy == "quality"
    assert profile.attributes["postcode"].alternatives[0].flags == ("invalid_postcode",)
    assert profile.attributes["city"].alternatives[0].flags == ()


def test_flag_on_an_attribute_the_record_lacks_is_ignored() -> None:
    r = rules({"address": ["most_recent"]})
    a = member("a", days=9, quality={"invalid_postcode"}, city="Graz")  # flag without a postcode
    b = member("b", days=1, city="Linz", postcode="4020")
    assert golden_profile([a, b], r).groups["address"].record_id == "a"


def test_group_most_complete_counts_filled_attributes() -> None:
    r = rules({"address": ["most_complete"]})
    sparse = member("a", city="Hamburg")
    full = member("b", street_number="3", address_line1="Elbchaussee", city="Hamburg", postcode="22763")
    assert golden_profile([sparse, full], r).groups["address"].record_id == "b"


def test_groups_are_configurable_as_data() -> None:
    name_group = rules({"name": ["most_trusted_source"]}, groups={"name": ["first_name", "last_name"]})
    members = [
        member("a", "billing", last_name="Smith"),
        member("b", "crm", first_name="Anna", last_name="Smyth"),
    ]
    profile = golden_profile(members, name_group)
    assert profile.attributes["last_name"].record_id == "a"
    assert "first_name" not in profile.attributes  # not taken from the other record
    # With no groups, address attributes survive independently.
    independent = rules({"city": ["most_recent"], "postcode": ["most_trusted_source"]}, groups={})
    members = [
        member("a", "billing", days=1, city="Bonn", postcode="53111"),
        member("b", days=5, city="Köln"),
    ]
    profile = golden_profile(members, independent)
    assert (profile.attributes["city"].record_id, profile.attributes["postcode"].record_id) == ("b", "a")
    assert profile.groups == {}


# --------------------------------------------------------------------------------------------------------
# Provenance and output
# --------------------------------------------------------------------------------------------------------


def test_provenance_and_alternatives() -> None:
    r = rules({"email": ["most_recent"]})
    members = [
        member("r1", "crm", days=3, email="a@example.com"),
        member("r2", "helpdesk", days=2, email="b@example.com"),
        member("r3", "newsletter", days=1, email="b@example.com"),
        member("r4", "billing", days=0, email="c@example.com"),
    ]
    gv = golden_profile(members, r).attributes["email"]
    assert (gv.value, gv.record_id, gv.source, gv.source_record_id) == (
        "a@example.com",
        "r1",
        "crm",
        "crm-r1",
    )
    assert [(a.value, a.record_id, a.source, a.source_record_id, a.support) for a in gv.alternatives] == [
        ("b@example.com", "r2", "helpdesk", "helpdesk-r2", 2),
        ("c@example.com", "r4", "billing", "billing-r4", 1),
    ]


def test_absent_attributes_sources_and_members() -> None:
    members = [
        member("b", "newsletter", email="x@example.com", first_name="  ", phone=None),
        member("a", "crm", first_name="Ann", extra_field="ignored"),
    ]
    profile = golden_profile(members, SurvivorshipRules.default())
    assert list(profile.attributes) == ["first_name", "email"]  # canonical order; blank/None are absent
    assert profile.sources == ("crm", "newsletter")
    assert profile.record_ids == ("a", "b")
    assert golden_profile([], SurvivorshipRules.default()) == GoldenProfile({}, {}, (), ())


def test_to_dict_is_json_with_iso_dates() -> None:
    members = [
        member("a", "billing", date_of_birth=date(1980, 2, 29), city="Köln", email="a@example.com"),
        member("b", "crm", active=5, date_of_birth=date(1980, 2, 28), email="b@example.com"),
    ]
    out = golden_profile(members, SurvivorshipRules.default()).to_dict()
    assert json.loads(json.dumps(out)) == out
    dob = out["attributes"]["date_of_birth"]
    assert dob["value"] == "1980-02-29" and dob["alternatives"][0]["value"] == "1980-02-28"
    assert dob["strategy"] == "most_trusted_source" and dob["source"] == "billing"
    assert out["groups"]["address"]["value"] == {"city": "Köln"}
    assert out["sources"] == ["billing", "crm"]
    assert {v["strategy"] for v in out["attributes"].values()} <= set(DECIDERS)


def test_duplicate_record_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        golden_profile([member("a", email="x@example.com"), member("a", email="y@example.com")], rules({}))


def test_member_values_are_a_private_copy() -> None:
    values = {"email": "before@example.com"}
    m = MemberRecord("a", "crm", "1", T0, values=values)
    values["email"] = "after@example.com"
    assert m.values["email"] == "before@example.com"
    with pytest.raises(TypeError):
        m.values["email"] = "x"  # type: ignore[index]


def test_member_validation_messages_carry_no_values() -> None:
    with pytest.raises(ValueError, match="record_id") as info:
        MemberRecord("", "crm", "secret-id-123", T0)
    assert "secret-id-123" not in str(info.value)


def test_reprs_show_no_personal_data() -> None:
    pii = ["Jonathan", "Smith", "jon@example.com", "+4930123456", "1980", "Gartenweg", "10115", "AB123456C"]
    m = member(
        "rec-1",
        "crm",
        quality={"junk_phone"},
        first_name="Jonathan",
        last_name="Smith",
        email="jon@example.com",
        phone="+4930123456",
        date_of_birth=date(1980, 5, 17),
        address_line1="Gartenweg 3",
        postcode="10115",
        national_id="AB123456C",
    )
    other = member("rec-2", "billing", first_name="Jon", email="other@example.com")
    profile = golden_profile([m, other], SurvivorshipRules.default())
    texts = [
        repr(m),
        repr(profile),
        *map(repr, profile.attributes.values()),
        *map(repr, profile.groups.values()),
    ]
    texts += [repr(alt) for gv in profile.attributes.values() for alt in gv.alternatives]
    for text in texts:
        for value in pii:
            assert value not in text, text
    assert "rec-1" in repr(m) and "crm" in repr(m) and "first_name" in repr(m)


# --------------------------------------------------------------------------------------------------------
# Configuration errors
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"rules": {"email": {"strategies": ["most_recent", "newest"]}}},
            "rules.email.strategies[1]: unknown strategy 'newest'",
        ),
        ({"rules": {"emial": {"strategies": ["most_recent"]}}}, "rules.emial: unknown attribute or group"),
        ({"rules": {"city": {"strategies": ["most_recent"]}}}, "rules.city: 'city' is in group 'address'"),
        ({"rules": {"email": ["most_recent"]}}, "rules.email: expected a table, got list"),
        ({"rules": {"email": {"strategies": "most_recent"}}}, "rules.email.strategies: expected a list"),
        ({"rules": {"email": {"strategies": []}}}, "rules.email.strategies: must not be empty"),
        ({"rules": {"email": {}}}, "rules.email.strategies: missing"),
        (
            {"rules": {"email": {"strategies": ["most_recent"], "weight": 2}}},
            "rules.email.weight: unknown key",
        ),
        (
            {"rules": {"email": {"strategies": ["most_recent", "most_recent"]}}},
            "rules.email.strategies[1]: duplicate entry 'most_recent'",
        ),
        (
            {"rules": {"national_id": {"strategies": ["most_trusted_source"]}}},
            "rules.national_id.strategies[0]: most_trusted_source needs a non-empty source_priority",
        ),
        ({"source_priority": "billing"}, "source_priority: expected a list of strings, got str"),
        ({"source_priority": ["crm", 987654]}, "source_priority[1]: expected a non-empty string, got int"),
        ({"source_priority": ["crm", "crm"]}, "source_priority[1]: duplicate entry 'crm'"),
        ({"default_strategies": ["latest"]}, "default_strategies[0]: unknown strategy 'latest'"),
        ({"groups": {"address": ["street", "city"]}}, "groups.address[0]: unknown attribute 'street'"),
        (
            {"groups": {"a": ["city"], "b": ["postcode", "city"]}},
            "groups.b[1]: 'city' is already in group 'a'",
        ),
        ({"groups": {"city": ["postcode"]}}, "groups.city: a group must not be named like an attribute"),
        ({"groups": {"address": []}}, "groups.address: must not be empty"),
        ({"groups": ["address"]}, "groups: expected a table, got list"),
        (
            {"quality_flags": {"junk_phone": ["phon"]}},
            "quality_flags.junk_phone[0]: unknown attribute 'phon'",
        ),
        ({"rule": {}}, "rule: unknown key"),
    ],
)
def test_config_errors_name_the_key_path(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SurvivorshipConfigError) as info:
        SurvivorshipRules.from_mapping(config)
    assert str(info.value).startswith(message)
    assert "987654" not in str(info.value)  # types are named, values are not echoed
    assert info.value.path == message.split(":")[0]


def test_config_errors_from_toml() -> None:
    with pytest.raises(
        SurvivorshipConfigError, match=r"rules\.email\.strategies\[1\]: unknown strategy 'newest'"
    ):
        SurvivorshipRules.from_toml('[rules.email]\nstrategies = ["most_recent", "newest"]\n')
    with pytest.raises(SurvivorshipConfigError, match="not valid TOML") as info:
        SurvivorshipRules.from_toml('source_priority = ["billing", "secret-value\n')
    assert "secret-value" not in str(info.value)


def test_config_error_survives_pickling() -> None:
    error = SurvivorshipConfigError("rules.email", "unknown key")
    clone = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (clone.path, str(clone)) == ("rules.email", str(error))


def test_long_keys_are_shortened_in_messages() -> None:
    with pytest.raises(SurvivorshipConfigError) as info:
        SurvivorshipRules.from_mapping({"rules": {"x" * 500: {"strategies": ["most_recent"]}}})
    assert len(str(info.value)) < 700 and "x" * 100 not in str(info.value).split(":", 1)[1]


# --------------------------------------------------------------------------------------------------------
# Property: the result never depends on member order
# --------------------------------------------------------------------------------------------------------

_SOURCES = ["billing", "crm", "helpdesk", "newsletter", "partner"]
_POOLS: dict[str, list[Any]] = {
    "first_name": ["Jon", "John", "JOHN", "J.", "Jonathan"],
    "last_name": ["Müller", "MÜLLER", "Mueller", "Smith"],
    "date_of_birth": [date(1900, 1, 1), date(1980, 1, 2), date(1980, 2, 1)],
    "email": ["a@example.com", "A@example.com", "b@example.com"],
    "phone": ["+4930111", "+4930222", "000"],
    "city": ["Köln", "KÖLN", "Bonn"],
    "postcode": ["50667", "53111"],
    "address_line1": ["Hauptstraße 5", "HAUPTSTRASSE 5", "Gartenweg 1"],
}
_FLAGS = ["placeholder_date", "junk_phone", "invalid_postcode", "unknown_flag"]


@st.composite
def _members(draw: st.DrawFn) -> list[MemberRecord]:
    ids = draw(st.lists(st.text("abcdef", min_size=1, max_size=3), min_size=1, max_size=6, unique=True))
    out = []
    for record_id in ids:
        values = {name: draw(st.sampled_from(pool)) for name, pool in _POOLS.items() if draw(st.booleans())}
        out.append(
            MemberRecord(
                record_id=record_id,
                source=draw(st.sampled_from(_SOURCES)),
                source_record_id=record_id,
                updated_at=T0 + timedelta(days=draw(st.integers(0, 3))),
                last_activity_at=draw(st.none() | st.integers(0, 3).map(lambda d: T0 + timedelta(days=d))),
                values=values,
                quality=frozenset(draw(st.sets(st.sampled_from(_FLAGS), max_size=2))),
            )
        )
    return out


@st.composite
def _rules(draw: st.DrawFn) -> SurvivorshipRules:
    names = [s.value for s in Strategy]
    targets = ["first_name", "last_name", "date_of_birth", "email", "phone", "address"]
    config = {
        "source_priority": draw(st.permutations(_SOURCES[:4])),
        "rules": {
            target: {
                "strategies": draw(st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True))
            }
            for target in targets
        },
    }
    return SurvivorshipRules.from_mapping(config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=_members(), rules_=_rules(), data=st.data())
def test_result_is_independent_of_member_order(
    members: list[MemberRecord], rules_: SurvivorshipRules, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(members))
    expected = golden_profile(members, rules_)
    assert golden_profile(shuffled, rules_).to_dict() == expected.to_dict()
    # Invariants: every address attribute comes from the group's record; strategies are known deciders.
    address = expected.groups.get("address")
    for name, gv in expected.attributes.items():
        assert gv.strategy in DECIDERS
        if name in ADDRESS:
            assert address is not None and gv.record_id == address.record_id


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=_members(), rules_=_rules())
def test_without_alternatives_the_same_values_survive_with_nothing_listed_against_them(
    members: list[MemberRecord], rules_: SurvivorshipRules
) -> None:
    """The profile read asks for no alternatives: it must still disclose exactly what the full run
    chooses (value, record, strategy, support, flags), only without the values that lost."""

    def without_alternatives(profile: dict[str, Any]) -> dict[str, Any]:
        return {
            kind: {name: {**gv, "alternatives": []} for name, gv in profile[kind].items()}
            for kind in ("attributes", "groups")
        }

    full = golden_profile(members, rules_)
    lean = golden_profile(members, rules_, alternatives=False)

    assert without_alternatives(lean.to_dict()) == without_alternatives(full.to_dict())
    assert all(not gv.alternatives for gv in (*lean.attributes.values(), *lean.groups.values()))
    assert lean.sources == full.sources and lean.record_ids == full.record_ids
