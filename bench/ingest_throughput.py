"""Ingest rate with encryption on: generated multi-source demo data through the real ingest path.

    python -m bench.ingest_throughput [--records 100000] [--backends sqlite,postgres]

The generator is sized so the four sources together hold about ``--records`` customer records; their
contact history is ingested too and reported separately. Each backend runs in a fresh process (so peak
RSS is per run) on a fresh platform. Baseline in the same run: the same rows through mapping and
normalization only (``prepare``), without encryption or the database, so the table shows what the
storage path adds on top of the pure data work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bench.common import (
    Header,
    fmt_rate,
    parse_backends,
    peak_rss_mib,
    print_table,
    run_isolated,
    temp_platform,
)
from cdp.demo.generator import generate
from cdp.sources.ingest import IngestService
from cdp.sources.mapping import SourceMapping
from cdp.sources.prepare import Rejected, prepare_record
from cdp.sources.readers import read_rows

RECORDS_PER_PERSON = 2.58  # measured on the generator's output


@dataclass
class Result:
    backend: str
    records: int
    record_seconds: float
    interactions: int
    interaction_seconds: float
    rejected: int
    peak_rss_mib: float


MAPPINGS = Path(__file__).resolve().parent.parent / "cdp" / "demo" / "mappings"
RECORD_FILES = {
    "crm": "crm_contacts.csv",
    "helpdesk": "helpdesk_contacts.jsonl",
    "billing": "billing_customers.csv",
    "newsletter": "newsletter_subscribers.csv",
}
INTERACTION_FILES = {
    "crm": "crm_activities.csv",
    "helpdesk": "helpdesk_tickets.jsonl",
    "billing": "billing_invoices.csv",
    "newsletter": "newsletter_events.jsonl",
}


def prepare_only(data_dir: str) -> float:
    """The same record files through mapping + normalization only (no crypto, no database), in a fresh
    process so its memoized normalizers start as cold as the ingest's did."""
    started = time.perf_counter()
    for source, file_name in RECORD_FILES.items():
        mapping = SourceMapping.from_file(MAPPINGS / f"{source}.toml")
        for row in read_rows(
            Path(data_dir) / file_name, encoding=mapping.encoding, delimiter=mapping.csv_delimiter
        ):
            if row.error:
                continue
            with suppress(Rejected):
                prepare_record(row.values, mapping, today=date.today())
    return time.perf_counter() - started


class _Meter:
    """Prints the running and the recent rate every ``every`` rows, so a long run shows how the rate
    holds up as the tables grow (and a run stopped early still leaves its figures)."""

    def __init__(self, what: str, started: float, every: int = 100_000) -> None:
        self.what, self.started, self.every = what, started, every
        self.done = 0
        self.mark = (0, started)

    def __call__(self, rows: int) -> None:
        before = self.done
        self.done += rows
        if self.done // self.every == before // self.every:
            return
        now = time.perf_counter()
        recent = (self.done - self.mark[0]) / max(now - self.mark[1], 1e-9)
        overall = self.done / max(now - self.started, 1e-9)
        print(
            f"  {self.what}: {self.done:,} in {now - self.started:,.0f} s — {overall:,.0f}/s overall, "
            f"{recent:,.0f}/s over the last {self.done - self.mark[0]:,}",
            flush=True,
        )
        self.mark = (self.done, now)


def run(backend: str, people: int, data_dir: str) -> Result:
    generated_dir = Path(data_dir)
    with temp_platform(backend, "ingest") as bench:
        platform = bench.platform
        service = IngestService(platform.db, platform.vault)
        for source in RECORD_FILES:
            service.register_source((MAPPINGS / f"{source}.toml").read_text(encoding="utf-8"))
        record_files = {source: generated_dir / name for source, name in RECORD_FILES.items()}
        interaction_files = {source: generated_dir / name for source, name in INTERACTION_FILES.items()}
        records = rejected = interactions = 0
        started = time.perf_counter()
        meter = _Meter("records", started)
        for source, path in record_files.items():
            summary = service.ingest_file(source, path, progress=meter)
            records += summary.rows
            rejected += summary.rejected
        record_seconds = time.perf_counter() - started
        started = time.perf_counter()
        meter = _Meter("interactions", started)
        for source, path in interaction_files.items():
            summary = service.ingest_file(source, path, kind="interactions", progress=meter)
            interactions += summary.rows
            rejected += summary.rejected
        interaction_seconds = time.perf_counter() - started
        return Result(
            backend, records, record_seconds, interactions, interaction_seconds, rejected, peak_rss_mib()
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args(argv)
    backends = parse_backends(args.backends)
    people = max(1, round(args.records / RECORDS_PER_PERSON))
    Header("cdp ingest throughput", {"target records": f"{args.records:,}", "people": f"{people:,}"}).print(
        backends
    )
    with tempfile.TemporaryDirectory(prefix="cdp-ingest-data-") as tmp:
        started = time.perf_counter()
        summary = generate(Path(tmp), people=people, seed=42)
        generated_seconds = time.perf_counter() - started
        baseline = run_isolated(prepare_only, tmp)
        results = [run_isolated(run, backend, people, tmp) for backend in backends]
    rows = []
    for r in results:
        rows.append(
            [
                r.backend,
                "records",
                f"{r.records:,}",
                f"{r.record_seconds:.1f}",
                fmt_rate(r.records, r.record_seconds),
                f"{r.record_seconds / baseline:.2f}x",
                f"{r.peak_rss_mib:.0f}",
            ]
        )
        rows.append(
            [
                r.backend,
                "interactions",
                f"{r.interactions:,}",
                f"{r.interaction_seconds:.1f}",
                fmt_rate(r.interactions, r.interaction_seconds),
                "",
                "",
            ]
        )
    print_table(
        f"Ingest (generated {summary.records:,} records / {summary.interactions:,} interactions "
        f"in {generated_seconds:.1f} s; rejected rows are quarantined and counted in the rows)",
        ["backend", "kind", "rows", "seconds", "rows/s", "vs prepare-only", "peak RSS MiB"],
        rows,
    )
    closing = "; ".join(
        f"{r.backend}: {fmt_rate(r.records, r.record_seconds)} records/s, "
        f"{fmt_rate(r.interactions, r.interaction_seconds)} interactions/s, "
        f"storage path {r.record_seconds / baseline:.2f}x prepare-only, "
        f"peak {r.peak_rss_mib:.0f} MiB"
        for r in results
    )
    print(f"Key figures: {closing}")


if __name__ == "__main__":
    main()
