"""Segment definitions: every mistake is reported with its path; every condition selects exactly the
customers it describes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from cdp.analytics.segments import SegmentDefinition, SegmentDefinitionError, parse_definition
from tests.analytics.synthetic import AS_OF, Event, build

PURPOSES = frozenset({"analytics", "profiling", "marketing_email"})
RFM = frozenset({"champions", "lost"})


def parse(data: Any) -> SegmentDefinition:
    return parse_definition(data, consent_purposes=PURPOSES, rfm_segments=RFM)


def errors_of(data: Any) -> dict[str, list[str]]:
    with pytest.raises(SegmentDefinitionError) as caught:
        parse(data)
    return caught.value.errors


class Source:
    """Scores and consent given by hand."""

    def __init__(self, n: int, **metrics: list[float]) -> None:
        self.n = n
        self.metrics = {k: np.array(v, dtype=float) for k, v in metrics.items()}
        self.consented: dict[str, NDArray[np.bool_]] = {}
        self.rfm: dict[str, NDArray[np.bool_]] = {}
        self.channels: dict[str, NDArray[np.bool_]] = {}

    def values(self, metric: str) -> NDArray[np.float64]:
        return self.metrics[metric]

    def rfm_segments(self) -> Mapping[str, NDArray[np.bool_]]:
        return self.rfm

    def preferred_channels(self) -> Mapping[str, NDArray[np.bool_]]:
        return self.channels

    def consent(self, purpose: str) -> NDArray[np.bool_]:
        return self.consented[purpose]


def selected(definition: dict[str, Any], dataset: Any, source: Source) -> list[int]:
    mask = parse({"name": "t-segment", "match": definition}).evaluate(dataset, source)
    return [int(i) for i in np.flatnonzero(mask)]


# -- validation ----------------------------------------------------------------------------------------


def test_the_issue_example_parses_with_its_schedule() -> None:
    definition = parse(
        {
            "name": "billing-complainers",
            "description": "Billing customers with a complaint in the last 90 days who may be emailed",
            "schedule": "0 4 * * *",
            "match": {
                "all": [
                    {"department": "billing"},
                    {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
                    {"consent": "marketing_email"},
                ]
            },
        }
    )
    assert definition.purpose == "analytics"
    assert definition.schedule == "0 4 * * *"
    assert definition.needs().consents == {"marketing_email"}


def test_every_mistake_is_reported_with_its_path() -> None:
    errors = errors_of(
        {
            "name": "Bad Name",
            "schedule": "daily",
            "match": {
                "all": [
                    {"department": "billing", "colour": "red"},
                    {"interactions": {"kind": ["complaint"], "within_days": 0}},
                    {"metric": "clv", "op": "~", "value": 1},
                    {"metric": "churn_risk", "op": "between", "value": [0.9, 0.1]},
                    {"consent": "telepathy"},
                    {"age": {"min": 70, "max": 20}},
                    {"rfm_segment": ["champions", "royalty"]},
                    {"country": ["Germany"]},
                    {"frobnicate": True},
                ]
            },
        }
    )
    assert set(errors) == {
        "name",
        "schedule",
        "match.all[0].colour",
        "match.all[1].interactions.within_days",
        "match.all[2].op",
        "match.all[3].value",
        "match.all[4].consent",
        "match.all[5].age",
        "match.all[6].rfm_segment",
        "match.all[7].country",
        "match.all[8]",
    }
    assert "royalty" in errors["match.all[6].rfm_segment"][0]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ("not an object", "definition"),
        ({"name": "no-match"}, "match"),
        ({"name": "x-y", "match": {}}, "match"),
        ({"name": "x-y", "match": {"all": []}}, "match.all"),
        ({"name": "x-y", "match": {"department": "billing", "consent": "analytics"}}, "match"),
        ({"name": "x-y", "purpose": "marketing", "match": {"department": "billing"}}, "purpose"),
        (
            {"name": "x-y", "match": {"interactions": {"kind": ["complaint"]}, "min": 3, "max": 1}},
            "match.max",
        ),
        ({"name": "x-y", "match": {"metric": "shoe_size", "op": ">", "value": 1}}, "match.metric"),
        ({"name": "x-y", "match": {"metric": "clv", "op": ">", "value": True}}, "match.value"),
        ({"name": "x-y", "match": {"interactions": {"channel": ["pigeon"]}}}, "match.interactions.channel.0"),
    ],
)
def test_bad_definitions_are_refused_at_the_path_of_the_mistake(data: Any, path: str) -> None:
    assert path in errors_of(data)


def test_definitions_may_not_nest_or_grow_without_bound() -> None:
    deep: dict[str, Any] = {"department": "sales"}
    for _ in range(8):
        deep = {"not": deep}
    assert any("nest" in m for ms in errors_of({"name": "deep", "match": deep}).values() for m in ms)
    wide = {"any": [{"department": "sales"}] * 60}
    assert any("at most" in m for ms in errors_of({"name": "wide", "match": wide}).values() for m in ms)


# -- evaluation ---------------------------------------------------------------------------------------


def population() -> Any:
    return build(
        [
            [Event(10, "complaint", "letter", department="billing")],  # 0
            [Event(200, "complaint", "letter", department="billing")],  # 1: complained too long ago
            [Event(5, "purchase", "web", amount=10.0), Event(3, "purchase", "web", amount=10.0)],  # 2
            [Event(40, "mailing", "email", "outbound")],  # 3
            [],  # 4
        ],
        departments=[["billing"], ["billing", "sales"], ["sales"], ["sales"], ["marketing"]],
    )


def test_department_interactions_and_consent_combine_as_the_issue_example_says() -> None:
    dataset = population()
    source = Source(5)
    source.consented["marketing_email"] = np.array([True, True, True, False, False])
    example = {
        "all": [
            {"department": "billing"},
            {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
            {"consent": "marketing_email"},
        ]
    }
    assert selected(example, dataset, source) == [0]
    source.consented["marketing_email"][0] = False
    assert selected(example, dataset, source) == []


def test_interaction_filters_counts_and_logic() -> None:
    dataset = population()
    source = Source(5)
    assert selected({"interactions": {"kind": ["purchase"]}, "min": 2}, dataset, source) == [2]
    assert selected({"interactions": {"kind": ["purchase"]}, "min": 3}, dataset, source) == []
    assert selected({"interactions": {"direction": "outbound", "channel": ["email"]}}, dataset, source) == [3]
    assert selected({"interactions": {"department": ["billing"]}, "min": 0, "max": 0}, dataset, source) == [
        2,
        3,
        4,
    ]
    assert selected({"any": [{"department": "marketing"}, {"department": "billing"}]}, dataset, source) == [
        0,
        1,
        4,
    ]
    assert selected({"not": {"department": "sales"}}, dataset, source) == [0, 4]


def test_metric_conditions_never_match_unknown_values() -> None:
    dataset = population()
    source = Source(5, clv=[10.0, float("nan"), 300.0, 50.0, 0.0])
    assert selected({"metric": "clv", "op": ">=", "value": 50}, dataset, source) == [2, 3]
    assert selected({"metric": "clv", "op": "between", "value": [0, 50]}, dataset, source) == [0, 3, 4]
    assert selected({"not": {"metric": "clv", "op": ">", "value": 20}}, dataset, source) == [0, 1, 4]


def test_groups_country_and_age_conditions() -> None:
    dataset = population()
    dataset.customers.country = np.array(["DE", "GB", None, "DE", "AT"], dtype=object)
    year = 1970 + 0 * np.arange(5)
    dataset.customers.birth_year = np.array([float(year[0]), 2000.0, np.nan, 1950.0, 1990.0])
    source = Source(5)
    source.rfm["champions"] = np.array([False, False, True, False, False])
    source.channels["phone"] = np.array([True, False, False, False, True])
    assert selected({"rfm_segment": "champions"}, dataset, source) == [2]
    assert selected({"preferred_channel": ["phone", "letter"]}, dataset, source) == [0, 4]
    assert selected({"country": ["DE", "AT"]}, dataset, source) == [0, 3, 4]
    now_year = 1970 + int(AS_OF // 365.2425)
    assert selected({"age": {"min": now_year - 1975, "max": now_year - 1960}}, dataset, source) == [0]
    assert selected({"age": {"max": 30}}, dataset, source) == [1]


def test_names_that_occur_nowhere_are_pointed_out_rather_than_silently_matching_nobody() -> None:
    definition = parse(
        {
            "name": "typos",
            "match": {
                "any": [
                    {"department": "biling"},
                    {"not": {"interactions": {"kind": ["complant", "purchase"], "department": ["support"]}}},
                ]
            },
        }
    )
    assert definition.unknown_names(population()) == [
        "kind 'complant' occurs nowhere in this population",
        "interaction department 'support' occurs nowhere in this population",
        "department 'biling' occurs nowhere in this population",
    ]
    clean = parse({"name": "fine", "match": {"interactions": {"kind": ["complaint"]}}})
    assert clean.unknown_names(population()) == []
