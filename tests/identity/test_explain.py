"""Explanations: the waterfall terms of a pair sum to the weight the resolver scored it with, and carry
comparison names and level labels only — never a compared value."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cdp.identity.comparisons import compare
from cdp.identity.explain import PRIOR_LABEL, PairExplanation, Term, explain_pair
from cdp.identity.resolver import Resolution, resolve
from cdp.identity.settings import BlockingRule, MatchSettings
from cdp.identity.table import RecordTable

PEOPLE: list[dict[str, str | None]] = [
    {
        "first_name": "margarethe",
        "last_name": "okonkwo",
        "date_of_birth": "1984-07-19",
        "email": "m.okonkwo@mailbox.test",
        "phone": "+4915112345678",
        "postcode": "EC1A 1BB",
        "city": "berlin",
    },
    {
        "first_name": "margarete",
        "last_name": "okonkwo",
        "date_of_birth": "1984-07-19",
        "email": "m.okonkwo@mailbox.test",
        "phone": None,
        "postcode": "EC1A 1BB",
        "city": "berlin",
    },
    {
        "first_name": "margarethe",
        "last_name": "okonkwo",
        "date_of_birth": "1984-07-18",
        "email": None,
        "phone": "+4915112345678",
        "postcode": None,
        "city": "berlin",
    },
    {
        "first_name": "bartholomew",
        "last_name": "fairweather",
        "date_of_birth": "1962-02-11",
        "email": "bart.fw@post.test",
        "phone": "+447700900461",
        "postcode": "LS1 4AP",
        "city": "leeds",
    },
    {
        "first_name": "bart",
        "last_name": "fairweather",
        "date_of_birth": "1962-02-11",
        "email": "bart.fw@post.test",
        "phone": "+447700900461",
        "postcode": "LS1 4AP",
        "city": "leeds",
    },
    {
        "first_name": "ingrid",
        "last_name": "fairweather",
        "date_of_birth": "1993-10-28",
        "email": "ingrid.fairweather@post.test",
        "phone": "+447700900999",
        "postcode": "LS1 4AP",
        "city": "leeds",
    },
    {
        "first_name": "wilhelmina",
        "last_name": "okonkwo",
        "date_of_birth": "1950-01-30",
        "email": "w.okonkwo@mailbox.test",
        "phone": "+4915199999999",
        "postcode": "M1 1AE",
        "city": "munchen",
    },
    {
        "first_name": "radoslaw",
        "last_name": "quigley",
        "date_of_birth": "1977-05-05",
        "email": "rq@shop.test",
        "phone": None,
        "postcode": "EC1A 1BB",
        "city": "berlin",
    },
    {
        "first_name": "radoslaw",
        "last_name": "quigley",
        "date_of_birth": "1977-05-05",
        "email": "rq@shop.test",
        "phone": None,
        "postcode": "EC1A 1BD",
        "city": "berlin",
    },
]
DATA_VALUES = {v for person in PEOPLE for v in person.values() if v is not None}


@pytest.fixture(scope="module")
def resolution() -> Resolution:
    default = MatchSettings.default()
    # Wider blocking than the default, so that namesakes and neighbours become candidate pairs too.
    extra = (BlockingRule("last_name", ("last_name",)), BlockingRule("city", ("city",)))
    settings = dataclasses.replace(default, blocking=default.blocking + extra)
    table = RecordTable.build(
        [("crm", f"c{i}", person) for i, person in enumerate(PEOPLE)], settings.protection
    )
    resolved = resolve(table, settings)
    # Put the threshold at the median score, so the pairs fall on both sides of it.
    median = float(np.median(resolved.weights))
    settings = dataclasses.replace(
        settings, clustering=dataclasses.replace(settings.clustering, threshold=median)
    )
    return dataclasses.replace(resolved, settings=settings)


def explanations(resolution: Resolution) -> list[tuple[float, PairExplanation]]:
    pairs = resolution.pairs
    return [
        (float(weight), explain_pair(resolution.table, resolution.model, resolution.settings, a, b))
        for a, b, weight in zip(pairs.left.tolist(), pairs.right.tolist(), resolution.weights, strict=True)
    ]


def test_the_small_table_gives_enough_candidate_pairs(resolution: Resolution) -> None:
    assert len(resolution.pairs) >= 12


def test_the_terms_sum_to_the_weight_score_gave_the_pair(resolution: Resolution) -> None:
    for weight, explanation in explanations(resolution):
        assert explanation.total == pytest.approx(weight, abs=1e-9)
        assert explanation.to_dict()["match_weight"] == pytest.approx(weight, abs=1e-4)


def test_the_prior_is_the_first_term_then_one_term_per_comparison(resolution: Resolution) -> None:
    names = ["prior", *(c.name for c in resolution.settings.comparisons)]
    for _, explanation in explanations(resolution):
        assert [term.name for term in explanation.terms] == names
        assert explanation.terms[0].weight == resolution.model.prior_weight


def test_null_comparisons_contribute_nothing(resolution: Resolution) -> None:
    nulls = 0
    for _, explanation in explanations(resolution):
        for term in explanation.terms[1:]:
            if term.level == "null (no evidence)":
                nulls += 1
                assert term == Term(term.name, term.level, 0.0)
    assert nulls > 0


def test_each_term_is_its_levels_log_bayes_factor_plus_the_tf_adjustment(resolution: Resolution) -> None:
    model, pairs = resolution.model, resolution.pairs
    gammas = compare(resolution.table, model.comparisons, pairs.left, pairs.right)
    weights = model.level_weights()
    adjusted = 0
    for i, (_, explanation) in enumerate(explanations(resolution)):
        for c, (comparison, term) in enumerate(zip(model.comparisons, explanation.terms[1:], strict=True)):
            g = int(gammas[c, i])
            assert term.level == comparison.level_label(g)
            if g < 0:
                continue
            assert (term.m, term.u) == (model.m[c][g], model.u[c][g])
            assert term.weight == pytest.approx(weights[c][g] + term.tf_adjustment, abs=1e-12)
            if term.tf_adjustment:
                level = comparison.levels[comparison.level_count - 1 - g]
                assert level.kind == "exact" and level.tf
                adjusted += 1
    assert adjusted > 0


def test_decision_follows_the_threshold(resolution: Resolution) -> None:
    threshold = resolution.settings.clustering.threshold
    decisions = set()
    for weight, explanation in explanations(resolution):
        expected = "match" if weight >= threshold else "non-match"
        assert explanation.decision == expected
        assert explanation.threshold == threshold
        assert explanation.to_dict()["decision"] == expected
        decisions.add(expected)
    assert decisions == {"match", "non-match"}


def test_probability_is_the_logistic_of_the_total_in_bits() -> None:
    explanation = PairExplanation((Term("prior", "p", -3.0), Term("email", "exact match", 9.0)), 6.0)

    assert explanation.total == 6.0
    assert explanation.probability == pytest.approx(64 / 65)
    assert explanation.decision == "match"


def test_dict_and_waterfall_contain_no_data_values(resolution: Resolution) -> None:
    level_labels = {
        c.level_label(g) for c in resolution.settings.comparisons for g in range(-1, c.level_count)
    }
    for _, explanation in explanations(resolution):
        document = json.dumps(explanation.to_dict())
        waterfall = explanation.waterfall()
        for value in DATA_VALUES:
            assert value not in document
            assert value not in waterfall
        for term in explanation.to_dict()["terms"]:
            assert term["comparison"] in {"prior", *(c.name for c in resolution.settings.comparisons)}
            assert term["level"] in level_labels | {PRIOR_LABEL}


def test_waterfall_shows_a_running_total_ending_in_the_decision(resolution: Resolution) -> None:
    _, explanation = explanations(resolution)[0]

    lines = explanation.waterfall().splitlines()

    assert len(lines) == len(explanation.terms) + 1
    assert lines[0].startswith("prior")
    assert lines[-1].startswith("total")
    assert explanation.decision in lines[-1]
    assert f"{explanation.total:+8.2f}" in lines[-1]
