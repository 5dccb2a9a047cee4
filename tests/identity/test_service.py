"""Identity resolution over the vault: batch, incremental on ingest, manual decisions, explanations."""

from __future__ import annotations

import csv
import random
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from cdp.db.models import BlindIndexEntry, Entity, EntityMember, MatchEdge, Source, SourceRecord
from cdp.demo.seed import seed
from cdp.identity.service import IdentityError, IdentityService
from cdp.platform import Platform


def _truth(platform: Platform, ground_truth: Path) -> dict[uuid.UUID, str]:
    """record id -> true person id, via the natural key (the test knows the source record ids)."""
    from cdp.sources.records import RecordRepository

    people: dict[tuple[str, str], str] = {}
    with ground_truth.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            people[(row["source"], row["source_record_id"])] = row["person_id"]
    truth: dict[uuid.UUID, str] = {}
    with platform.db.read() as session:
        repo = RecordRepository(session, platform.vault)
        sources = dict(session.execute(select(Source.id, Source.name)).all())
        ids = list(session.execute(select(SourceRecord.id)).scalars())
        for record in repo.get_many(ids):
            truth[record.id] = people[(sources[record.source_id], record.data.source_record_id)]
    return truth


def _pairwise_f1(partition: list[frozenset[uuid.UUID]], truth: dict[uuid.UUID, str]) -> tuple[float, float]:
    def pairs(groups: list[set[uuid.UUID]] | list[frozenset[uuid.UUID]]) -> set[frozenset[uuid.UUID]]:
        out: set[frozenset[uuid.UUID]] = set()
        for group in groups:
            members = sorted(group, key=str)
            out |= {frozenset((a, b)) for i, a in enumerate(members) for b in members[i + 1 :]}
        return out

    by_person: dict[str, set[uuid.UUID]] = defaultdict(set)
    for record_id, person in truth.items():
        by_person[person].add(record_id)
    predicted, actual = pairs(partition), pairs(list(by_person.values()))
    true_positive = len(predicted & actual)
    precision = true_positive / len(predicted) if predicted else 1.0
    recall = true_positive / len(actual) if actual else 1.0
    return precision, recall


@pytest.fixture
def seeded(platform: Platform, tmp_path: Path) -> tuple[Platform, Path]:
    result = seed(platform.db, platform.vault, work_dir=tmp_path, people=150, seed_value=11, resolve=False)
    return platform, result.ground_truth


def test_ingest_without_a_model_gives_every_record_its_own_entity(seeded: tuple[Platform, Path]) -> None:
    platform, _ = seeded
    with platform.db.read() as session:
        records = session.execute(select(func.count()).select_from(SourceRecord)).scalar_one()
        members = session.execute(select(func.count()).select_from(EntityMember)).scalar_one()
        entities = session.execute(select(func.count()).select_from(Entity)).scalar_one()
        block_keys = session.execute(
            select(func.count()).select_from(BlindIndexEntry).where(BlindIndexEntry.kind.like("blk%"))
        ).scalar_one()
    assert records == members == entities
    assert block_keys > records  # several blocking rules per record, as keyed tokens


def test_batch_resolution_links_the_same_people_across_sources(seeded: tuple[Platform, Path]) -> None:
    platform, ground_truth = seeded
    service = IdentityService(platform.db, platform.vault)
    report = service.resolve_all()
    assert report["model"]["em"]["converged"]
    partition = service.partition()
    precision, recall = _pairwise_f1(partition, _truth(platform, ground_truth))
    assert precision >= 0.9 and recall >= 0.8, (precision, recall)
    assert report["entities"] == len(partition) < report["records"]
    # Batch again with the stored model: same entities, same entity ids.
    before = {record: service.entity_of(record) for group in partition for record in group}
    service.resolve_all()
    assert service.partition() == partition
    assert all(service.entity_of(record) == entity for record, entity in before.items())


def test_incremental_resolution_gives_the_batch_result(seeded: tuple[Platform, Path]) -> None:
    platform, _ = seeded
    service = IdentityService(platform.db, platform.vault)
    service.resolve_all()
    batch = service.partition()
    # Forget every resolution result (keep the trained model), then resolve record by record, in a
    # random order, in small transactions — as ingestion does with a model in place.
    with platform.db.transaction() as session:
        session.execute(delete(MatchEdge))
        session.execute(delete(EntityMember))
        session.execute(delete(Entity))
        session.execute(delete(BlindIndexEntry).where(BlindIndexEntry.kind.like("blk%")))
        record_ids = list(session.execute(select(SourceRecord.id)).scalars())
    random.Random(7).shuffle(record_ids)
    for start in range(0, len(record_ids), 37):
        with platform.db.transaction() as session:
            service.resolve_records(session, record_ids[start : start + 37])
    assert service.partition() == batch


def test_manual_merge_and_split_survive_batch_runs(seeded: tuple[Platform, Path]) -> None:
    platform, _ = seeded
    service = IdentityService(platform.db, platform.vault)
    service.resolve_all()
    partition = service.partition()
    singles = [next(iter(g)) for g in partition if len(g) == 1][:2]
    merged_entity = service.merge(
        singles[0], singles[1], actor="steward:ana", reason="same person, phoned in"
    )
    assert set(service.members(merged_entity)) == set(singles)

    group = next(g for g in partition if len(g) >= 2)
    moving = sorted(group, key=str)[:1]
    entities = service.split(service.entity_of(moving[0]), moving, actor="steward:ana", reason="twins")
    assert len(entities) >= 2
    assert service.entity_of(moving[0]) != service.entity_of(sorted(group, key=str)[1])

    service.resolve_all(retrain=True)
    assert service.entity_of(singles[0]) == service.entity_of(singles[1])
    assert service.entity_of(moving[0]) != service.entity_of(sorted(group, key=str)[1])
    kinds = sorted(d.kind for d in service.decisions())
    assert kinds.count("merge") == 1 and "split" in kinds
    assert all(d.actor == "steward:ana" for d in service.decisions())


def test_an_entity_left_empty_is_deleted_and_a_full_run_sweeps_any_other_orphan(
    seeded: tuple[Platform, Path],
) -> None:
    """An incremental change deletes the entities that lost their last member (it looks at those only:
    a sweep of every entity per ingest chunk grew quadratic); a full run removes any orphan."""
    from cdp.db.types import utcnow

    platform, _ = seeded
    service = IdentityService(platform.db, platform.vault)
    service.resolve_all()
    singles = [next(iter(g)) for g in service.partition() if len(g) == 1][:2]
    before = {service.entity_of(record) for record in singles}
    stray = uuid.uuid4()
    with platform.db.transaction() as session:
        session.add(Entity(id=stray, created_at=utcnow(), updated_at=utcnow()))

    kept = service.merge(singles[0], singles[1], actor="steward:ana", reason="same person")

    def exists(entity_id: uuid.UUID) -> bool:
        with platform.db.read() as session:
            return session.get(Entity, entity_id) is not None

    assert kept in before and len(before) == 2
    assert not exists(next(iter(before - {kept}))), "the entity that lost its only member is gone"
    assert exists(stray), "an incremental change leaves entities it did not touch alone"
    service.resolve_all()
    assert not exists(stray)


def test_merge_refuses_nonsense(seeded: tuple[Platform, Path]) -> None:
    platform, _ = seeded
    service = IdentityService(platform.db, platform.vault)
    service.resolve_all()
    some = next(iter(service.partition()[0]))
    with pytest.raises(IdentityError):
        service.merge(some, some, actor="x", reason="")
    with pytest.raises(IdentityError):
        service.merge(some, uuid.uuid4(), actor="x", reason="")


def test_pair_explanation_sums_to_the_stored_weight(seeded: tuple[Platform, Path]) -> None:
    platform, _ = seeded
    service = IdentityService(platform.db, platform.vault)
    service.resolve_all()
    with platform.db.read() as session:
        edge = session.execute(select(MatchEdge).order_by(MatchEdge.weight.desc()).limit(1)).scalar_one()
    explanation = service.explain(edge.record_a, edge.record_b)
    assert explanation.total == pytest.approx(edge.weight, abs=1e-9)
    assert explanation.decision == "match"
    entity = service.explain_entity(service.entity_of(edge.record_a))
    assert str(edge.record_b) in entity["records"] and entity["links"]


def test_golden_profile_has_provenance_and_review_queue_has_no_values(seeded: tuple[Platform, Path]) -> None:
    platform, _ = seeded
    service = IdentityService(platform.db, platform.vault)
    service.resolve_all()
    big = max(service.partition(), key=len)
    profile = service.golden(service.entity_of(next(iter(big))))
    assert profile.attributes
    for value in profile.attributes.values():
        assert uuid.UUID(value.record_id) in big
    for item in service.review_queue(limit=20):
        assert set(item.to_dict()) == {"record_a", "record_b", "match_weight", "linked", "refused"}


def test_batch_resolution_of_an_empty_vault_is_a_no_op(platform: Platform) -> None:
    service = IdentityService(platform.db, platform.vault)
    report = service.resolve_all()
    assert report["records"] == 0 and report["entities"] == 0
    assert service.partition() == []
