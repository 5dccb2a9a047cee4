"""`cdp demo seed`: generate the realistic multi-source demo data set and ingest it like any other data.

The generator (``cdp.demo.generator``) writes one file per source and kind plus the ground truth of who is
who; seeding registers the demo sources' mappings and runs every file through the normal ingest path, so
the demo exercises exactly what production does (normalization, quarantine, encryption). The ground truth
stays in its own file beside the generated sources and never enters the database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdp.db import Database
from cdp.demo.generator import GenerationSummary, generate
from cdp.identity.service import IdentityService
from cdp.sources.ingest import IngestService, IngestSummary
from cdp.vault import Vault

Progress = Callable[[str, int, int], None]
"""(stage, done, total)"""


@dataclass
class SeedResult:
    generated: GenerationSummary
    ingests: list[IngestSummary] = field(default_factory=list)
    resolution: dict[str, Any] | None = None
    """The batch identity-resolution report (counts only), when the seed ran it."""
    segments: list[str] = field(default_factory=list)
    """Example analytics segments created by this seed (none when they existed already)."""

    @property
    def records(self) -> int:
        return sum(s.inserted + s.updated for s in self.ingests if s.kind == "records")

    @property
    def unchanged(self) -> int:
        return sum(s.unchanged for s in self.ingests)

    @property
    def interactions(self) -> int:
        return sum(s.inserted + s.updated for s in self.ingests if s.kind == "interactions")

    @property
    def quarantined(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for summary in self.ingests:
            total.update(summary.reasons)
        return total

    @property
    def ground_truth(self) -> Path:
        return self.generated.ground_truth_path


def seed(
    db: Database,
    vault: Vault,
    *,
    work_dir: Path,
    people: int = 1000,
    seed_value: int = 42,
    progress: Progress | None = None,
    resolve: bool = True,
) -> SeedResult:
    """Generate ``people`` fictitious persons (deterministic for a seed) into ``work_dir`` and ingest
    them. Re-running with the same arguments changes nothing (ingestion is idempotent)."""
    out_dir = work_dir / f"people-{people}-seed-{seed_value}"
    report = progress or (lambda stage, done, total: None)
    generated = generate(
        out_dir, people=people, seed=seed_value, progress=lambda n: report("generate", n, people)
    )
    service = IngestService(db, vault)
    for source in generated.sources.values():
        service.register_source(
            source.mapping_path.read_text(encoding="utf-8"), origin=str(source.mapping_path)
        )
    result = SeedResult(generated)
    for kind in ("records", "interactions"):
        for source in generated.sources.values():
            path = source.records_path if kind == "records" else source.interactions_path
            total = source.records if kind == "records" else source.interactions
            done = 0

            def advance(rows: int, stage: str = f"{source.name} {kind}", total: int = total) -> None:
                nonlocal done
                done += rows
                report(stage, done, total)

            result.ingests.append(service.ingest_file(source.name, path, kind=kind, progress=advance))
    if resolve:
        # Ingestion resolves incrementally once a model exists; the first seed trains it in batch.
        report("resolve", 0, 1)
        result.resolution = IdentityService(db, vault).resolve_all()
        report("resolve", 1, 1)
    result.segments = seed_segments(db, vault)
    return result


EXAMPLE_SEGMENTS: tuple[dict[str, Any], ...] = (
    {
        "name": "billing-complainers",
        "description": "Billing customers who complained in the last 90 days and accept marketing email",
        "schedule": "0 4 * * *",
        "match": {
            "all": [
                {"department": "billing"},
                {"interactions": {"kind": ["complaint"], "within_days": 90}, "min": 1},
                {"consent": "marketing_email"},
            ]
        },
    },
    {
        "name": "lapsing-valuable",
        "description": "Good customers who stopped buying: RFM at risk or cannot lose",
        "schedule": "0 4 * * 1",
        "match": {"rfm_segment": ["at_risk", "cannot_lose"]},
    },
    {
        "name": "support-heavy",
        "description": "Three or more support contacts in the last year",
        "match": {"interactions": {"department": ["support"], "within_days": 365}, "min": 3},
    },
)
"""Segments a demo starts with, so the analytics have something to show (definitions only)."""


def seed_segments(db: Database, vault: Vault) -> list[str]:
    """Create the example segments that do not exist yet; returns the names created."""
    from cdp.analytics.service import AnalyticsService

    service = AnalyticsService(db, vault)
    existing = {view.name for view in service.segments()}
    created = []
    for definition in EXAMPLE_SEGMENTS:
        if definition["name"] not in existing:
            service.create_segment(definition, actor="system:demo")
            created.append(str(definition["name"]))
    return created
