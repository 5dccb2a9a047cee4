"""Fellegi-Sunter: EM recovers known m and prior from synthetic comparison vectors, the closed-form exact
agreement u, term-frequency adjustments, scores equal to the hand-computed sum of log Bayes factors, and
the model's serialized form."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from cdp.identity.comparisons import compare
from cdp.identity.fellegi_sunter import (
    EMResult,
    MatchModel,
    _exact_agreement_probability,
    compress,
    estimate_u,
    expectation_maximisation,
    probability,
    score,
    tf_adjustments,
)
from cdp.identity.settings import BlockingRule, Comparison, Level, Training
from cdp.identity.table import RecordTable

# Three comparisons with 3, 2 and 3 levels (gamma 0 = different ... top = exact).
COMPARISONS = (
    Comparison("first_name", "first_name", (Level("exact"), Level("jaro_winkler", 0.9))),
    Comparison("email", "email", (Level("exact"),)),
    Comparison("phone", "phone", (Level("exact"), Level("damerau_levenshtein", 1))),
)
TRUE_M = [np.array([0.05, 0.15, 0.80]), np.array([0.10, 0.90]), np.array([0.05, 0.10, 0.85])]
TRUE_U = [np.array([0.90, 0.08, 0.02]), np.array([0.97, 0.03]), np.array([0.95, 0.04, 0.01])]
TRUE_PRIOR = 0.2
EM_TRAINING = Training(max_iterations=500, tolerance=1e-7)
UNRELATED_RULE = BlockingRule("state", ("state",))


def synthetic_pairs(
    n: int = 20_000, seed: int = 1
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_], np.random.Generator]:
    """Comparison vectors drawn from TRUE_M for matches and TRUE_U otherwise; 5 % of first names null."""
    rng = np.random.default_rng(seed)
    match = rng.random(n) < TRUE_PRIOR
    gammas = np.empty((len(COMPARISONS), n), dtype=np.int8)
    for c in range(len(COMPARISONS)):
        levels = len(TRUE_M[c])
        gammas[c] = np.where(match, rng.choice(levels, n, p=TRUE_M[c]), rng.choice(levels, n, p=TRUE_U[c]))
    gammas[0][rng.random(n) < 0.05] = -1
    return gammas, match, rng


def test_em_recovers_known_m_and_prior_with_the_true_u() -> None:
    gammas, match, _ = synthetic_pairs()
    patterns = compress(gammas, np.ones(gammas.shape[1], np.int64), COMPARISONS)

    m, prior, result = expectation_maximisation(patterns, COMPARISONS, [UNRELATED_RULE], TRUE_U, EM_TRAINING)

    assert result.converged
    assert result.iterations < EM_TRAINING.max_iterations
    assert prior == pytest.approx(TRUE_PRIOR, abs=0.02)
    assert prior == pytest.approx(match.mean(), abs=0.01)
    for recovered, true in zip(m, TRUE_M, strict=True):
        np.testing.assert_allclose(recovered, true, atol=0.02)
        assert recovered.sum() == pytest.approx(1.0)


def test_em_from_a_different_starting_point_converges_to_the_same_estimate() -> None:
    gammas, _, _ = synthetic_pairs()
    patterns = compress(gammas, np.ones(gammas.shape[1], np.int64), COMPARISONS)
    flat = [np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.6]), np.array([0.2, 0.3, 0.5])]

    default = expectation_maximisation(patterns, COMPARISONS, [UNRELATED_RULE], TRUE_U, EM_TRAINING)
    other = expectation_maximisation(
        patterns, COMPARISONS, [UNRELATED_RULE], TRUE_U, EM_TRAINING, initial_m=flat, initial_prior=0.4
    )

    assert other[2].converged
    assert other[1] == pytest.approx(default[1], abs=1e-4)
    for a, b in zip(other[0], default[0], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_em_learns_a_comparisons_m_only_from_pairs_of_rules_not_using_its_column() -> None:
    # Candidates: pairs agreeing on email (rule 0, which forces the email level) plus a random half of all
    # pairs (rule 1, which says nothing about email). Only rule 1's pairs show how often matches agree.
    gammas, _, rng = synthetic_pairs()
    by_email = gammas[1] == 1
    by_state = np.asarray(rng.random(gammas.shape[1]) < 0.5)
    satisfied = by_email.astype(np.int64) | (by_state.astype(np.int64) << 1)
    keep = satisfied > 0
    patterns = compress(gammas[:, keep], satisfied[keep], COMPARISONS)
    email_rule = BlockingRule("email", ("email",))

    m, _, result = expectation_maximisation(
        patterns, COMPARISONS, [email_rule, UNRELATED_RULE], TRUE_U, EM_TRAINING
    )
    naive, _, _ = expectation_maximisation(
        patterns, COMPARISONS, [UNRELATED_RULE, UNRELATED_RULE], TRUE_U, EM_TRAINING
    )

    assert result.converged
    assert m[1][1] == pytest.approx(TRUE_M[1][1], abs=0.02)
    assert naive[1][1] - TRUE_M[1][1] > 0.03  # counting the forced agreements biases m upwards


def test_compress_groups_identical_patterns_and_keeps_their_counts() -> None:
    gammas = np.array([[2, 2, 1, 2, -1], [1, 1, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=np.int8)
    satisfied = np.array([1, 1, 1, 2, 1], dtype=np.int64)

    patterns = compress(gammas, satisfied, COMPARISONS)

    assert patterns.counts.sum() == 5
    assert len(patterns.counts) == 4  # pairs 0 and 1 share both the gammas and the rules
    np.testing.assert_array_equal(patterns.gammas[:, patterns.inverse], gammas)
    np.testing.assert_array_equal(patterns.rules[patterns.inverse], satisfied)


# ---- u ------------------------------------------------------------------------------------------------


def names_table(last_names: Sequence[str | None], sources: Sequence[str] | None = None) -> RecordTable:
    sources = sources or ["crm"] * len(last_names)
    return RecordTable.build(
        (s, f"r{i}", {"last_name": v}) for i, (s, v) in enumerate(zip(sources, last_names, strict=True))
    )


LAST_NAME = Comparison("last_name", "last_name", (Level("exact", tf=True), Level("jaro_winkler", 0.85)))


def test_exact_agreement_probability_is_the_sum_of_squared_frequencies() -> None:
    table = names_table(["smith", "smith", "jones", None, "okonkwo"])

    assert _exact_agreement_probability(table, "last_name", link_only=False) == pytest.approx(
        0.5**2 + 0.25**2 + 0.25**2
    )


def test_exact_agreement_probability_across_sources_uses_cross_source_pairs_only() -> None:
    table = names_table(
        ["smith", "smith", "jones", "smith", "okonkwo"], ["crm", "crm", "crm", "shop", "shop"]
    )

    # 3 x 2 cross-source pairs; smith-smith agrees for 2 x 1 of them.
    assert _exact_agreement_probability(table, "last_name", link_only=True) == pytest.approx(2 / 6)


def test_estimate_u_uses_the_closed_form_for_the_exact_level() -> None:
    names = ["smith"] * 30 + ["jones"] * 20 + [f"name{i:03d}" for i in range(50)]
    table = names_table(names)

    u = estimate_u(table, [LAST_NAME], Training(u_sample_pairs=20_000, seed=3), link_only=False)

    assert u[0][2] == pytest.approx(0.3**2 + 0.2**2 + 50 * 0.01**2)
    assert u[0].sum() == pytest.approx(1.0)
    assert (u[0] > 0).all()


# ---- scoring --------------------------------------------------------------------------------------------

SCORED = (
    LAST_NAME,
    Comparison("first_name", "first_name", (Level("exact"), Level("jaro_winkler", 0.9))),
)


def hand_model() -> MatchModel:
    return MatchModel(
        SCORED,
        m=[np.array([0.05, 0.15, 0.80]), np.array([0.10, 0.20, 0.70])],
        u=[np.array([0.85, 0.05, 0.10]), np.array([0.90, 0.07, 0.03])],
        prior=0.1,
        em=EMResult(7, True, 1e-8),
    )


def people_table() -> RecordTable:
    rows: list[tuple[str | None, str | None]] = [
        *[("smith", f"p{i}") for i in range(7)],
        ("smith", "maria"),  # 7
        ("okonkwo", "maria"),  # 8
        ("okonkwo", "mario"),  # 9
        (None, "maria"),  # 10
        ("smyth", "maria"),  # 11
    ]
    return RecordTable.build(
        ("crm", f"r{i}", {"last_name": last, "first_name": first}) for i, (last, first) in enumerate(rows)
    )


def test_agreeing_on_a_rare_surname_scores_higher_than_on_a_common_one() -> None:
    table, model = people_table(), hand_model()
    left, right = np.array([0, 8], np.int32), np.array([7, 9], np.int32)  # smith/smith, okonkwo/okonkwo
    gammas = compare(table, model.comparisons, left, right)
    assert gammas[0].tolist() == [2, 2]
    assert gammas[1].tolist() == [0, 1]
    same_first = np.array([[2, 2], [0, 0]], dtype=np.int8)  # same first-name evidence for both

    smith, okonkwo = score(table, model, left, same_first, tf_floor=1e-6)

    # 8 smiths and 2 okonkwos among 11 known last names: the rare name is worth log2(8/2) = 2 bits more.
    assert okonkwo - smith == pytest.approx(2.0)


def test_tf_adjustment_is_zero_below_the_exact_level_and_absent_without_tf() -> None:
    table, model = people_table(), hand_model()
    left = np.array([8, 8, 7], np.int32)
    gamma = np.array([2, 1, 0], dtype=np.int8)

    adjust = tf_adjustments(table, model, 0, left, gamma, 1e-6)

    assert adjust is not None
    assert adjust[0] == pytest.approx(math.log2(0.10 / (2 / 11)))
    assert adjust[1:].tolist() == [0.0, 0.0]
    assert tf_adjustments(table, model, 1, left, gamma, 1e-6) is None


def test_score_equals_prior_weight_plus_log_bayes_factors_plus_tf_by_hand() -> None:
    table, model = people_table(), hand_model()
    left = np.array([7, 8, 7, 10, 11, 0], np.int32)
    right = np.array([8, 9, 0, 7, 7, 1], np.int32)
    gammas = compare(table, model.comparisons, left, right)
    floor = 0.2  # above okonkwo's frequency (2/11): the floor replaces it

    weights = score(table, model, left, gammas, tf_floor=floor)

    last_freq = {"smith": 8 / 11, "okonkwo": max(2 / 11, floor), "smyth": max(1 / 11, floor)}
    for i, (a, b) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        expected = math.log2(0.1 / 0.9)
        for c, comparison in enumerate(model.comparisons):
            g = int(gammas[c, i])
            if g < 0:
                continue
            expected += math.log2(model.m[c][g] / model.u[c][g])
            top = comparison.level_count - 1
            if comparison.levels[0].tf and g == top:
                value = table.features(a)[comparison.column]
                assert value is not None
                expected += math.log2(model.u[c][top] / last_freq[value])
        assert weights[i] == pytest.approx(expected, abs=1e-12), (a, b)
    # The pairs span every branch: agreement with tf, fuzzy levels, disagreement and a null.
    assert {int(g) for g in gammas[0]} == {-1, 0, 1, 2}


def test_prior_weight_and_probability_are_log_odds_in_bits() -> None:
    model = hand_model()

    assert model.prior_weight == pytest.approx(math.log2(0.1 / 0.9))
    assert probability(0.0) == pytest.approx(0.5)
    assert probability(6.0) == pytest.approx(64 / 65)
    np.testing.assert_allclose(probability(np.array([-1.0, 1.0])), [1 / 3, 2 / 3])


def test_match_model_round_trips_through_its_dict_form() -> None:
    model = hand_model()

    restored = MatchModel.from_dict(SCORED, json.loads(json.dumps(model.to_dict())))

    assert restored.prior == model.prior
    for a, b in zip(restored.level_weights(), model.level_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (restored.em.iterations, restored.em.converged) == (7, True)
    levels = model.to_dict()["comparisons"][0]["levels"]
    assert [level["gamma"] for level in levels] == [2, 1, 0]
    assert levels[0]["label"] == "exact match (term-frequency adjusted)"
