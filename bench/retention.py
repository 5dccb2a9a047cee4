"""Retention sweep and erasure speed.

    python -m bench.retention [--subjects 100000] [--backends sqlite,postgres] [--erasures 40]

1. **Sweep**: N expired newsletter subscribers (each a record, its own data key, blind-index tokens, a
   consent event and an entity of its own) are destroyed by ``RetentionSweeper.run`` in batches of 1,000:
   crypto-shred, delete rows and index entries, drop entities, sign the certificate. Goal: 100k in < 60 s
   on the embedded default (the team's own target: < 20 s).
   Baseline in the same run: the same path one record per transaction (``batch_size=1``) on a slice,
   which is what a naive "for each expired record: erase it" loop costs.
2. **Erasure latency**: DSR erasures of customers with three records (CRM, helpdesk, billing with
   documents kept pseudonymized) from request to signed receipt: ``DsrService.process`` p50 / p95.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from bench.common import (
    Header,
    console,
    fmt_rate,
    parse_backends,
    peak_rss_mib,
    print_table,
    run_isolated,
    temp_platform,
)
from cdp.access.gate import Actor
from cdp.db.models import Entity, EntityMember, RetentionSweep, SourceRecord, Suppression
from cdp.db.types import utcnow
from cdp.dsr.service import DsrService
from cdp.platform import Platform
from cdp.retention.policy import RetentionPolicy
from cdp.retention.sweep import RetentionSweeper, SweepReport
from cdp.sources.ingest import IngestService

MAPPINGS = Path(__file__).resolve().parents[1] / "cdp" / "demo" / "mappings"
AS_OF = datetime(2030, 1, 1, tzinfo=UTC)
BASELINE_SLICE = 1000


def _seed_leads(platform: Platform, workdir: Path, count: int) -> float:
    started = time.perf_counter()
    ingest = IngestService(platform.db, platform.vault, resolve=False, chunk_size=2000)
    ingest.register_source((MAPPINGS / "newsletter.toml").read_text(encoding="utf-8"))
    path = workdir / "leads.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(
            "subscriber_id,email,first_name,country,last_engaged,list_id,signup_date,signup_source,opt_in,status\n"
        )
        for i in range(count):
            out.write(f"S-{i},lead{i}@example.net,Lee,GB,2019-05-01,1,2018-01-01,web,yes,subscribed\n")
    summary = ingest.ingest_file("newsletter", path)
    assert summary.inserted == count, summary.rejections
    with platform.db.transaction() as session:
        ids = list(session.execute(select(SourceRecord.id)).scalars())
        now = utcnow()
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            entities = [uuid.uuid4() for _ in chunk]
            session.execute(
                insert(Entity), [{"id": e, "created_at": now, "updated_at": now} for e in entities]
            )
            session.execute(
                insert(EntityMember),
                [
                    {"record_id": r, "entity_id": e, "joined_at": now}
                    for r, e in zip(chunk, entities, strict=True)
                ],
            )
    return time.perf_counter() - started


def sweep_run(backend: str, subjects: int) -> dict[str, float]:
    with temp_platform(backend, "retention") as bench:
        platform = bench.platform
        seed_s = _seed_leads(platform, bench.workdir, subjects)
        policy = RetentionPolicy.load()
        baseline_n = min(BASELINE_SLICE, subjects // 10)
        one_by_one = RetentionSweeper(platform.db, platform.vault, policy, batch_size=1)
        # The baseline destroys a slice one record per transaction, then the batched sweep does the rest.
        started = time.perf_counter()
        done = 0
        sweep_id, as_of, _ = one_by_one._acquire(AS_OF)
        report = SweepReport(sweep_id, False, as_of, policy.version)
        while done < baseline_n and one_by_one._batch(sweep_id, as_of, report)[0]:
            done += 1
        baseline_s = time.perf_counter() - started
        with platform.db.transaction() as session:  # hand the sweep over
            session.execute(update(RetentionSweep).values(lease_until=datetime(2000, 1, 1, tzinfo=UTC)))
        sweeper = RetentionSweeper(platform.db, platform.vault, policy, batch_size=1000)
        started = time.perf_counter()
        result = sweeper.run(now=AS_OF)
        sweep_s = time.perf_counter() - started
        return {
            "seed_s": seed_s,
            "baseline_n": float(done),
            "baseline_s": baseline_s,
            "swept": float(result.destroyed.records),
            "sweep_s": sweep_s,
            "batches": float(result.batches),
            "rss": peak_rss_mib(),
        }


def erasure_run(backend: str, count: int) -> dict[str, float]:
    from tests.dsr.world import seed_world  # the test world: CRM, helpdesk and billing with invoices

    with temp_platform(backend, "erasure") as bench:
        platform = bench.platform
        settings = platform.settings.with_overrides(dsr_erasure_requires_approval=False)
        service = DsrService.for_platform(Platform(settings, platform.db, platform.vault))
        latencies: list[float] = []
        for i in range(count):
            workdir = bench.workdir / f"w{i}"
            workdir.mkdir()
            world = seed_world(platform, workdir)  # re-ingesting the same world is a no-op: erase first
            record = world.customers.maria_crm_record
            request = service.open_self_service(
                Actor(f"customer:{record}", "customer", None, record), "erasure"
            )
            started = time.perf_counter()
            result = service.process(request.id)
            latencies.append(time.perf_counter() - started)
            assert result.outcome is not None and result.outcome.records >= 1
            _forget_suppressions(platform)  # so the same world can be ingested again next round
        latencies.sort()
        return {
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
            "max_ms": latencies[-1] * 1000,
        }


def _forget_suppressions(platform: Platform) -> None:
    with platform.db.transaction() as session:
        session.execute(delete(Suppression))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--erasures", type=int, default=40)
    args = parser.parse_args()
    backends = parse_backends(args.backends)
    Header(
        "Retention sweep and erasure", {"subjects": f"{args.subjects:,}", "erasures": args.erasures}
    ).print(backends)
    rows = []
    for backend in backends:
        r = run_isolated(sweep_run, backend, args.subjects)
        per_record = r["baseline_s"] / r["baseline_n"]
        batched = r["sweep_s"] / r["swept"]
        rows.append(
            [
                backend,
                f"{int(r['swept']):,}",
                f"{r['sweep_s']:.1f}",
                fmt_rate(r["swept"], r["sweep_s"]),
                f"{int(r['baseline_n']):,} in {r['baseline_s']:.1f}",
                fmt_rate(r["baseline_n"], r["baseline_s"]),
                f"{per_record / batched:.1f}x",
                f"{r['seed_s']:.0f}",
                f"{r['rss']:.0f}",
            ]
        )
    print_table(
        "Retention sweep (batches of 1,000; goal: 100k < 60 s on SQLite)",
        [
            "backend",
            "destroyed",
            "sweep s",
            "records/s",
            "baseline (1 per tx)",
            "records/s",
            "speed-up",
            "seed s",
            "peak MiB",
        ],
        rows,
        left=1,
    )
    erasure_rows = []
    for backend in backends:
        e = run_isolated(erasure_run, backend, args.erasures)
        erasure_rows.append(
            [backend, args.erasures, f"{e['p50_ms']:.1f}", f"{e['p95_ms']:.1f}", f"{e['max_ms']:.1f}"]
        )
    print_table(
        "Erasure latency: request to signed receipt, customer with 3 records (DsrService.process)",
        ["backend", "erasures", "p50 ms", "p95 ms", "max ms"],
        erasure_rows,
        left=1,
    )
    console.print("Extrapolation: sweep seconds scale with destroyed records (batches are constant-cost).")


if __name__ == "__main__":
    main()
