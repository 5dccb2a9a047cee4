"""Identity resolution over the vault: batch runs, incremental resolution on ingest, manual review.

Storage (no plaintext anywhere): ``entity``/``entity_member`` (who is who), ``match_edge`` (scores of
pairs that matter: links, the review band, contradictions), ``match_decision`` (a person's merges and
splits), ``match_model`` + ``match_term_frequency`` (the active model; frequencies keyed by blind-index
token) and blocking keys as blind-index entries of kind ``blk_<hash of rule name>``.

Batch (:meth:`IdentityService.resolve_all`) decrypts the match features of every record into memory,
runs :func:`cdp.identity.resolver.resolve` and rewrites edges and memberships. Incremental
(:meth:`IdentityService.resolve_records`, called by ingestion in the same transaction as the write) finds
candidates through the blocking-key blind index, scores them with the stored model, and re-clusters only
the connected component the records belong to. Clustering is deterministic per component (ties broken by
record id), and the model — term frequencies included — is frozen, so both paths give the same entities
on the same data.

Changes are audited in the transaction that makes them: a manual merge or split records the records and the
entities before and after (never the free-text reason, which may name the customer: only that one was
given), a batch run records its counts. Incremental resolution is part of an ingest chunk and is covered
by that chunk's entry.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session

from cdp.audit import AuditEvent, record
from cdp.consent.catalog import ConsentCatalog
from cdp.consent.ledger import RecordedEvent, derive, event_of
from cdp.db import Database
from cdp.db.models import (
    CANONICAL_FIELDS,
    BlindIndexEntry,
    ConsentEvent,
    Entity,
    EntityMember,
    MatchDecision,
    MatchEdge,
    MatchModelRecord,
    MatchTermFrequency,
    Source,
    SourceRecord,
    Subject,
    table_of,
)
from cdp.db.types import utcnow
from cdp.errors import CdpError
from cdp.identity.clustering import cluster
from cdp.identity.comparisons import compare
from cdp.identity.explain import PairExplanation, explain_pair
from cdp.identity.features import features_from_normalized
from cdp.identity.fellegi_sunter import FrozenFrequencies, MatchModel, score, tf_columns
from cdp.identity.golden import GoldenProfile, MemberRecord, SurvivorshipRules, golden_profile
from cdp.identity.resolver import constraints_for, decision_weights_for, resolve
from cdp.identity.settings import BlockingRule, MatchSettings
from cdp.identity.table import RecordTable
from cdp.vault import Vault
from cdp.vault.subject_keys import WrappedKey

RECORD_TABLE = "source_record"
_BLOCK_PREFIX = "blk_"
_IS_BLOCK_KEY = BlindIndexEntry.kind.like("blk\\_%", escape="\\")
_IN_CHUNK = 500


class IdentityError(CdpError):
    """A merge, split or lookup that cannot be done as asked."""


class EntityNotFound(IdentityError):
    pass


class RecordNotFound(EntityNotFound):
    """A record id that does not exist (or was erased)."""


class NoMatchModel(IdentityError):
    """Nothing is trained yet: `cdp resolve` (a batch run) trains the first model."""


def block_kind(rule: BlockingRule) -> str:
    """Blind-index kind of a blocking rule's keys (fits the 32-character kind column)."""
    return _BLOCK_PREFIX + hashlib.sha256(rule.name.encode("utf-8")).hexdigest()[:24]


def _ordered(a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    return (a, b) if str(a) < str(b) else (b, a)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class ReviewItem:
    record_a: uuid.UUID
    record_b: uuid.UUID
    weight: float
    linked: bool
    """Whether the two records are in one entity now."""
    refused: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_a": str(self.record_a),
            "record_b": str(self.record_b),
            "match_weight": round(self.weight, 4),
            "linked": self.linked,
            "refused": self.refused,
        }


@dataclass(frozen=True)
class Decision:
    record_a: uuid.UUID
    record_b: uuid.UUID
    kind: str
    actor: str
    reason: str
    created_at: datetime


class IdentityService:
    def __init__(self, db: Database, vault: Vault, settings: MatchSettings | None = None) -> None:
        self.db = db
        self.vault = vault
        self.settings = settings or MatchSettings.default()
        self._model_cache: tuple[uuid.UUID, MatchModel] | None = None

    # --------------------------------------------------------------------------------------------------
    # Loading match features (decrypting normalized forms in memory only)
    # --------------------------------------------------------------------------------------------------

    def _load(self, session: Session, record_ids: Sequence[uuid.UUID] | None = None) -> RecordTable:
        records = table_of(SourceRecord)
        query = (
            select(
                records.c.id,
                Source.name,
                records.c.subject_id,
                records.c.enc_normalized,
                Subject.key_version,
                Subject.kek_version,
                Subject.wrapped_key,
            )
            .join(Source, Source.id == records.c.source_id)
            .join(Subject, Subject.id == records.c.subject_id)
        )
        rows: list[Any] = []
        if record_ids is None:
            rows = list(session.execute(query.order_by(records.c.id)))
        else:
            for chunk in _chunks(list(record_ids)):
                rows += session.execute(query.where(records.c.id.in_(chunk)))
            rows.sort(key=lambda row: str(row.id))

        def features() -> Iterable[tuple[str, str, dict[str, str | None]]]:
            for row in rows:
                normalized: Any = None
                if row.enc_normalized is not None:
                    cipher = self.vault.keys.open(
                        row.subject_id, WrappedKey(row.key_version, row.kek_version, row.wrapped_key)
                    )
                    normalized = cipher.decrypt_many(
                        RECORD_TABLE, str(row.id), {"normalized": row.enc_normalized}
                    )["normalized"]
                yield (
                    row.name,
                    str(row.id),
                    features_from_normalized(normalized if isinstance(normalized, dict) else {}),
                )

        return RecordTable.build(features(), self.settings.protection)

    # --------------------------------------------------------------------------------------------------
    # Model
    # --------------------------------------------------------------------------------------------------

    def _tf_key(self, column: str, value: str) -> bytes:
        kind = "tf_" + hashlib.sha256(column.encode("utf-8")).hexdigest()[:24]
        return self.vault.blind.token(kind, value)

    def active_model(self, session: Session) -> MatchModel | None:
        row = session.execute(
            select(MatchModelRecord.id, MatchModelRecord.parameters).where(MatchModelRecord.active.is_(True))
        ).first()
        if row is None:
            return None
        if self._model_cache is not None and self._model_cache[0] == row.id:
            return self._model_cache[1]
        model = MatchModel.from_dict(self.settings.comparisons, json.loads(row.parameters))
        per_column: dict[str, dict[Any, float]] = defaultdict(dict)
        for freq in session.execute(
            select(MatchTermFrequency.column, MatchTermFrequency.token, MatchTermFrequency.frequency).where(
                MatchTermFrequency.model_id == row.id
            )
        ):
            per_column[freq.column][freq.token] = freq.frequency
        defaults = json.loads(row.parameters).get("tf_defaults", {})
        model.frequencies = FrozenFrequencies(per_column, defaults, self._tf_key)
        self._model_cache = (row.id, model)
        return model

    def _save_model(self, session: Session, model: MatchModel, table: RecordTable) -> uuid.UUID:
        frozen = FrozenFrequencies.capture(table, tf_columns(self.settings.comparisons), self._tf_key)
        model.frequencies = frozen
        parameters = model.to_dict() | {"tf_defaults": frozen.defaults}
        session.execute(update(MatchModelRecord).values(active=False))
        model_id = uuid.uuid4()
        session.execute(
            insert(MatchModelRecord).values(
                id=model_id,
                settings_toml="",
                parameters=json.dumps(parameters),
                records=len(table),
                active=True,
            )
        )
        rows = [
            {"model_id": model_id, "column": column, "token": token, "frequency": freq}
            for column, values in frozen.per_column.items()
            for token, freq in values.items()
        ]
        for chunk in _chunks(rows, 5000):
            session.execute(insert(MatchTermFrequency), list(chunk))
        self._model_cache = (model_id, model)
        return model_id

    # --------------------------------------------------------------------------------------------------
    # Batch
    # --------------------------------------------------------------------------------------------------

    def resolve_all(self, *, retrain: bool = False) -> dict[str, Any]:
        """Re-resolve every record (training a model first if there is none or ``retrain``)."""
        with self.db.transaction() as session:
            table = self._load(session)
            model = None if retrain else self.active_model(session)
            index = {key: i for i, key in enumerate(table.keys)}
            must, cannot = self._decisions(session, index)
            trained_now = model is None
            if model is None:
                # Train on this data, then freeze its frequencies so the model scores alike later.
                trained = resolve(table, self.settings).model
                self._save_model(session, trained, table)
                model = trained
            resolution = resolve(table, self.settings, model=model, must_link=must, cannot_link=cannot)
            self._write_block_keys(session, table, range(len(table)), replace_all=True)
            session.execute(delete(MatchEdge))
            keep = self._kept(resolution.weights)
            refused = {(r.left, r.right): r.reason for r in resolution.clusters.refused}
            refused |= {(r.right, r.left): r.reason for r in resolution.clusters.refused}
            edges: list[dict[str, Any]] = []
            for i in np.flatnonzero(keep).tolist():
                left, right = int(resolution.pairs.left[i]), int(resolution.pairs.right[i])
                a, b = _ordered(uuid.UUID(table.keys[left]), uuid.UUID(table.keys[right]))
                edges.append(
                    {
                        "record_a": a,
                        "record_b": b,
                        "weight": float(resolution.weights[i]),
                        "rule": int(resolution.pairs.rule[i]),
                        "refused": refused.get((left, right)),
                    }
                )
            for chunk in _chunks(edges, 5000):
                session.execute(insert(MatchEdge), list(chunk))
            groups: dict[int, list[uuid.UUID]] = defaultdict(list)
            for row, label in enumerate(resolution.clusters.labels.tolist()):
                groups[label].append(uuid.UUID(table.keys[row]))
            self._assign(session, list(groups.values()), all_records=True)
            report = resolution.report()
            report["stored_edges"] = len(edges)
            threshold = self.settings.clustering.threshold
            record(
                session,
                AuditEvent(
                    "identity.resolve",
                    details={
                        "records": len(table),
                        "entities": len(groups),
                        "links": sum(1 for e in edges if e["weight"] >= threshold and e["refused"] is None),
                        "stored_edges": len(edges),
                        "trained": trained_now,
                    },
                ),
            )
            return report

    def _kept(self, weights: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        clustering = self.settings.clustering
        kept: np.ndarray[Any, Any] = (weights >= clustering.threshold - clustering.review_band) | (
            weights <= clustering.contradiction_weight
        )
        return kept

    def _decisions(
        self, session: Session, index: dict[str, int]
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        must: list[tuple[int, int]] = []
        cannot: list[tuple[int, int]] = []
        for row in session.execute(
            select(MatchDecision.record_a, MatchDecision.record_b, MatchDecision.kind)
        ):
            a, b = index.get(str(row.record_a)), index.get(str(row.record_b))
            if a is None or b is None:
                continue
            (must if row.kind == "merge" else cannot).append((a, b))
        return must, cannot

    # --------------------------------------------------------------------------------------------------
    # Blocking keys in the blind index
    # --------------------------------------------------------------------------------------------------

    def _write_block_keys(
        self, session: Session, table: RecordTable, rows: Iterable[int], *, replace_all: bool = False
    ) -> dict[str, list[bytes | None]]:
        """Write ``blk_*`` blind-index entries for the given rows; returns tokens per rule kind."""
        rows = list(rows)
        record_ids = [uuid.UUID(table.keys[r]) for r in rows]
        subjects = self._subjects(session, record_ids)
        if replace_all:
            session.execute(delete(BlindIndexEntry).where(_IS_BLOCK_KEY))
        else:
            for chunk in _chunks(record_ids):
                session.execute(
                    delete(BlindIndexEntry).where(_IS_BLOCK_KEY, BlindIndexEntry.record_id.in_(chunk))
                )
        tokens: dict[str, list[bytes | None]] = {}
        entries = []
        for rule in self.settings.blocking:
            kind = block_kind(rule)
            columns = [table.column(name) for name in rule.columns]
            per_row: list[bytes | None] = []
            for r, record_id in zip(rows, record_ids, strict=True):
                values = [column.value(r) for column in columns]
                if any(v is None for v in values):
                    per_row.append(None)
                    continue
                token = self.vault.blind.token(kind, "\x1f".join(v for v in values if v is not None))
                per_row.append(token)
                entries.append(
                    {"kind": kind, "token": token, "record_id": record_id, "subject_id": subjects[record_id]}
                )
            tokens[kind] = per_row
        for chunk in _chunks(entries, 5000):
            session.execute(insert(BlindIndexEntry), list(chunk))
        return tokens

    def _subjects(self, session: Session, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        found: dict[uuid.UUID, uuid.UUID] = {}
        for chunk in _chunks(list(record_ids)):
            found.update(
                session.execute(
                    select(SourceRecord.id, SourceRecord.subject_id).where(SourceRecord.id.in_(chunk))
                ).all()
            )
        return found

    # --------------------------------------------------------------------------------------------------
    # Incremental
    # --------------------------------------------------------------------------------------------------

    def resolve_records(self, session: Session, record_ids: Sequence[uuid.UUID]) -> None:
        """Resolve new or changed records inside the caller's transaction (ingestion calls this).

        Without a trained model yet, records get blocking keys and an entity of their own; the first
        ``cdp resolve`` trains the model and links everything.
        """
        if not record_ids:
            return
        record_ids = sorted(set(record_ids), key=str)
        fresh = self._load(session, record_ids)
        tokens = self._write_block_keys(session, fresh, range(len(fresh)))
        model = self.active_model(session)
        # A changed record may no longer belong with its old entity mates: they are re-clustered too.
        previous_mates = self._entity_mates(session, record_ids)
        for chunk in _chunks(record_ids):
            session.execute(
                delete(MatchEdge).where(or_(MatchEdge.record_a.in_(chunk), MatchEdge.record_b.in_(chunk)))
            )
        if model is None:
            self._assign(session, [[r] for r in record_ids if r not in previous_mates])
            return

        candidates = self._candidates(session, record_ids, tokens)
        others = sorted({c for pairs in candidates.values() for c, _ in pairs} - set(record_ids), key=str)
        table = self._load(session, [*record_ids, *others])
        index = {key: i for i, key in enumerate(table.keys)}
        best: dict[tuple[int, int], int] = {}
        for record_id, found in candidates.items():
            mine = index[str(record_id)]
            for other, rule in found:
                theirs = index.get(str(other))
                if theirs is None or theirs == mine:
                    continue
                pair = (min(mine, theirs), max(mine, theirs))
                best[pair] = min(rule, best.get(pair, rule))
        if best:
            pairs = sorted(best)
            left = np.array([p[0] for p in pairs], dtype=np.int32)
            right = np.array([p[1] for p in pairs], dtype=np.int32)
            gammas = compare(table, model.comparisons, left, right)
            weights = decision_weights_for(
                self.settings,
                score(table, model, left, gammas, tf_floor=self.settings.training.tf_floor),
                gammas,
            )
            edges = []
            for i in np.flatnonzero(self._kept(weights)).tolist():
                a, b = _ordered(uuid.UUID(table.keys[int(left[i])]), uuid.UUID(table.keys[int(right[i])]))
                edges.append(
                    {"record_a": a, "record_b": b, "weight": float(weights[i]), "rule": best[pairs[i]]}
                )
            for chunk in _chunks(edges, 5000):
                session.execute(insert(MatchEdge), list(chunk))
        self._recluster(session, {*record_ids, *previous_mates})

    def _candidates(
        self, session: Session, record_ids: Sequence[uuid.UUID], tokens: dict[str, list[bytes | None]]
    ) -> dict[uuid.UUID, list[tuple[uuid.UUID, int]]]:
        """Records sharing a blocking key with each record, with the rule index; oversized blocks skipped."""
        found: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = defaultdict(list)
        cap = self.settings.max_block_size
        for rule_index, rule in enumerate(self.settings.blocking):
            kind = block_kind(rule)
            wanted = sorted({t for t in tokens[kind] if t is not None})
            holders: dict[bytes, list[uuid.UUID]] = defaultdict(list)
            for chunk in _chunks(wanted):
                for row in session.execute(
                    select(BlindIndexEntry.token, BlindIndexEntry.record_id).where(
                        BlindIndexEntry.kind == kind, BlindIndexEntry.token.in_(chunk)
                    )
                ):
                    holders[row.token].append(row.record_id)
            for record_id, token in zip(record_ids, tokens[kind], strict=True):
                if token is None:
                    continue
                block_members = holders.get(token, [])
                if len(block_members) > cap:
                    continue
                found[record_id] += [(other, rule_index) for other in block_members if other != record_id]
        return found

    def _entity_mates(self, session: Session, record_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        members = table_of(EntityMember)
        mates: set[uuid.UUID] = set()
        for chunk in _chunks(list(record_ids)):
            entities = select(members.c.entity_id).where(members.c.record_id.in_(chunk)).scalar_subquery()
            mates.update(
                session.execute(
                    select(members.c.record_id).where(members.c.entity_id.in_(entities))
                ).scalars()
            )
        return mates

    def _component(self, session: Session, seeds: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Records reachable from ``seeds`` over links (weight ≥ threshold) and manual merges."""
        threshold = self.settings.clustering.threshold
        seen = set(seeds)
        frontier = list(seen)
        while frontier:
            reached: set[uuid.UUID] = set()
            for chunk in _chunks(frontier):
                for row in session.execute(
                    select(MatchEdge.record_a, MatchEdge.record_b).where(
                        MatchEdge.weight >= threshold,
                        or_(MatchEdge.record_a.in_(chunk), MatchEdge.record_b.in_(chunk)),
                    )
                ):
                    reached.update((row.record_a, row.record_b))
                for row in session.execute(
                    select(MatchDecision.record_a, MatchDecision.record_b).where(
                        MatchDecision.kind == "merge",
                        or_(MatchDecision.record_a.in_(chunk), MatchDecision.record_b.in_(chunk)),
                    )
                ):
                    reached.update((row.record_a, row.record_b))
            frontier = list(reached - seen)
            seen |= reached
        return seen

    def _recluster(self, session: Session, seeds: Iterable[uuid.UUID]) -> None:
        """Re-cluster the connected components of ``seeds`` from stored edges and decisions."""
        component = sorted(self._component(session, seeds), key=str)
        if not component:
            return
        table = self._load(session, component)
        index = {key: i for i, key in enumerate(table.keys)}
        lefts: list[int] = []
        rights: list[int] = []
        weights: list[float] = []
        edge_keys: list[tuple[uuid.UUID, uuid.UUID, str | None]] = []
        for chunk in _chunks(component):
            for edge in session.execute(
                select(MatchEdge.record_a, MatchEdge.record_b, MatchEdge.weight, MatchEdge.refused).where(
                    MatchEdge.record_a.in_(chunk)
                )
            ):
                other = index.get(str(edge.record_b))
                if other is None:
                    continue
                lefts.append(index[str(edge.record_a)])
                rights.append(other)
                weights.append(edge.weight)
                edge_keys.append((edge.record_a, edge.record_b, edge.refused))
        must: list[tuple[int, int]] = []
        cannot: list[tuple[int, int]] = []
        for chunk in _chunks(component):
            for decision in session.execute(
                select(MatchDecision.record_a, MatchDecision.record_b, MatchDecision.kind).where(
                    MatchDecision.record_a.in_(chunk)
                )
            ):
                other = index.get(str(decision.record_b))
                if other is not None:
                    pair = (index[str(decision.record_a)], other)
                    (must if decision.kind == "merge" else cannot).append(pair)
        left = np.array(lefts, dtype=np.int32)
        right = np.array(rights, dtype=np.int32)
        weight = np.array(weights, dtype=np.float64)
        constraints = constraints_for(table, self.settings, left, right, must_link=must, cannot_link=cannot)
        result = cluster(
            len(table),
            left,
            right,
            weight,
            threshold=self.settings.clustering.threshold,
            contradiction_weight=self.settings.clustering.contradiction_weight,
            constraints=constraints,
        )
        refused = {(r.left, r.right): r.reason for r in result.refused}
        for i, (a, b, before) in enumerate(edge_keys):
            reason = refused.get((lefts[i], rights[i])) or refused.get((rights[i], lefts[i]))
            if reason != before:
                session.execute(
                    update(MatchEdge)
                    .where(MatchEdge.record_a == a, MatchEdge.record_b == b)
                    .values(refused=reason)
                )
        groups: dict[int, list[uuid.UUID]] = defaultdict(list)
        for position, label in enumerate(result.labels.tolist()):
            groups[label].append(uuid.UUID(table.keys[position]))
        self._assign(session, list(groups.values()))

    def _assign(
        self, session: Session, groups: Sequence[Sequence[uuid.UUID]], *, all_records: bool = False
    ) -> None:
        """Make each group one entity, keeping entity ids stable where membership overlaps most."""
        members = table_of(EntityMember)
        everyone = [r for group in groups for r in group]
        current: dict[uuid.UUID, uuid.UUID] = {}
        if all_records:
            current = dict(session.execute(select(members.c.record_id, members.c.entity_id)).all())
        else:
            for chunk in _chunks(everyone):
                current.update(
                    session.execute(
                        select(members.c.record_id, members.c.entity_id).where(members.c.record_id.in_(chunk))
                    ).all()
                )
        # Largest groups choose first; each keeps the entity most of its members already had.
        taken: set[uuid.UUID] = set()
        now = utcnow()
        new_entities: list[dict[str, Any]] = []
        moves: dict[uuid.UUID, uuid.UUID] = {}
        for group in sorted(groups, key=lambda g: (-len(g), str(min(g, key=str)))):
            votes: dict[uuid.UUID, int] = defaultdict(int)
            for record_id in group:
                if record_id in current:
                    votes[current[record_id]] += 1
            ranked = sorted(votes.items(), key=lambda kv: (-kv[1], str(kv[0])))
            entity_id = next((e for e, _ in ranked if e not in taken), None)
            if entity_id is None:
                entity_id = uuid.uuid4()
                new_entities.append({"id": entity_id, "created_at": now, "updated_at": now})
            taken.add(entity_id)
            for record_id in group:
                if current.get(record_id) != entity_id:
                    moves[record_id] = entity_id
        if new_entities:
            for chunk in _chunks(new_entities, 5000):
                session.execute(insert(Entity), list(chunk))
        touched = set(moves.values())
        fresh = [r for r in moves if r not in current]
        for chunk in _chunks(fresh, 5000):
            session.execute(
                insert(EntityMember),
                [{"record_id": r, "entity_id": moves[r], "joined_at": now} for r in chunk],
            )
        by_target: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for record_id, entity_id in moves.items():
            if record_id in current:
                by_target[entity_id].append(record_id)
                touched.add(current[record_id])
        for entity_id, record_ids in by_target.items():
            for chunk in _chunks(record_ids):
                session.execute(
                    update(EntityMember)
                    .where(EntityMember.record_id.in_(chunk))
                    .values(entity_id=entity_id, joined_at=now)
                )
        if touched:
            for chunk in _chunks(sorted(touched, key=str)):
                session.execute(update(Entity).where(Entity.id.in_(chunk)).values(updated_at=now))
        # Entities left without members are gone (their ids are never reused). Only an entity that lost
        # a member here can have become empty, so an incremental run checks just those; a full run sweeps
        # them all. NOT EXISTS, not NOT IN: PostgreSQL cannot turn NOT IN (subquery) into an anti-join,
        # and once the member ids outgrew work_mem each chunk rescanned them per entity (quadratic: 67 s a
        # chunk at 300k customers).
        orphaned = ~exists().where(members.c.entity_id == Entity.id)
        if all_records:
            session.execute(delete(Entity).where(orphaned))
        else:
            lost = {current[r] for r, target in moves.items() if r in current and current[r] != target}
            for chunk in _chunks(sorted(lost, key=str)):
                session.execute(delete(Entity).where(Entity.id.in_(chunk), orphaned))

    # --------------------------------------------------------------------------------------------------
    # Reading entities
    # --------------------------------------------------------------------------------------------------

    def entity_of(self, record_id: uuid.UUID) -> uuid.UUID:
        with self.db.read() as session:
            entity_id = session.execute(
                select(EntityMember.entity_id).where(EntityMember.record_id == record_id)
            ).scalar_one_or_none()
        if entity_id is None:
            raise EntityNotFound(f"record {record_id} is not resolved to an entity yet")
        return entity_id

    def members(self, entity_id: uuid.UUID) -> list[uuid.UUID]:
        with self.db.read() as session:
            return self._members(session, entity_id)

    def _members(self, session: Session, entity_id: uuid.UUID) -> list[uuid.UUID]:
        found = sorted(
            session.execute(
                select(EntityMember.record_id).where(EntityMember.entity_id == entity_id)
            ).scalars(),
            key=str,
        )
        if not found:
            raise EntityNotFound(f"entity {entity_id} does not exist")
        return found

    def partition(self) -> list[frozenset[uuid.UUID]]:
        """Every entity as its set of record ids (for tests and reports)."""
        groups: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        with self.db.read() as session:
            for record_id, entity_id in session.execute(
                select(EntityMember.record_id, EntityMember.entity_id)
            ):
                groups[entity_id].add(record_id)
        return sorted((frozenset(g) for g in groups.values()), key=lambda g: str(min(g, key=str)))

    def explain(self, record_a: uuid.UUID, record_b: uuid.UUID) -> PairExplanation:
        """The waterfall of evidence for one pair under the active model."""
        with self.db.read() as session:
            model = self.active_model(session)
            if model is None:
                raise NoMatchModel("no match model yet: run `cdp resolve` first")
            table = self._load(session, [record_a, record_b])
        if len(table) != 2:
            raise RecordNotFound("both records must exist")
        index = {key: i for i, key in enumerate(table.keys)}
        return explain_pair(table, model, self.settings, index[str(record_a)], index[str(record_b)])

    def explain_entity(self, entity_id: uuid.UUID) -> dict[str, Any]:
        """Why an entity holds its records: the stored links between members and their weights."""
        with self.db.read() as session:
            members = self._members(session, entity_id)
            links = []
            for chunk in _chunks(members):
                for row in session.execute(
                    select(MatchEdge).where(MatchEdge.record_a.in_(chunk), MatchEdge.record_b.in_(members))
                ).scalars():
                    links.append(
                        {
                            "record_a": str(row.record_a),
                            "record_b": str(row.record_b),
                            "match_weight": round(row.weight, 4),
                            "refused": row.refused,
                        }
                    )
            decisions = [
                {"record_a": str(d.record_a), "record_b": str(d.record_b), "kind": d.kind, "actor": d.actor}
                for d in session.execute(
                    select(MatchDecision).where(
                        MatchDecision.record_a.in_(members) | MatchDecision.record_b.in_(members)
                    )
                ).scalars()
            ]
            sources: dict[str, str] = {}
            for chunk in _chunks(members):
                for record_id, source in session.execute(
                    select(SourceRecord.id, Source.name)
                    .join(Source, Source.id == SourceRecord.source_id)
                    .where(SourceRecord.id.in_(chunk))
                ):
                    sources[str(record_id)] = source
        return {
            "entity_id": str(entity_id),
            "records": [str(m) for m in members],
            "sources": sources,
            "links": links,
            "decisions": decisions,
        }

    def golden(self, entity_id: uuid.UUID, rules: SurvivorshipRules | None = None) -> GoldenProfile:
        """The entity's golden profile with provenance (plaintext: callers go through the access gate)."""
        from cdp.sources.records import RecordRepository

        with self.db.read() as session:
            members = self._members(session, entity_id)
            repository = RecordRepository(session, self.vault)
            stored = repository.get_many(members)
            names = dict(session.execute(select(Source.id, Source.name)).all())
        member_records = [
            MemberRecord(
                record_id=str(record.id),
                source=names.get(record.source_id, "unknown"),
                source_record_id=record.data.source_record_id,
                updated_at=record.updated_at,
                last_activity_at=record.last_activity_at,
                values={name: getattr(record.data, name) for name in CANONICAL_FIELDS},
                quality=frozenset((record.normalized or {}).get("quality", ())),
            )
            for record in stored
        ]
        return golden_profile(member_records, rules or SurvivorshipRules.default())

    # --------------------------------------------------------------------------------------------------
    # Manual review
    # --------------------------------------------------------------------------------------------------

    def review_queue(self, limit: int = 50) -> list[ReviewItem]:
        """Undecided pairs a person should look at: refused links and weights near the threshold."""
        clustering = self.settings.clustering
        low = clustering.threshold - clustering.review_band
        high = clustering.threshold + clustering.review_band
        with self.db.read() as session:
            decided = select(MatchDecision.id).where(
                MatchDecision.record_a == MatchEdge.record_a, MatchDecision.record_b == MatchEdge.record_b
            )
            rows = session.execute(
                select(MatchEdge.record_a, MatchEdge.record_b, MatchEdge.weight, MatchEdge.refused)
                .where(
                    or_(
                        MatchEdge.refused.is_not(None), and_(MatchEdge.weight >= low, MatchEdge.weight < high)
                    ),
                    ~decided.exists(),
                )
                .order_by(
                    (MatchEdge.weight - clustering.threshold) * (MatchEdge.weight - clustering.threshold)
                )
                .limit(limit)
            ).all()
            members = table_of(EntityMember)
            ids = {r.record_a for r in rows} | {r.record_b for r in rows}
            entity = dict(
                session.execute(
                    select(members.c.record_id, members.c.entity_id).where(members.c.record_id.in_(ids))
                ).all()
            )
        return [
            ReviewItem(
                r.record_a, r.record_b, r.weight, entity.get(r.record_a) == entity.get(r.record_b), r.refused
            )
            for r in rows
        ]

    def merge(self, record_a: uuid.UUID, record_b: uuid.UUID, *, actor: str, reason: str) -> uuid.UUID:
        """Decide by hand that two records are one person; returns their entity."""
        if record_a == record_b:
            raise IdentityError("a record cannot be merged with itself")
        records = [record_a, record_b]
        with self.db.transaction() as session:
            before = self._entities_of(session, records)
            consent_before = _consent_by_entity(session, set(before.values()))
            self._decide(session, [(record_a, record_b)], "merge", actor, reason)
            self._recluster(session, set(records))
            after = self._entities_of(session, records)
            entity = after[record_a]
            self._audit_decision(session, "identity.merge", records, before, after, reason)
            _audit_consent_change(session, consent_before, set(after.values()))
        return entity

    def split(
        self, entity_id: uuid.UUID, record_ids: Sequence[uuid.UUID], *, actor: str, reason: str
    ) -> list[uuid.UUID]:
        """Decide by hand that ``record_ids`` are not the same person as the rest of the entity."""
        with self.db.transaction() as session:
            members = self._members(session, entity_id)
            moving = set(record_ids)
            if not moving or not moving < set(members):
                raise IdentityError("split needs some, but not all, records of the entity")
            staying = [m for m in members if m not in moving]
            consent_before = _consent_by_entity(session, {entity_id})
            pairs = [(a, b) for a in sorted(moving, key=str) for b in staying]
            self._decide(session, pairs, "split", actor, reason)
            # Any merge decision between the two sides was replaced by a split decision just now.
            self._recluster(session, members)
            after = self._entities_of(session, members)
            self._audit_decision(
                session,
                "identity.split",
                members,
                dict.fromkeys(members, entity_id),
                after,
                reason,
                moved=len(moving),
            )
            _audit_consent_change(session, consent_before, set(after.values()))
        return sorted(set(after.values()), key=str)

    def _entities_of(self, session: Session, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """The entity of each record that has one."""
        found: dict[uuid.UUID, uuid.UUID] = {}
        for chunk in _chunks(list(record_ids)):
            found.update(
                session.execute(
                    select(EntityMember.record_id, EntityMember.entity_id).where(
                        EntityMember.record_id.in_(chunk)
                    )
                ).all()
            )
        return found

    def _audit_decision(
        self,
        session: Session,
        action: str,
        records: Sequence[uuid.UUID],
        before: dict[uuid.UUID, uuid.UUID],
        after: dict[uuid.UUID, uuid.UUID],
        reason: str,
        **counts: int,
    ) -> None:
        """Record a manual decision in the transaction that makes it. The reason stays with the decision
        row (only stewards read it); the log, which outlives erasure, says only that one was given."""
        entities_before = sorted({str(e) for e in before.values()})
        entities_after = sorted({str(e) for e in after.values()})
        record(
            session,
            AuditEvent(
                action,
                subjects=(*(str(r) for r in records), *entities_before, *entities_after),
                details={
                    "records": len(records),
                    "entities_before": len(entities_before),
                    "entities_after": len(entities_after),
                    "entity_ids": entities_after,
                    "reason_given": bool(reason.strip()),
                    **counts,
                },
            ),
        )

    def _decide(
        self,
        session: Session,
        pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
        kind: str,
        actor: str,
        reason: str,
    ) -> None:
        if not actor or len(actor) > 128:
            raise IdentityError("actor must be 1-128 characters")
        if len(reason) > 300:
            raise IdentityError("reason must be at most 300 characters")
        known = self._subjects(session, sorted({r for p in pairs for r in p}, key=str))
        missing = {r for p in pairs for r in p} - set(known)
        if missing:
            raise RecordNotFound(f"unknown record id {sorted(missing, key=str)[0]}")
        now = utcnow()
        for a, b in pairs:
            a, b = _ordered(a, b)
            session.execute(
                delete(MatchDecision).where(MatchDecision.record_a == a, MatchDecision.record_b == b)
            )
            session.execute(
                insert(MatchDecision).values(
                    id=uuid.uuid4(),
                    record_a=a,
                    record_b=b,
                    kind=kind,
                    actor=actor,
                    reason=reason,
                    created_at=now,
                )
            )

    def decisions(self) -> list[Decision]:
        with self.db.read() as session:
            return [
                Decision(d.record_a, d.record_b, d.kind, d.actor, d.reason, d.created_at)
                for d in session.execute(select(MatchDecision).order_by(MatchDecision.created_at)).scalars()
            ]


_ConsentSnapshot = dict[uuid.UUID, tuple[set[uuid.UUID], list[RecordedEvent]]]
"""entity -> (its member records, their consent events)"""


def _consent_by_entity(session: Session, entity_ids: set[uuid.UUID]) -> _ConsentSnapshot:
    """Members and consent events of ``entity_ids`` in one query (an outer join: entities without events
    cost nothing more)."""
    out: _ConsentSnapshot = {}
    if not entity_ids:
        return out
    for chunk in _chunks(sorted(entity_ids, key=str)):
        rows = session.execute(
            select(EntityMember.entity_id, EntityMember.record_id, ConsentEvent)
            .outerjoin(ConsentEvent, ConsentEvent.record_id == EntityMember.record_id)
            .where(EntityMember.entity_id.in_(chunk))
        ).all()
        for entity_id, record_id, event in rows:
            records, found = out.setdefault(entity_id, (set(), []))
            records.add(record_id)
            if event is not None:
                found.append(event_of(event))
    return out


def _audit_consent_change(session: Session, before: _ConsentSnapshot, after_ids: set[uuid.UUID]) -> None:
    """Consent state follows membership by itself (it is derived from member records' events); what a
    manual merge or split must add is the audit of whose consent it changed, in the same transaction.
    Nothing is recorded, and no further query runs, when none of the records involved has an event."""
    if not any(found for _, found in before.values()):
        return
    after = _consent_by_entity(session, after_ids)
    catalog = ConsentCatalog.default()
    now = utcnow()
    holds_before = {
        record_id: {name: state.holds for name, state in derive(catalog, found, now).items()}
        for records, found in before.values()
        for record_id in records
    }
    changed: dict[str, dict[str, list[bool]]] = {}
    subjects: set[str] = {str(entity_id) for entity_id in before}
    for entity_id, (records, found) in after.items():
        subjects.add(str(entity_id))
        subjects.update(str(record_id) for record_id in records)
        states = derive(catalog, found, now)
        for name, state in states.items():
            # Every member had the same "before" state when they shared an entity; a member that was in
            # none of the entities before is compared with the state of no events.
            previous = {
                holds_before.get(record_id, {}).get(name, _silent(catalog, name)) for record_id in records
            }
            if previous != {state.holds}:
                changed.setdefault(str(entity_id), {})[name] = [not state.holds, state.holds]
    for records, _ in before.values():
        subjects.update(str(record_id) for record_id in records)
    if changed:
        record(
            session,
            AuditEvent("consent.recompute", subjects=tuple(sorted(subjects)), details={"changed": changed}),
        )


def _silent(catalog: ConsentCatalog, purpose: str) -> bool:
    found = catalog.purpose(purpose)
    return found is not None and not found.needs_grant
