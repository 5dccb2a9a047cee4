"""Pairwise scores of bench.resolution_metrics on small clusterings counted by hand."""

from __future__ import annotations

import random
from itertools import combinations

import pytest

from bench.resolution_metrics import Scores, pairwise_scores

# Dedupe: one source, entities X (3 records), Y (2), Z (1): 3 + 1 = 4 true pairs.
TRUTH = {
    ("s", "a1"): "X",
    ("s", "a2"): "X",
    ("s", "a3"): "X",
    ("s", "b1"): "Y",
    ("s", "b2"): "Y",
    ("s", "c1"): "Z",
}

# Link: sources A and B. e1 = A1 + B1 + B2 (2 cross pairs; B1-B2 is inside one file and does not count),
# e2 = A2 + B3 (1), e3 = A3 alone: 3 true cross-source pairs.
LINK_TRUTH = {
    ("A", "1"): "e1",
    ("B", "1"): "e1",
    ("B", "2"): "e1",
    ("A", "2"): "e2",
    ("B", "3"): "e2",
    ("A", "3"): "e3",
}


def test_dedupe_perfect_clustering_with_other_labels() -> None:
    predicted = {key: {"X": 10, "Y": 20, "Z": 30}[entity] for key, entity in TRUTH.items()}
    assert pairwise_scores(predicted, TRUTH, "dedupe") == Scores(1.0, 1.0, 1.0, 4, 0, 0, 4, 4, 3)


def test_dedupe_fully_wrong_clustering() -> None:
    predicted = {
        ("s", "a1"): 1,
        ("s", "b1"): 1,
        ("s", "a2"): 2,
        ("s", "b2"): 2,
        ("s", "a3"): 3,
        ("s", "c1"): 3,
    }
    assert pairwise_scores(predicted, TRUTH, "dedupe") == Scores(0.0, 0.0, 0.0, 0, 3, 4, 3, 4, 2)


def test_dedupe_partial_clustering() -> None:
    # {a1, a2} is right (1 tp); {a3, b1, b2} holds 3 pairs, of which b1-b2 is right; c1 alone.
    predicted = {
        ("s", "a1"): "p",
        ("s", "a2"): "p",
        ("s", "a3"): "q",
        ("s", "b1"): "q",
        ("s", "b2"): "q",
        ("s", "c1"): "r",
    }
    assert pairwise_scores(predicted, TRUTH, "dedupe") == Scores(0.5, 0.5, 0.5, 2, 2, 2, 4, 4, 3)


def test_records_missing_from_the_clustering_are_singletons() -> None:
    predicted = {("s", "a1"): 1, ("s", "a2"): 1, ("other", "unknown"): 1}
    scores = pairwise_scores(predicted, TRUTH, "dedupe")
    assert (scores.tp, scores.fp, scores.fn, scores.predicted_pairs, scores.largest_cluster) == (
        1,
        0,
        3,
        1,
        2,
    )
    assert scores.precision == 1.0
    assert scores.recall == pytest.approx(0.25)
    assert scores.f1 == pytest.approx(0.4)


def test_nothing_predicted() -> None:
    scores = pairwise_scores({}, TRUTH, "dedupe")
    assert (scores.precision, scores.recall, scores.f1, scores.fn, scores.largest_cluster) == (0, 0, 0, 4, 1)
    singletons = {("s", "x"): "1", ("s", "y"): "2"}
    assert pairwise_scores({}, singletons, "dedupe") == Scores(1.0, 1.0, 1.0, 0, 0, 0, 0, 0, 1)


def test_link_perfect_counts_cross_source_pairs_only() -> None:
    assert pairwise_scores(LINK_TRUTH, LINK_TRUTH, "link") == Scores(1.0, 1.0, 1.0, 3, 0, 0, 3, 3, 3)
    # The same clustering scored as a deduplication also counts B1-B2.
    assert pairwise_scores(LINK_TRUTH, LINK_TRUTH, "dedupe") == Scores(1.0, 1.0, 1.0, 4, 0, 0, 4, 4, 3)


def test_link_fully_wrong_clustering() -> None:
    predicted = {("A", "1"): "p", ("B", "3"): "p", ("A", "2"): "q", ("B", "1"): "q"}
    assert pairwise_scores(predicted, LINK_TRUTH, "link") == Scores(0.0, 0.0, 0.0, 0, 2, 3, 2, 3, 2)


def test_link_everything_in_one_cluster() -> None:
    # 3 x 3 = 9 cross pairs predicted, all 3 true ones among them.
    predicted = dict.fromkeys(LINK_TRUTH, "all")
    scores = pairwise_scores(predicted, LINK_TRUTH, "link")
    assert (scores.tp, scores.fp, scores.fn, scores.predicted_pairs, scores.largest_cluster) == (
        3,
        6,
        0,
        9,
        6,
    )
    assert scores.precision == pytest.approx(1 / 3)
    assert scores.recall == 1.0
    assert scores.f1 == pytest.approx(0.5)


def test_link_cluster_within_one_source_predicts_no_pair() -> None:
    predicted = {("B", "1"): "p", ("B", "2"): "p"}
    scores = pairwise_scores(predicted, LINK_TRUTH, "link")
    assert (scores.predicted_pairs, scores.tp, scores.fn) == (0, 0, 3)
    assert pairwise_scores(predicted, LINK_TRUTH, "dedupe").tp == 1


def test_link_three_sources() -> None:
    truth = {("A", "1"): "e", ("B", "1"): "e", ("C", "1"): "e", ("C", "2"): "e"}
    # Cross-source pairs of {A:1, B:1, C:2}: (16 - 1 - 1 - 4) / 2 = 5.
    assert pairwise_scores(truth, truth, "link").true_pairs == 5
    assert pairwise_scores(truth, truth, "link_and_dedupe").true_pairs == 6


@pytest.mark.parametrize("mode", ["link", "dedupe", "link_and_dedupe"])
def test_counting_matches_pair_enumeration(mode: str) -> None:
    rng = random.Random(7)
    for _ in range(30):
        keys = [(rng.choice("AB"), str(i)) for i in range(rng.randint(0, 25))]
        truth = {key: rng.randint(0, 6) for key in keys}
        predicted = {key: rng.randint(0, 6) for key in keys if rng.random() < 0.9}
        expected_true = expected_predicted = expected_tp = 0
        for a, b in combinations(keys, 2):
            if mode == "link" and a[0] == b[0]:
                continue
            same_truth = truth[a] == truth[b]
            same_predicted = a in predicted and b in predicted and predicted[a] == predicted[b]
            expected_true += same_truth
            expected_predicted += same_predicted
            expected_tp += same_truth and same_predicted
        scores = pairwise_scores(predicted, truth, mode)
        assert (scores.true_pairs, scores.predicted_pairs, scores.tp) == (
            expected_true,
            expected_predicted,
            expected_tp,
        )


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        pairwise_scores({}, {}, "merge")
