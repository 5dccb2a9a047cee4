"""`cdp demo seed` runs the generated data through the real ingest path, on both back ends."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import func, select

from cdp.db.models import Interaction, QuarantinedRow, SourceRecord
from cdp.demo.seed import seed
from cdp.platform import Platform


def test_seed_ingests_every_generated_file_and_is_idempotent(platform: Platform, tmp_path: Path) -> None:
    result = seed(platform.db, platform.vault, work_dir=tmp_path, people=60, seed_value=5)
    generated = result.generated
    assert {s.kind for s in result.ingests} == {"records", "interactions"}
    assert len(result.ingests) == 2 * len(generated.sources)
    with platform.db.read() as session:
        records = session.execute(select(func.count()).select_from(SourceRecord)).scalar_one()
        interactions = session.execute(select(func.count()).select_from(Interaction)).scalar_one()
        quarantined = session.execute(select(func.count()).select_from(QuarantinedRow)).scalar_one()
    assert records == result.records
    rejected_records = sum(s.rejected for s in result.ingests if s.kind == "records")
    # every generated record row is either stored or quarantined (duplicate rows update, not insert)
    updated = sum(s.updated for s in result.ingests if s.kind == "records")
    assert records + rejected_records + updated == generated.records
    assert interactions == result.interactions
    assert quarantined == sum(result.quarantined.values())
    # the ground truth names every generated source record and stays out of the database
    with result.ground_truth.open(newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == generated.records

    again = seed(platform.db, platform.vault, work_dir=tmp_path, people=60, seed_value=5)
    assert again.records == 0 and again.interactions == 0
    assert again.unchanged == sum(s.inserted + s.updated for s in result.ingests)
