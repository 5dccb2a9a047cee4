"""Fellegi-Sunter scoring with parameters learned from the data itself (no labels).

For each comparison level, ``m`` = P(level | same person) and ``u`` = P(level | different people); a pair's
match weight is ``log2(prior odds) + Σ log2(m/u)`` — a sum of per-attribute Bayes factors in bits, which
is what makes every decision explainable as a waterfall (:mod:`cdp.identity.explain`).

Estimation, as in Splink but on compressed patterns:

* ``u`` from pairs of records drawn at random (almost all non-matches); the exact-agreement level gets the
  closed form ``Σ_v p(v)²`` from the value frequencies, which a sample cannot estimate for identifiers that
  almost never collide.
* ``m`` and the prior by expectation-maximisation over the candidate pairs, with ``u`` fixed. Candidate
  pairs are grouped into distinct comparison patterns first, so each EM iteration is a few thousand
  rows whatever the data size. A blocking rule forces agreement on its own columns, so a comparison's
  ``m`` is learned only from pairs that satisfy some rule *not* using that comparison's column (falling
  back to all pairs when every rule uses it).
* Term-frequency adjustment on exact levels marked ``tf``: agreeing on "Smith" is worth less than
  agreeing on "Okonkwo" — the exact level's ``u`` is replaced by the value's own frequency.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cdp.identity.blocking import CandidatePairs
from cdp.identity.comparisons import Gammas, compare
from cdp.identity.settings import DERIVED_COLUMNS, PAIR_DERIVED_COLUMNS, BlockingRule, Comparison, Training
from cdp.identity.table import Codes, RecordTable

Floats = npt.NDArray[np.float64]


@dataclass
class EMResult:
    iterations: int
    converged: bool
    max_change: float


class FrozenFrequencies:
    """Value frequencies captured when a model was trained, looked up by a key of the value.

    Incremental resolution scores one new record at a time; if term frequencies were recomputed from
    whatever is in the store at that moment, the same pair would score differently depending on when it
    was seen, and incremental would drift from batch. Freezing them with the model makes a pair's weight
    a function of the pair and the model only. In the vault the key is a blind-index token (keyed HMAC),
    so the stored table says "this surname is common" without naming it.
    """

    def __init__(
        self,
        per_column: Mapping[str, Mapping[Any, float]],
        defaults: Mapping[str, float],
        key: Callable[[str, str], Any],
    ) -> None:
        self.per_column = {c: dict(v) for c, v in per_column.items()}
        self.defaults = dict(defaults)
        self.key = key

    @classmethod
    def capture(
        cls, table: RecordTable, columns: Sequence[str], key: Callable[[str, str], Any]
    ) -> FrozenFrequencies:
        """Frequencies of values seen at least twice; a value seen once (or never) gets 1/N."""
        per_column: dict[str, dict[Any, float]] = {}
        defaults: dict[str, float] = {}
        for name in columns:
            column = table.column(name)
            total = max(column.non_null, 1)
            per_column[name] = {
                key(name, value): float(count) / total
                for value, count in zip(column.vocab, column.counts.tolist(), strict=True)
                if count >= 2
            }
            defaults[name] = 1.0 / total
        return cls(per_column, defaults, key)

    def lookup(self, column: str, vocab: Sequence[str]) -> Floats:
        known = self.per_column.get(column, {})
        default = self.defaults.get(column, 1e-6)
        return np.fromiter(
            (known.get(self.key(column, v), default) for v in vocab), dtype=np.float64, count=len(vocab)
        )


def tf_columns(comparisons: Sequence[Comparison]) -> list[str]:
    """Columns whose value frequencies scoring needs (those of exact levels marked ``tf``)."""
    names = [c.level_column(lv) for c in comparisons for lv in c.levels if lv.kind == "exact" and lv.tf]
    return list(dict.fromkeys(names))


@dataclass
class MatchModel:
    """Learned parameters: ``m[c][g]`` and ``u[c][g]`` for comparison ``c`` at level gamma ``g``."""

    comparisons: tuple[Comparison, ...]
    m: list[Floats]
    u: list[Floats]
    prior: float
    """Probability that a candidate pair is a match (EM's lambda over the candidate pairs)."""
    em: EMResult = field(default_factory=lambda: EMResult(0, False, math.inf))
    frequencies: FrozenFrequencies | None = None
    """Frozen term frequencies; ``None`` means "use the frequencies of the table being scored"."""
    match_rate: float | None = None
    """P(two records drawn at random are the same person) = expected matches / all comparable pairs.

    The prior of every match weight. Unlike the candidate-pair share it does not move when a blocking
    rule adds or removes non-matching pairs, so a threshold in bits keeps its meaning across settings."""

    @property
    def prior_weight(self) -> float:
        rate = self.match_rate if self.match_rate is not None else self.prior
        return math.log2(rate / (1.0 - rate))

    def level_weights(self) -> list[Floats]:
        """``log2(m/u)`` per comparison and level."""
        return [np.log2(m / u) for m, u in zip(self.m, self.u, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "match_rate": self.match_rate,
            "comparisons": [
                {
                    "name": c.name,
                    "levels": [
                        {"gamma": g, "label": c.level_label(g), "m": float(m[g]), "u": float(u[g])}
                        for g in range(c.level_count - 1, -1, -1)
                    ],
                }
                for c, m, u in zip(self.comparisons, self.m, self.u, strict=True)
            ],
            "em": {"iterations": self.em.iterations, "converged": self.em.converged},
        }

    @classmethod
    def from_dict(cls, comparisons: Sequence[Comparison], data: Mapping[str, Any]) -> MatchModel:
        by_name = {item["name"]: item for item in data["comparisons"]}
        m: list[Floats] = []
        u: list[Floats] = []
        for comparison in comparisons:
            levels = {level["gamma"]: level for level in by_name[comparison.name]["levels"]}
            m.append(np.array([levels[g]["m"] for g in range(comparison.level_count)], dtype=np.float64))
            u.append(np.array([levels[g]["u"] for g in range(comparison.level_count)], dtype=np.float64))
        em = data.get("em", {})
        return cls(
            tuple(comparisons),
            m,
            u,
            float(data["prior"]),
            EMResult(int(em.get("iterations", 0)), bool(em.get("converged", False)), 0.0),
            match_rate=None if data.get("match_rate") is None else float(data["match_rate"]),
        )


# ------------------------------------------------------------------------------------------------------
# u: random sampling + closed-form exact agreement
# ------------------------------------------------------------------------------------------------------


def random_pairs(table: RecordTable, count: int, *, link_only: bool, seed: int) -> tuple[Codes, Codes]:
    """Up to ``count`` distinct-row random pairs (across sources when ``link_only``)."""
    n = len(table)
    rng = np.random.default_rng(seed)
    if n < 2:
        return np.empty(0, np.int32), np.empty(0, np.int32)
    left = rng.integers(0, n, size=count, dtype=np.int64)
    right = rng.integers(0, n, size=count, dtype=np.int64)
    keep = left != right
    if link_only:
        sources = table.sources.codes
        keep &= sources[left] != sources[right]
    return left[keep].astype(np.int32), right[keep].astype(np.int32)


def _exact_agreement_probability(table: RecordTable, name: str, link_only: bool) -> float:
    """P(two random non-null records agree exactly) = Σ_v p(v)² — or Σ_v p_A(v)·p_B(v) across sources."""
    column = table.column(name)
    if not link_only or len(table.sources.vocab) < 2:
        p = column.frequencies()
        return float((p * p).sum())
    # Across sources: agreement of a random cross-source pair, averaged over source pairs by weight.
    codes = column.codes
    total = 0.0
    weight = 0.0
    per_source = []
    for s in range(len(table.sources.vocab)):
        mine = codes[(table.sources.codes == s) & (codes >= 0)]
        per_source.append(np.bincount(mine, minlength=len(column.vocab)).astype(np.float64))
    for i in range(len(per_source)):
        for j in range(i + 1, len(per_source)):
            ni, nj = per_source[i].sum(), per_source[j].sum()
            if ni and nj:
                total += float((per_source[i] * per_source[j]).sum())
                weight += ni * nj
    return total / weight if weight else 0.0


def estimate_u(
    table: RecordTable, comparisons: Sequence[Comparison], training: Training, *, link_only: bool
) -> list[Floats]:
    left, right = random_pairs(table, training.u_sample_pairs, link_only=link_only, seed=training.seed)
    gammas = compare(table, comparisons, left, right)
    u: list[Floats] = []
    for c, comparison in enumerate(comparisons):
        counts = np.bincount(gammas[c][gammas[c] >= 0], minlength=comparison.level_count).astype(np.float64)
        total = counts.sum()
        # Unseen levels get at most "half an observation": they are rare among non-matches, not impossible.
        probs = (
            (counts + 0.5) / (total + 0.5 * comparison.level_count)
            if total
            else np.full(comparison.level_count, 1.0 / comparison.level_count)
        )
        top = comparison.level_count - 1
        first = comparison.levels[0]
        if first.kind == "exact" and comparison.level_column(first) == comparison.column:
            exact = _exact_agreement_probability(table, comparison.column, link_only)
            exact = min(max(exact, 1e-12), 0.999)
            rest = probs[:top].sum()
            probs[:top] = probs[:top] * (1.0 - exact) / rest if rest else (1.0 - exact) / top
            probs[top] = exact
        u.append(probs)
    return u


# ------------------------------------------------------------------------------------------------------
# m and prior: EM over compressed patterns
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Patterns:
    """Distinct (gamma vector, satisfied-rules mask) combinations among candidate pairs, with counts."""

    gammas: npt.NDArray[np.int8]  # (comparisons, patterns)
    rules: npt.NDArray[np.int64]
    counts: Floats
    inverse: npt.NDArray[np.intp]


def compress(gammas: Gammas, satisfied: npt.NDArray[np.int64], comparisons: Sequence[Comparison]) -> Patterns:
    _, key = np.unique(satisfied, return_inverse=True)
    key = key.astype(np.int64)
    span = int(key.max()) + 1 if len(key) else 1
    for c, comparison in enumerate(comparisons):
        radix = comparison.level_count + 1
        if span * radix >= 1 << 62:
            # Re-densify only when the mixed-radix key would overflow int64 (many comparisons).
            _, key = np.unique(key, return_inverse=True)
            key = key.astype(np.int64)
            span = int(key.max()) + 1
        key = key * radix + (gammas[c].astype(np.int64) + 1)
        span *= radix
    _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    return Patterns(gammas[:, first], satisfied[first], counts.astype(np.float64), inverse)


def _rule_columns(rule: BlockingRule) -> set[str]:
    return _base_columns(rule.columns)


def _log_terms(params: Sequence[Floats], gammas: npt.NDArray[np.int8]) -> Floats:
    total = np.zeros(gammas.shape[1], dtype=np.float64)
    for c, table in enumerate(params):
        g = gammas[c]
        known = g >= 0
        total[known] += np.log(table[g[known]])
    return total


def expectation_maximisation(
    patterns: Patterns,
    comparisons: Sequence[Comparison],
    rules: Sequence[BlockingRule],
    u: Sequence[Floats],
    training: Training,
    *,
    initial_m: Sequence[Floats] | None = None,
    initial_prior: float = 0.05,
) -> tuple[list[Floats], float, EMResult]:
    """EM for ``m`` and the prior with ``u`` fixed; returns ``(m, prior, result)``."""
    if initial_m is None:
        m = []
        for comparison in comparisons:
            # Start believing matches mostly agree: geometric mass towards the top levels.
            raw = np.array([0.5 ** (comparison.level_count - 1 - g) for g in range(comparison.level_count)])
            raw[0] = 0.05
            m.append(raw / raw.sum())
    else:
        m = [np.array(x, dtype=np.float64) for x in initial_m]
    prior = initial_prior
    # Which patterns may inform each comparison's m: those from rules that do not force its column.
    informative: list[npt.NDArray[np.bool_]] = []
    for comparison in comparisons:
        free = sum(1 << i for i, rule in enumerate(rules) if comparison.column not in _rule_columns(rule))
        mask = (patterns.rules & free) != 0 if free else None
        if mask is None or patterns.counts[mask].sum() == 0:
            mask = np.ones(len(patterns.counts), dtype=bool)
        informative.append(mask)
    if patterns.counts.sum() == 0:
        # No candidate pairs: nothing to learn from; keep the starting point (and say it converged).
        return m, prior, EMResult(0, True, 0.0)
    log_u = _log_terms(u, patterns.gammas)
    result = EMResult(0, False, math.inf)
    for iteration in range(1, training.max_iterations + 1):
        log_m = _log_terms(m, patterns.gammas)
        a = math.log(prior) + log_m
        b = math.log1p(-prior) + log_u
        top = np.maximum(a, b)
        posterior = np.exp(a - top) / (np.exp(a - top) + np.exp(b - top))
        weighted = posterior * patterns.counts
        new_prior = float(weighted.sum() / patterns.counts.sum())
        new_m = []
        for c, comparison in enumerate(comparisons):
            g = patterns.gammas[c]
            use = informative[c] & (g >= 0)
            counts = np.bincount(g[use], weights=weighted[use], minlength=comparison.level_count)
            total = counts.sum()
            probs = counts / total if total > 0 else m[c]
            probs = np.maximum(probs, training.m_floor)
            new_m.append(probs / probs.sum())
        change = max(float(np.abs(a_ - b_).max()) for a_, b_ in zip(new_m, m, strict=True))
        change = max(change, abs(new_prior - prior))
        m, prior = new_m, min(max(new_prior, 1e-9), 1 - 1e-9)
        result = EMResult(iteration, change < training.tolerance, change)
        if result.converged:
            break
    return m, prior, result


def _base_columns(names: Sequence[str]) -> set[str]:
    """The base match columns behind column names (derived and composite ones included)."""
    bases: set[str] = set()
    for name in names:
        for part in name.split("+"):
            bases.update(PAIR_DERIVED_COLUMNS.get(part, (DERIVED_COLUMNS.get(part, part),)))
    return bases


def _agreeing(table: RecordTable, pairs: CandidatePairs, columns: Sequence[str]) -> npt.NDArray[np.bool_]:
    mask = np.ones(len(pairs), dtype=bool)
    for name in columns:
        codes = table.column(name).codes
        left = codes[pairs.left]
        mask &= (left >= 0) & (left == codes[pairs.right])
    return mask


def estimate_prior(
    patterns: Patterns, m: Sequence[Floats], u: Sequence[Floats], training: Training, initial: float = 0.05
) -> float:
    """EM for the prior alone, with m and u fixed: the expected share of matches among the pairs."""
    if patterns.counts.sum() == 0:
        return initial
    a = _log_terms(m, patterns.gammas)
    b = _log_terms(u, patterns.gammas)
    prior = initial
    for _ in range(training.max_iterations * 4):
        x = math.log(prior) + a
        y = math.log1p(-prior) + b
        top = np.maximum(x, y)
        posterior = np.exp(x - top) / (np.exp(x - top) + np.exp(y - top))
        new = float((posterior * patterns.counts).sum() / patterns.counts.sum())
        new = min(max(new, 1e-9), 1 - 1e-9)
        if abs(new - prior) < training.tolerance * 0.1:
            return new
        prior = new
    return prior


def train(
    table: RecordTable,
    pairs: CandidatePairs,
    gammas: Gammas,
    comparisons: Sequence[Comparison],
    rules: Sequence[BlockingRule],
    training: Training,
    *,
    link_only: bool,
) -> MatchModel:
    """u by sampling; m by EM sessions (Splink-style); the prior by EM over all candidate pairs.

    Each session takes the candidate pairs that agree on its columns and learns m only for comparisons
    that do not read those columns (agreement on them is forced there, so it says nothing). Sessions on
    strongly identifying keys (name, date of birth, email) keep EM from mistaking a household — same
    address, same surname, same landline — for a person. A comparison's m is the average over the
    sessions that learned it, weighted by each session's expected number of matches.
    """
    u = estimate_u(table, comparisons, training, link_only=link_only)
    sessions = training.sessions or tuple(rule.columns for rule in rules)
    sums = [np.zeros(c.level_count) for c in comparisons]
    weights = np.zeros(len(comparisons))
    iterations = 0
    converged = True
    for columns in sessions:
        mask = _agreeing(table, pairs, columns)
        if mask.sum() < 10:
            continue
        blocked = _base_columns(columns)
        free = [i for i, c in enumerate(comparisons) if not (_base_columns(c.columns) & blocked)]
        if not free:
            continue
        chosen = [comparisons[i] for i in free]
        patterns = compress(gammas[free][:, mask], np.zeros(int(mask.sum()), dtype=np.int64), chosen)
        m_s, prior_s, result = expectation_maximisation(
            patterns, chosen, [], [u[i] for i in free], training, initial_prior=0.5
        )
        iterations += result.iterations
        converged &= result.converged
        expected = prior_s * float(mask.sum())
        for k, i in enumerate(free):
            sums[i] += m_s[k] * expected
            weights[i] += expected
    m: list[Floats] = []
    fallback: list[int] = []
    for i, comparison in enumerate(comparisons):
        if weights[i] > 0:
            m.append(sums[i] / weights[i])
        else:
            fallback.append(i)
            m.append(np.full(comparison.level_count, 1.0 / comparison.level_count))
    if fallback:
        # Comparisons no session could learn (every session reads their column): one EM over all pairs.
        patterns = compress(gammas, pairs.satisfied, comparisons)
        m_all, _, result = expectation_maximisation(patterns, comparisons, rules, u, training)
        for i in fallback:
            m[i] = m_all[i]
        iterations += result.iterations
        converged &= result.converged
    prior = estimate_prior(
        compress(gammas, np.zeros(len(pairs), dtype=np.int64), comparisons), m, u, training
    )
    comparable = comparable_pairs(table, link_only=link_only)
    expected = max(prior * len(pairs), 1.0)
    rate = min(expected / comparable, 0.5) if comparable else prior
    return MatchModel(tuple(comparisons), m, u, prior, EMResult(iterations, converged, 0.0), match_rate=rate)


def comparable_pairs(table: RecordTable, *, link_only: bool) -> float:
    """How many pairs could be compared at all: n(n-1)/2, or only those across sources when linking."""
    n = float(len(table))
    if not link_only:
        return n * (n - 1) / 2
    sizes = np.bincount(table.sources.codes).astype(np.float64)
    return float((sizes.sum() ** 2 - (sizes**2).sum()) / 2)


# ------------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------------


def tf_adjustments(
    table: RecordTable, model: MatchModel, c: int, left: Codes, gamma: npt.NDArray[np.int8], floor: float
) -> Floats | None:
    """Extra bits for exact agreement on value v at a ``tf`` level:
    ``log2(u_level / max(freq(v), floor))`` — None when the comparison has no such level."""
    comparison = model.comparisons[c]
    adjust: Floats | None = None
    top = comparison.level_count - 1
    frozen = model.frequencies
    for i, level in enumerate(comparison.levels):
        if level.kind != "exact" or not level.tf:
            continue
        name = comparison.level_column(level)
        column = table.column(name)
        if frozen is None:
            raw = column.frequencies()
        else:
            raw = column.vocab_array(f"tf:{id(frozen)}", functools.partial(frozen.lookup, name))
        freqs = np.maximum(raw, floor)
        if adjust is None:
            adjust = np.zeros(len(left), dtype=np.float64)
        g = top - i
        at_level = gamma == g
        adjust[at_level] = np.log2(model.u[c][g] / freqs[column.codes[left[at_level]]])
    return adjust


def score(table: RecordTable, model: MatchModel, left: Codes, gammas: Gammas, *, tf_floor: float) -> Floats:
    """Match weight in bits (prior included) for each pair."""
    weights = np.full(gammas.shape[1], model.prior_weight, dtype=np.float64)
    for c, level_weights in enumerate(model.level_weights()):
        g = gammas[c]
        known = g >= 0
        weights[known] += level_weights[g[known]]
        adjust = tf_adjustments(table, model, c, left, g, tf_floor)
        if adjust is not None:
            weights += adjust
    return weights


def probability(weight: Floats | float) -> Floats | float:
    """Match probability of a weight in bits."""
    return (
        1.0 / (1.0 + np.exp2(-np.asarray(weight)))
        if isinstance(weight, np.ndarray)
        else 1.0 / (1.0 + 2.0 ** (-weight))
    )


def contradicted(
    comparisons: Sequence[Comparison], gammas: Gammas, rules: Sequence[Mapping[str, frozenset[int]]]
) -> npt.NDArray[np.bool_]:
    """Pairs meeting every condition of some contradiction rule."""
    index = {c.name: i for i, c in enumerate(comparisons)}
    out = np.zeros(gammas.shape[1], dtype=bool)
    for rule in rules:
        hit = np.ones(gammas.shape[1], dtype=bool)
        for name, states in rule.items():
            hit &= np.isin(gammas[index[name]], np.array(sorted(states), dtype=np.int8))
        out |= hit
    return out


def decision_weights(
    weights: Floats,
    gammas: Gammas,
    comparisons: Sequence[Comparison],
    rules: Sequence[Mapping[str, frozenset[int]]],
    *,
    contradiction_weight: float,
    override: float | None,
    overrides: Sequence[float | None] = (),
) -> Floats:
    """Weights the clusterer acts on: a contradicted pair counts as a contradiction (capped at
    ``contradiction_weight``) unless its evidence reaches the rule's override weight."""
    if not rules:
        return weights
    capped = np.zeros(len(weights), dtype=bool)
    for index, rule in enumerate(rules):
        hit = contradicted(comparisons, gammas, [rule])
        limit = overrides[index] if index < len(overrides) and overrides[index] is not None else override
        if limit is not None:
            hit &= weights < limit
        capped |= hit
    out = weights.copy()
    out[capped] = np.minimum(out[capped], contradiction_weight)
    return out
