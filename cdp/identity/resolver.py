"""Batch resolution: block → compare → learn (or reuse) the model → score → cluster.

Every stage is a whole-table, vectorized operation over the dictionary-encoded
:class:`~cdp.identity.table.RecordTable`; there is no Python loop per pair except the greedy merge over
links above the threshold. The same stages are expressible as SQL over tables (:mod:`cdp.identity.sql`),
which is the path to a distributed engine past one machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cdp.identity.blocking import CandidatePairs, RuleReport, block
from cdp.identity.clustering import ClusterResult, Constraints, IdentifierLimit, cluster
from cdp.identity.comparisons import Gammas, compare, values_compatible
from cdp.identity.fellegi_sunter import MatchModel, decision_weights, score, train
from cdp.identity.settings import MatchSettings
from cdp.identity.table import Codes, RecordTable


@dataclass
class Resolution:
    table: RecordTable
    settings: MatchSettings
    pairs: CandidatePairs
    gammas: Gammas
    weights: npt.NDArray[np.float64]
    model: MatchModel
    clusters: ClusterResult
    blocking: list[RuleReport]
    timings: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """Counts and timings only — never a value from the data."""
        sizes = np.bincount(self.clusters.labels) if len(self.table) else np.empty(0, np.int64)
        threshold = self.settings.clustering.threshold
        band = self.settings.clustering.review_band
        reasons: dict[str, int] = {}
        for refused in self.clusters.refused:
            reasons[refused.reason] = reasons.get(refused.reason, 0) + 1
        return {
            "records": len(self.table),
            "candidate_pairs": len(self.pairs),
            "pairs_above_threshold": int((self.weights >= threshold).sum()),
            "pairs_for_review": int((np.abs(self.weights - threshold) < band).sum()),
            "entities": len(sizes),
            "largest_entity": int(sizes.max()) if len(sizes) else 0,
            "singletons": int((sizes == 1).sum()),
            "refused_links": reasons,
            "blocking": [r.to_dict() for r in self.blocking],
            "model": self.model.to_dict(),
            "timings_seconds": {k: round(v, 4) for k, v in self.timings.items()},
        }


def constraints_for(
    table: RecordTable,
    settings: MatchSettings,
    left: Codes,
    right: Codes,
    *,
    must_link: Sequence[tuple[int, int]] = (),
    cannot_link: Sequence[tuple[int, int]] = (),
    per_source: int | None = None,
) -> Constraints:
    protection = settings.protection
    limits = {}
    for name, limit in protection.limits.items():
        if name == "source":
            per_source = min(limit, per_source) if per_source else limit
            continue
        encoded = table.column(name)
        comparison = next((c for c in settings.comparisons if c.column == name and len(c.columns) == 1), None)
        limits[name] = IdentifierLimit(
            encoded.codes, encoded.vocab, limit, values_compatible(comparison) if comparison else None
        )
    priority = []
    for name in protection.priority:
        codes = table.column(name).codes
        priority.append((codes[left] >= 0) & (codes[left] == codes[right]))
    return Constraints(
        limits=limits,
        per_source=per_source,
        sources=table.sources.codes,
        priority=priority,
        must_link=must_link,
        cannot_link=cannot_link,
        limit_override_weight=protection.limit_override_weight,
        tie_break=key_ranks(table),
    )


def key_ranks(table: RecordTable) -> npt.NDArray[np.int64]:
    """Rank of each row's record key in sorted order: a tie-break that survives re-ordering of rows."""
    order = sorted(range(len(table)), key=table.keys.__getitem__)
    ranks = np.empty(len(table), dtype=np.int64)
    ranks[order] = np.arange(len(table), dtype=np.int64)
    return ranks


def decision_weights_for(
    settings: MatchSettings, weights: npt.NDArray[np.float64], gammas: Gammas
) -> npt.NDArray[np.float64]:
    protection = settings.protection
    return decision_weights(
        weights,
        gammas,
        settings.comparisons,
        protection.contradictions,
        contradiction_weight=settings.clustering.contradiction_weight,
        override=protection.contradiction_override_weight,
        overrides=protection.contradiction_overrides,
    )


def resolve(
    table: RecordTable,
    settings: MatchSettings,
    *,
    link_only: bool = False,
    model: MatchModel | None = None,
    must_link: Sequence[tuple[int, int]] = (),
    cannot_link: Sequence[tuple[int, int]] = (),
    per_source: int | None = None,
) -> Resolution:
    """Resolve every row of ``table``; learn the model unless one is given."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pairs, reports = block(
        table, settings.blocking, link_only=link_only, max_block_size=settings.max_block_size
    )
    timings["blocking"] = time.perf_counter() - started

    mark = time.perf_counter()
    gammas = compare(table, settings.comparisons, pairs.left, pairs.right)
    timings["comparison"] = time.perf_counter() - mark

    mark = time.perf_counter()
    if model is None:
        model = train(
            table,
            pairs,
            gammas,
            settings.comparisons,
            settings.blocking,
            settings.training,
            link_only=link_only,
        )
    timings["training"] = time.perf_counter() - mark

    mark = time.perf_counter()
    raw_weights = score(table, model, pairs.left, gammas, tf_floor=settings.training.tf_floor)
    weights = decision_weights_for(settings, raw_weights, gammas)
    timings["scoring"] = time.perf_counter() - mark

    mark = time.perf_counter()
    constraints = constraints_for(
        table,
        settings,
        pairs.left,
        pairs.right,
        must_link=must_link,
        cannot_link=cannot_link,
        per_source=per_source,
    )
    clusters = cluster(
        len(table),
        pairs.left,
        pairs.right,
        weights,
        threshold=settings.clustering.threshold,
        contradiction_weight=settings.clustering.contradiction_weight,
        constraints=constraints,
    )
    timings["clustering"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return Resolution(table, settings, pairs, gammas, weights, model, clusters, reports, timings)
