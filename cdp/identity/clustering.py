"""Clustering scored pairs into entities, without letting chains glue strangers together.

Transitive closure over pairwise links collapses at scale: one household pair and one namesake pair are
enough to chain two families into one "customer". Clustering here is greedy, strongest evidence first,
and every merge of two clusters is checked:

* **contradictions** — if any two records across the clusters were scored at or below
  ``contradiction_weight`` (or a person split them by hand), the clusters stay apart;
* **identifier limits** (merge protection as data) — at most N distinct values of an identifier per
  entity (one national id, five emails…); ``source = 1`` means "each source is already deduplicated";
* **identifier priority** — links made through a higher-priority identifier (national id, then email…)
  are taken first, so when two links together would break a limit, the better-evidenced one wins.

Refused links are returned with their reason, for the review queue and the audit trail. Manual merges
(must-link) go first and skip the automatic protections; manual splits (cannot-link) are never crossed.

The result on each connected component of the link graph depends only on that component's edges and the
processing order, which is what lets incremental resolution re-cluster one component and get exactly the
batch result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cdp.identity.table import Codes

Weights = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RefusedLink:
    left: int
    right: int
    weight: float
    reason: str
    """``contradiction``, ``manual_split``, ``limit:<identifier>`` — or, for a link that was made anyway
    because it was strong enough to override an identifier limit, ``override:<identifier>``."""

    @property
    def made(self) -> bool:
        return self.reason.startswith("override:")


@dataclass(frozen=True, slots=True)
class ClusterResult:
    labels: npt.NDArray[np.int32]
    """Cluster label per row, dense from 0."""
    refused: list[RefusedLink]
    links: int
    """Links that joined two clusters."""

    def clusters(self) -> list[list[int]]:
        order = np.argsort(self.labels, kind="stable")
        bounds = np.flatnonzero(np.diff(self.labels[order])) + 1
        return [part.tolist() for part in np.split(order, bounds)] if len(order) else []

    @property
    def largest(self) -> int:
        return int(np.bincount(self.labels).max()) if len(self.labels) else 0


@dataclass(frozen=True, slots=True)
class IdentifierLimit:
    """At most ``limit`` distinct values of one identifier per entity.

    Two values count as one when ``compatible`` says so — the identifier's own comparison places them
    above its 'different' level (a typo, a day/month swap): a mistyped national id must not stop two
    records from linking, while a genuinely different one must.
    """

    codes: Codes
    vocab: Sequence[str]
    limit: int
    compatible: Callable[[str, str], bool] | None = None

    def distinct(self, values: set[int]) -> int:
        if self.compatible is None or len(values) <= 1:
            return len(values)
        groups: list[str] = []
        for code in sorted(values):
            text = self.vocab[code]
            if not any(self.compatible(text, g) for g in groups):
                groups.append(text)
        return len(groups)


@dataclass(frozen=True, slots=True)
class Constraints:
    """What the clusterer must respect beyond the scores."""

    limits: Mapping[str, IdentifierLimit]
    """Identifier name -> its limit."""
    per_source: int | None = None
    """At most this many records of one source per entity (1 = each source is already deduplicated)."""
    sources: Codes | None = None
    priority: Sequence[npt.NDArray[np.bool_]] = ()
    """Per priority identifier (highest first): which edges agree exactly on it."""
    must_link: Sequence[tuple[int, int]] = ()
    cannot_link: Sequence[tuple[int, int]] = ()
    limit_override_weight: float | None = None
    """Links at least this strong may exceed identifier limits (never a manual split or the source limit)."""
    tie_break: npt.NDArray[np.int64] | None = None
    """A stable rank per row (e.g. of its record id) to order equal-weight links deterministically."""


def _edge_order(
    weights: Weights,
    priority: Sequence[npt.NDArray[np.bool_]],
    left: Codes,
    right: Codes,
    tie_break: npt.NDArray[np.int64] | None,
) -> npt.NDArray[np.intp]:
    rank = np.full(len(weights), len(priority), dtype=np.int16)
    for level in range(len(priority) - 1, -1, -1):
        rank[priority[level]] = level
    if tie_break is None:
        return np.lexsort((-weights, rank))
    # Priority rank, then weight descending, then the rows' stable ranks: the order (and so the result)
    # does not depend on the order the pairs arrived in — batch and incremental agree.
    a, b = tie_break[left], tie_break[right]
    return np.lexsort((np.maximum(a, b), np.minimum(a, b), -weights, rank))


def cluster(
    n: int,
    left: Codes,
    right: Codes,
    weights: Weights,
    *,
    threshold: float,
    contradiction_weight: float,
    constraints: Constraints,
) -> ClusterResult:
    """Greedy constrained clustering of ``n`` rows given scored pairs."""
    if n == 0:
        return ClusterResult(np.empty(0, dtype=np.int32), [], 0)
    parent = list(range(n))
    size = [1] * n
    members: dict[int, list[int]] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    candidates = np.flatnonzero(weights >= threshold)
    # Only rows that can merge at all need their contradictions: the rest stay singletons anyway.
    linkable = np.zeros(n, dtype=bool)
    linkable[left[candidates]] = True
    linkable[right[candidates]] = True
    for a, b in constraints.must_link:
        linkable[a] = linkable[b] = True
    # Components of links and manual merges: a contradiction between two components can never matter.
    must = np.asarray(constraints.must_link, dtype=np.int64).reshape(-1, 2)
    component = component_labels(
        n,
        np.concatenate([left[candidates].astype(np.int64), must[:, 0]]),
        np.concatenate([right[candidates].astype(np.int64), must[:, 1]]),
    )
    apart: dict[int, list[tuple[int, str]]] = {}
    negative = np.flatnonzero(
        (weights <= contradiction_weight)
        & linkable[left]
        & linkable[right]
        & (component[left] == component[right])
    )
    for a, b in zip(left[negative].tolist(), right[negative].tolist(), strict=True):
        apart.setdefault(a, []).append((b, "contradiction"))
        apart.setdefault(b, []).append((a, "contradiction"))
    for a, b in constraints.cannot_link:
        apart.setdefault(a, []).append((b, "manual_split"))
        apart.setdefault(b, []).append((a, "manual_split"))
    has_apart = [False] * n
    for x in apart:
        has_apart[x] = True
    apart_members: dict[int, int] = {}
    """Per root of a multi-row cluster: how many members have contradictions (skip the scan at zero)."""

    limits = list(constraints.limits.items())
    limit_codes = [limit.codes.tolist() for _, limit in limits]
    values: list[dict[int, set[int]]] = [{} for _ in limits]
    source_codes = constraints.sources.tolist() if constraints.sources is not None else None
    per_source = constraints.per_source
    source_counts: dict[int, dict[int, int]] = {}
    override = constraints.limit_override_weight

    def values_of(index: int, root: int) -> set[int]:
        known = values[index].get(root)
        if known is None:
            code = limit_codes[index][root]
            return {code} if code >= 0 else set()
        return known

    def sources_of(root: int) -> dict[int, int]:
        assert source_codes is not None
        return source_counts.get(root) or {source_codes[root]: 1}

    def blocked(ra: int, rb: int, weight: float) -> str | None:
        small, big = (ra, rb) if size[ra] <= size[rb] else (rb, ra)
        if (apart_members.get(small, 0) if size[small] > 1 else has_apart[small]) and (
            apart_members.get(big, 0) if size[big] > 1 else has_apart[big]
        ):
            for x in members.get(small, [small]):
                if has_apart[x]:
                    for y, why in apart[x]:
                        if find(y) == big:
                            return why
        if per_source is not None:
            mine, theirs = sources_of(ra), sources_of(rb)
            if any(count + theirs.get(source, 0) > per_source for source, count in mine.items()):
                return "limit:source"
        for index, (name, limit) in enumerate(limits):
            if size[ra] == 1 and size[rb] == 1:
                ca, cb = limit_codes[index][ra], limit_codes[index][rb]
                if ca < 0 or cb < 0 or ca == cb:
                    continue
                merged = {ca, cb}
            else:
                va, vb = values_of(index, ra), values_of(index, rb)
                if not va or not vb or va == vb:
                    continue
                merged = va | vb
            if len(merged) > limit.limit and limit.distinct(merged) > limit.limit:
                return f"override:{name}" if override is not None and weight >= override else f"limit:{name}"
        return None

    def merge(ra: int, rb: int) -> None:
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        for index in range(len(limits)):
            if size[rb] == 1 and limit_codes[index][rb] < 0:
                continue
            values[index][ra] = values_of(index, ra) | values_of(index, rb)
            values[index].pop(rb, None)
        if per_source is not None:
            counts = dict(sources_of(ra))
            for source, count in sources_of(rb).items():
                counts[source] = counts.get(source, 0) + count
            source_counts[ra] = counts
            source_counts.pop(rb, None)
        apart_a = apart_members.pop(ra, 0) if size[ra] > 1 else int(has_apart[ra])
        apart_b = apart_members.pop(rb, 0) if size[rb] > 1 else int(has_apart[rb])
        apart_members[ra] = apart_a + apart_b
        members.setdefault(ra, [ra]).extend(members.pop(rb, [rb]))
        size[ra] += size[rb]
        parent[rb] = ra

    def split_by_hand(ra: int, rb: int) -> bool:
        small, big = (ra, rb) if size[ra] <= size[rb] else (rb, ra)
        for x in members.get(small, [small]):
            if has_apart[x] and any(why == "manual_split" and find(y) == big for y, why in apart[x]):
                return True
        return False

    links = 0
    refused: list[RefusedLink] = []
    # Components of the link graph that no protection can touch merge whole, whatever the order: settle
    # them with array operations and keep the greedy loop for the components where order matters.
    delicate = _delicate_components(component, left, right, weights, contradiction_weight, constraints)
    settled = ~delicate[component] & (component != np.arange(n))
    for row, root in zip(np.flatnonzero(settled).tolist(), component[settled].tolist(), strict=True):
        parent[row] = root
        links += 1
    candidates = candidates[delicate[component[left[candidates]]]]
    for a, b in constraints.must_link:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        # A chain of manual merges must not cross a manual split either: the split is the later word.
        if split_by_hand(ra, rb):
            refused.append(RefusedLink(a, b, math.inf, "manual_split"))
            continue
        merge(ra, rb)
        links += 1

    priority = [mask[candidates] for mask in constraints.priority]
    order = candidates[
        _edge_order(weights[candidates], priority, left[candidates], right[candidates], constraints.tie_break)
    ]
    for a, b, w in zip(left[order].tolist(), right[order].tolist(), weights[order].tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        reason = blocked(ra, rb, w)
        if reason is not None:
            refused.append(RefusedLink(a, b, w, reason))
            if not reason.startswith("override:"):
                continue
        merge(ra, rb)
        links += 1

    seen: set[tuple[int, int, str]] = set()
    unique_refused = []
    for item in refused:
        key = (min(item.left, item.right), max(item.left, item.right), item.reason)
        if key not in seen:
            seen.add(key)
            unique_refused.append(item)
    refused = unique_refused
    roots = np.asarray(parent, dtype=np.int64)
    while True:
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            break
        roots = jumped
    _, first_seen, labels = np.unique(roots, return_index=True, return_inverse=True)
    # Label clusters in order of their first row, so labels do not depend on union-find internals.
    relabel = np.empty(len(first_seen), dtype=np.int32)
    relabel[np.argsort(first_seen, kind="stable")] = np.arange(len(first_seen), dtype=np.int32)
    return ClusterResult(relabel[labels].astype(np.int32), refused, links)


def component_labels(
    n: int, left: npt.NDArray[np.integer[Any]], right: npt.NDArray[np.integer[Any]]
) -> npt.NDArray[np.int64]:
    """Connected components as labels (the smallest row of each), by vectorized min-label propagation
    with pointer jumping — a few passes over the edge arrays, no Python loop per edge."""
    labels = np.arange(n, dtype=np.int64)
    if len(left) == 0:
        return labels
    a, b = left.astype(np.int64), right.astype(np.int64)
    while True:
        low = np.minimum(labels[a], labels[b])
        updated = labels.copy()
        np.minimum.at(updated, a, low)
        np.minimum.at(updated, b, low)
        while True:
            jumped = updated[updated]
            if np.array_equal(jumped, updated):
                break
            updated = jumped
        if np.array_equal(updated, labels):
            return labels
        labels = updated


def _delicate_components(
    component: npt.NDArray[np.int64],
    left: Codes,
    right: Codes,
    weights: Weights,
    contradiction_weight: float,
    constraints: Constraints,
) -> npt.NDArray[np.bool_]:
    """Per component label: could any protection refuse a link inside it? (Conservative: when in doubt,
    yes — the greedy loop then decides exactly.)"""
    n = len(component)
    delicate = np.zeros(n, dtype=bool)
    negative = weights <= contradiction_weight
    same = component[left[negative]] == component[right[negative]]
    delicate[component[left[negative]][same]] = True
    for pairs in (constraints.must_link, constraints.cannot_link):
        for a, b in pairs:
            delicate[component[a]] = delicate[component[b]] = True
    sizes = np.bincount(component, minlength=n)
    for limit in constraints.limits.values():
        rows = np.flatnonzero(limit.codes >= 0)
        if len(rows) == 0:
            continue
        distinct = np.unique(component[rows] * (int(limit.codes.max()) + 2) + limit.codes[rows])
        per_component = np.bincount(distinct // (int(limit.codes.max()) + 2), minlength=n)
        delicate |= per_component > limit.limit
    if constraints.per_source is not None and constraints.sources is not None and len(constraints.sources):
        width = int(constraints.sources.max()) + 1
        keys, counts = np.unique(component * width + constraints.sources, return_counts=True)
        crowded = keys[counts > constraints.per_source] // width
        delicate[crowded] = True
    delicate &= sizes > 1
    return delicate
