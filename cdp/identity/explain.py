"""Explanations: why two records were (not) linked, as a waterfall of per-attribute evidence in bits.

A match weight is ``prior + Σ per-comparison weights (+ term-frequency adjustments)``; an explanation
lists exactly those terms, so they always sum to the total the clusterer used — a person reading it sees
that "same email: +14.2 bits" and "different date of birth: -6.1 bits" decided the link. Terms carry
level labels and attribute names, never the compared values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cdp.identity.comparisons import compare
from cdp.identity.fellegi_sunter import MatchModel, probability, tf_adjustments
from cdp.identity.settings import MatchSettings
from cdp.identity.table import RecordTable

PRIOR_LABEL = "prior odds that two records match"


@dataclass(frozen=True, slots=True)
class Term:
    name: str
    level: str
    weight: float
    """Bits this term adds (negative: evidence against)."""
    m: float | None = None
    u: float | None = None
    tf_adjustment: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparison": self.name,
            "level": self.level,
            "bits": round(self.weight, 4),
            "m": None if self.m is None else round(self.m, 6),
            "u": None if self.u is None else round(self.u, 8),
            "tf_adjustment_bits": round(self.tf_adjustment, 4),
        }


@dataclass(frozen=True, slots=True)
class PairExplanation:
    terms: tuple[Term, ...]
    """The prior first, then one term per comparison, in settings order."""
    threshold: float

    @property
    def total(self) -> float:
        return sum(term.weight for term in self.terms)

    @property
    def probability(self) -> float:
        return float(probability(self.total))

    @property
    def decision(self) -> str:
        return "match" if self.total >= self.threshold else "non-match"

    def to_dict(self) -> dict[str, Any]:
        return {
            "match_weight": round(self.total, 4),
            "match_probability": round(self.probability, 6),
            "threshold": self.threshold,
            "decision": self.decision,
            "terms": [term.to_dict() for term in self.terms],
        }

    def waterfall(self) -> str:
        """A plain-text waterfall: each term, its bits and the running total."""
        lines = []
        running = 0.0
        for term in self.terms:
            running += term.weight
            tf = f" (tf {term.tf_adjustment:+.2f})" if term.tf_adjustment else ""
            lines.append(f"{term.name:<16} {term.level:<42} {term.weight:+8.2f}{tf:<12} = {running:+8.2f}")
        lines.append(f"{'total':<16} {self.decision:<42} {self.total:+8.2f}  (p = {self.probability:.6f})")
        return "\n".join(lines)


def explain_pair(
    table: RecordTable, model: MatchModel, settings: MatchSettings, left: int, right: int
) -> PairExplanation:
    """Explain the match weight of rows ``left`` and ``right`` of ``table`` under ``model``."""
    a = np.array([left], dtype=np.int32)
    b = np.array([right], dtype=np.int32)
    gammas = compare(table, model.comparisons, a, b)
    terms = [Term("prior", PRIOR_LABEL, model.prior_weight)]
    level_weights = model.level_weights()
    for c, comparison in enumerate(model.comparisons):
        g = int(gammas[c, 0])
        if g < 0:
            terms.append(Term(comparison.name, comparison.level_label(g), 0.0))
            continue
        adjust = tf_adjustments(table, model, c, a, gammas[c], settings.training.tf_floor)
        tf = float(adjust[0]) if adjust is not None else 0.0
        terms.append(
            Term(
                comparison.name,
                comparison.level_label(g),
                float(level_weights[c][g]) + tf,
                float(model.m[c][g]),
                float(model.u[c][g]),
                tf,
            )
        )
    return PairExplanation(tuple(terms), settings.clustering.threshold)
