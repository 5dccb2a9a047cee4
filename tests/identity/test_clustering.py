"""Constrained greedy clustering: strongest evidence first, contradictions, identifier limits (with typo
tolerance and overrides), the per-source limit, manual must/cannot-link, identifier priority, and labels
that do not depend on the order the edges arrive in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from rapidfuzz.distance import DamerauLevenshtein

from cdp.identity.clustering import (
    ClusterResult,
    Constraints,
    IdentifierLimit,
    RefusedLink,
    cluster,
    component_labels,
)

THRESHOLD = 6.0
CONTRADICTION = -8.0
Edge = tuple[int, int, float]


def run(n: int, edges: Sequence[Edge], **constraints: Any) -> ClusterResult:
    left = np.array([e[0] for e in edges], dtype=np.int32)
    right = np.array([e[1] for e in edges], dtype=np.int32)
    weights = np.array([e[2] for e in edges], dtype=np.float64)
    constraints.setdefault("limits", {})
    return cluster(
        n,
        left,
        right,
        weights,
        threshold=THRESHOLD,
        contradiction_weight=CONTRADICTION,
        constraints=Constraints(**constraints),
    )


def partition(result: ClusterResult) -> set[frozenset[int]]:
    return {frozenset(c) for c in result.clusters()}


def identifier(values: Sequence[str | None], limit: int = 1, tolerance: int = 0) -> IdentifierLimit:
    """A limit on ``values`` where values within ``tolerance`` Damerau-Levenshtein edits count as one."""
    vocab: list[str] = []
    codes = []
    for value in values:
        if value is None:
            codes.append(-1)
        else:
            if value not in vocab:
                vocab.append(value)
            codes.append(vocab.index(value))
    compatible = (lambda a, b: DamerauLevenshtein.distance(a, b) <= tolerance) if tolerance else None
    return IdentifierLimit(np.array(codes, dtype=np.int32), vocab, limit, compatible)


def national_ids(values: Sequence[str | None], **kwargs: Any) -> Mapping[str, IdentifierLimit]:
    return {"national_id": identifier(values, **kwargs)}


def reasons(result: ClusterResult) -> list[tuple[int, int, str]]:
    return [(r.left, r.right, r.reason) for r in result.refused]


def test_without_constraints_links_above_threshold_chain_transitively() -> None:
    result = run(5, [(0, 1, 10.0), (1, 2, 7.0), (3, 4, 5.9)])

    assert partition(result) == {frozenset({0, 1, 2}), frozenset({3}), frozenset({4})}
    assert result.links == 2
    assert result.refused == []
    assert result.largest == 3


def test_links_are_made_strongest_first() -> None:
    # 0 and 2 carry different national ids, 1 has none: only one of the two links can be made.
    ids = national_ids(["111111111", None, "222222222"])
    weak_first = [(0, 1, 10.0), (1, 2, 20.0)]

    result = run(3, weak_first, limits=ids)

    assert partition(result) == {frozenset({1, 2}), frozenset({0})}
    assert reasons(result) == [(0, 1, "limit:national_id")]


def test_a_weak_bridge_does_not_chain_two_clusters_with_a_contradiction_across_them() -> None:
    family_a = [(0, 1, 30.0)]
    family_b = [(2, 3, 30.0)]
    bridge = [(1, 2, 7.0)]
    contradiction = [(0, 3, -12.0)]

    result = run(4, family_a + family_b + bridge + contradiction)

    assert partition(result) == {frozenset({0, 1}), frozenset({2, 3})}
    assert reasons(result) == [(1, 2, "contradiction")]
    # Without the contradiction, the same bridge chains the two families.
    assert partition(run(4, family_a + family_b + bridge)) == {frozenset({0, 1, 2, 3})}


def test_a_score_just_above_the_contradiction_weight_does_not_block() -> None:
    result = run(3, [(0, 1, 20.0), (1, 2, 20.0), (0, 2, CONTRADICTION + 0.01)])

    assert partition(result) == {frozenset({0, 1, 2})}


def test_a_score_at_the_contradiction_weight_blocks() -> None:
    result = run(3, [(0, 1, 20.0), (1, 2, 19.0), (0, 2, CONTRADICTION)])

    assert partition(result) == {frozenset({0, 1}), frozenset({2})}
    assert reasons(result) == [(1, 2, "contradiction")]


def test_identifier_limit_refuses_a_link_and_records_the_reason() -> None:
    result = run(2, [(0, 1, 25.0)], limits=national_ids(["111111111", "987654321"]))

    assert partition(result) == {frozenset({0}), frozenset({1})}
    assert result.refused == [RefusedLink(0, 1, 25.0, "limit:national_id")]
    assert not result.refused[0].made
    assert result.links == 0


def test_identifier_limit_counts_values_across_the_whole_cluster() -> None:
    ids = national_ids(["111111111", None, None, "222222222"], limit=1)

    result = run(4, [(0, 1, 30.0), (1, 2, 25.0), (2, 3, 20.0)], limits=ids)

    assert partition(result) == {frozenset({0, 1, 2}), frozenset({3})}
    assert reasons(result) == [(2, 3, "limit:national_id")]


def test_a_limit_of_two_allows_two_distinct_values() -> None:
    dates = {"date_of_birth": identifier(["1985-04-03", "1985-03-04", "1990-01-01"], limit=2)}

    result = run(3, [(0, 1, 30.0), (1, 2, 25.0)], limits=dates)

    assert partition(result) == {frozenset({0, 1}), frozenset({2})}
    assert reasons(result) == [(1, 2, "limit:date_of_birth")]


def test_a_typo_within_tolerance_does_not_count_as_a_second_value() -> None:
    transposed = ["123456789", "123465789"]

    tolerant = run(2, [(0, 1, 25.0)], limits=national_ids(transposed, tolerance=1))
    strict = run(2, [(0, 1, 25.0)], limits=national_ids(transposed, tolerance=0))

    assert partition(tolerant) == {frozenset({0, 1})}
    assert tolerant.refused == []
    assert reasons(strict) == [(0, 1, "limit:national_id")]


def test_a_value_beyond_the_typo_tolerance_is_a_second_value() -> None:
    result = run(2, [(0, 1, 25.0)], limits=national_ids(["123456789", "123465798"], tolerance=1))

    assert reasons(result) == [(0, 1, "limit:national_id")]


def test_identifier_limit_distinct_groups_typos_together() -> None:
    limit = identifier(["123456789", "123456780", "555555555"], tolerance=1)

    assert limit.distinct({0, 1}) == 1
    assert limit.distinct({0, 1, 2}) == 2
    assert limit.distinct(set()) == 0


def test_a_link_above_the_override_weight_is_made_and_recorded_as_an_override() -> None:
    ids = national_ids(["111111111", "987654321", "555555555"])

    result = run(3, [(0, 1, 45.0), (1, 2, 39.0)], limits=ids, limit_override_weight=40.0)

    assert partition(result) == {frozenset({0, 1}), frozenset({2})}
    assert result.refused == [
        RefusedLink(0, 1, 45.0, "override:national_id"),
        RefusedLink(1, 2, 39.0, "limit:national_id"),
    ]
    assert [r.made for r in result.refused] == [True, False]
    assert result.links == 1


def test_per_source_one_links_each_record_to_its_best_counterpart_only() -> None:
    sources = np.array([0, 0, 1, 1], dtype=np.int32)  # rows 0, 1 from crm; 2, 3 from shop
    edges = [(0, 2, 20.0), (0, 3, 15.0), (1, 3, 12.0), (1, 2, 10.0)]

    result = run(4, edges, per_source=1, sources=sources)

    assert partition(result) == {frozenset({0, 2}), frozenset({1, 3})}
    assert reasons(result) == [(0, 3, "limit:source"), (1, 2, "limit:source")]


def test_the_source_limit_is_not_overridden_by_a_strong_link() -> None:
    sources = np.array([0, 1, 1], dtype=np.int32)

    result = run(3, [(0, 1, 80.0), (0, 2, 70.0)], per_source=1, sources=sources, limit_override_weight=40.0)

    assert partition(result) == {frozenset({0, 1}), frozenset({2})}
    assert reasons(result) == [(0, 2, "limit:source")]


def test_must_link_merges_below_threshold_and_without_any_scored_pair() -> None:
    result = run(4, [(0, 1, 2.0)], must_link=[(0, 1), (2, 3)])

    assert partition(result) == {frozenset({0, 1}), frozenset({2, 3})}
    assert result.links == 2


def test_must_link_skips_the_automatic_protections() -> None:
    ids = national_ids(["111111111", "987654321"])

    result = run(2, [(0, 1, -20.0)], limits=ids, must_link=[(0, 1)])

    assert partition(result) == {frozenset({0, 1})}


def test_cannot_link_is_never_crossed_even_by_a_strong_chain() -> None:
    chain = [(0, 1, 60.0), (1, 2, 60.0), (2, 3, 60.0)]

    result = run(4, chain, cannot_link=[(0, 3)], limit_override_weight=40.0)

    assert not any({0, 3} <= c for c in partition(result))
    assert reasons(result) == [(2, 3, "manual_split")]
    assert partition(result) == {frozenset({0, 1, 2}), frozenset({3})}


def test_cannot_link_wins_over_must_link_of_the_same_pair() -> None:
    result = run(2, [(0, 1, 60.0)], must_link=[(0, 1)], cannot_link=[(1, 0)])

    assert partition(result) == {frozenset({0}), frozenset({1})}
    assert reasons(result) == [(0, 1, "manual_split")]


def test_a_chain_of_must_links_does_not_cross_a_cannot_link() -> None:
    result = run(3, [], must_link=[(0, 1), (1, 2)], cannot_link=[(0, 2)])

    assert not any({0, 2} <= c for c in partition(result))


def test_links_agreeing_on_a_priority_identifier_are_taken_before_stronger_links() -> None:
    # Rows 0 and 2 have different national ids; 1 has none. Edge 0-1 agrees on the email (a priority
    # identifier) but is weaker than edge 1-2, which does not: priority decides which link survives.
    ids = national_ids(["111111111", None, "222222222"])
    edges = [(0, 1, 10.0), (1, 2, 20.0)]
    agrees_on_email = np.array([True, False])

    by_weight = run(3, edges, limits=ids)
    by_priority = run(3, edges, limits=ids, priority=[agrees_on_email])

    assert partition(by_weight) == {frozenset({1, 2}), frozenset({0})}
    assert partition(by_priority) == {frozenset({0, 1}), frozenset({2})}
    assert reasons(by_priority) == [(1, 2, "limit:national_id")]


def test_a_higher_priority_identifier_goes_before_a_lower_one() -> None:
    ids = national_ids(["111111111", None, "222222222"])
    edges = [(0, 1, 10.0), (1, 2, 20.0)]
    national_id_agrees = np.array([True, False])
    email_agrees = np.array([False, True])

    result = run(3, edges, limits=ids, priority=[national_id_agrees, email_agrees])

    assert partition(result) == {frozenset({0, 1}), frozenset({2})}


def random_graph(seed: int, n: int = 60, m: int = 150) -> tuple[list[Edge], npt.NDArray[np.int32]]:
    rng = np.random.default_rng(seed)
    pairs = {tuple(sorted(map(int, rng.choice(n, 2, replace=False)))) for _ in range(m)}
    weights = rng.permutation(len(pairs)) * 0.37 - 15.0  # distinct, some below the contradiction weight
    edges = [(a, b, float(w)) for (a, b), w in zip(sorted(pairs), weights, strict=True)]
    sources = rng.integers(0, 3, n).astype(np.int32)
    return edges, sources


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_labels_are_dense_and_do_not_depend_on_edge_order(seed: int) -> None:
    edges, sources = random_graph(seed)
    rng = np.random.default_rng(seed + 100)
    ids = national_ids([f"{v:09d}" if v >= 0 else None for v in rng.integers(-3, 8, 60).tolist()])
    kwargs: dict[str, Any] = {"limits": ids, "per_source": 2, "sources": sources, "cannot_link": [(0, 1)]}

    first = run(60, edges, **kwargs)
    shuffled = [edges[i] for i in rng.permutation(len(edges))]
    swapped = [(b, a, w) for a, b, w in shuffled]
    second = run(60, shuffled, **kwargs)
    third = run(60, swapped, **kwargs)

    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.labels, third.labels)
    labels = first.labels.tolist()
    assert sorted(set(labels)) == list(range(max(labels) + 1))
    # Dense in order of first appearance: row 0 is cluster 0, and each new label is the next integer.
    seen: list[int] = []
    for label in labels:
        if label not in seen:
            assert label == len(seen)
            seen.append(label)
    assert first.labels.dtype == np.int32
    assert first.largest > 1


def test_no_rows_give_no_clusters() -> None:
    result = run(0, [])

    assert result.labels.tolist() == []
    assert result.clusters() == []
    assert result.largest == 0


def test_components_are_the_connected_parts_of_a_pair_list() -> None:
    labels = component_labels(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    parts: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        parts.setdefault(label, []).append(row)

    assert sorted(sorted(p) for p in parts.values()) == [[0, 1, 2], [3], [4, 5]]
