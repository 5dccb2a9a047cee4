"""Small-cohort suppression: no output may describe a group of fewer than k customers.

A count, sum or mean over fewer than ``k`` people would let a reader single someone out ("the one customer
in Ghent who complained twice"), so every aggregate an analysis returns goes through :class:`Suppressor`.
The complement is checked too: a segment holding all but two customers of the population reveals those two
as surely as a segment of two. Suppressed cells say so (``suppressed: true``) instead of vanishing, so a
reader knows a value exists but is withheld.

Known limit: thresholds alone do not stop differencing (comparing two overlapping segments that differ by
one person). Segments are defined by staff who are accountable in the audit log for every evaluation; the
DPO can see who evaluated which definitions (``analytics.run`` entries carry the segment and its version).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUPPRESSED = {"suppressed": True}


@dataclass(frozen=True)
class Suppressor:
    """Applies the threshold ``k`` within a population of ``population`` customers."""

    k: int
    population: int

    def hides(self, size: int) -> bool:
        """True when a group of ``size`` must not be shown (an empty group is shown: it singles nobody
        out, and "no customer matches" is what a definition author needs to see)."""
        if size == 0:
            return False
        return size < self.k or 0 < self.population - size < self.k

    def count(self, size: int) -> int | None:
        return None if self.hides(size) else int(size)

    def cell(self, size: int, **values: Any) -> dict[str, Any]:
        """A group's figures: ``{"customers": n, **values}`` or ``{"customers": None, "suppressed": True}``
        with every value withheld."""
        if self.hides(size):
            return {"customers": None, **{name: None for name in values}, **SUPPRESSED}
        return {"customers": int(size), **values, "suppressed": False}

    def population_count(self) -> int | None:
        """The population itself is shown unless it is smaller than k (a tiny deployment or filter)."""
        return None if 0 < self.population < self.k else self.population

    def describe(self) -> dict[str, Any]:
        return {
            "min_group_size": self.k,
            "rule": "groups of fewer than k customers, or whose complement "
            "within the population is smaller than k, are suppressed",
        }
