"""Pairwise precision, recall and F1 of a clustering against the truth, by counting, never by listing pairs.

A pair of records is *predicted* when both sit in one predicted cluster and *true* when both belong to one
true entity. With the contingency table of predicted clusters by true entities, every count is a sum of
``n * (n - 1) / 2`` terms, so scoring millions of records takes seconds and no memory per pair.

In ``link`` mode only cross-source pairs count (a pair inside one file is neither predicted nor true): a
group with ``n_s`` records from source ``s`` holds ``(N² - Σ n_s²) / 2`` cross-source pairs, which is
``n_a * n_b`` for two sources. ``dedupe`` and ``link_and_dedupe`` count every pair.

The records scored are the truth's; a record the clustering does not mention is a singleton, a predicted
record the truth does not know is ignored. With no predicted pairs precision is 0 (1 when there are no true
pairs either); with no true pairs recall is 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

RecordKey = tuple[str, str]
"""(source, record id)"""


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    predicted_pairs: int
    true_pairs: int
    largest_cluster: int
    """Records in the biggest predicted cluster (singletons count as 1)."""


class _Missing:
    """A singleton cluster for a record the clustering left out (each instance is its own cluster)."""

    __slots__ = ()


def _pairs(group_sizes: Counter[Hashable], per_source: Counter[tuple[Hashable, str]] | None) -> int:
    """Pairs within groups: all pairs, or with ``per_source`` (group, source) counts, cross-source ones."""
    if per_source is None:
        return sum(n * (n - 1) // 2 for n in group_sizes.values())
    squares: Counter[Hashable] = Counter()
    for (group, _source), n in per_source.items():
        squares[group] += n * n
    return sum((n * n - squares[group]) // 2 for group, n in group_sizes.items())


def pairwise_scores(
    predicted: Mapping[RecordKey, Hashable], truth: Mapping[RecordKey, Hashable], mode: str
) -> Scores:
    """Score ``predicted`` ((source, record id) → cluster id) against ``truth`` ((source, record id) →
    entity id). ``mode``: ``link`` counts cross-source pairs only, ``dedupe`` / ``link_and_dedupe`` all."""
    if mode not in ("link", "dedupe", "link_and_dedupe"):
        raise ValueError(f"unknown mode {mode!r}")
    cross_source = mode == "link"
    cells: Counter[Hashable] = Counter()
    clusters: Counter[Hashable] = Counter()
    entities: Counter[Hashable] = Counter()
    cells_src: Counter[tuple[Hashable, str]] | None = Counter() if cross_source else None
    clusters_src: Counter[tuple[Hashable, str]] | None = Counter() if cross_source else None
    entities_src: Counter[tuple[Hashable, str]] | None = Counter() if cross_source else None
    for key, entity in truth.items():
        cluster = predicted.get(key)
        if cluster is None:
            cluster = _Missing()
        cell = (cluster, entity)
        cells[cell] += 1
        clusters[cluster] += 1
        entities[entity] += 1
        if cells_src is not None and clusters_src is not None and entities_src is not None:
            source = key[0]
            cells_src[(cell, source)] += 1
            clusters_src[(cluster, source)] += 1
            entities_src[(entity, source)] += 1
    tp = _pairs(cells, cells_src)
    predicted_pairs = _pairs(clusters, clusters_src)
    true_pairs = _pairs(entities, entities_src)
    fp = predicted_pairs - tp
    fn = true_pairs - tp
    # Nothing predicted is perfect precision only when there was nothing to find.
    precision = tp / predicted_pairs if predicted_pairs else float(true_pairs == 0)
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    largest = max(clusters.values(), default=0)
    return Scores(precision, recall, f1, tp, fp, fn, predicted_pairs, true_pairs, largest)
