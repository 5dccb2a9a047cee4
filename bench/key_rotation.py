"""KEK rotation speed: data keys rewrapped per second, per back end and batch size.

    python -m bench.key_rotation [--subjects 100000] [--backends sqlite,postgres] [--batch 1000,5000]

Each (back end, batch size) gets a fresh database with N subjects made by ``SubjectStore.create_many``,
then ``cdp.vault.rotation.rotate(..., retire_old=True, settle_seconds=0)`` is timed. The progress
callback timestamps every committed batch, so the report also shows whether a batch gets slower as the
rotation advances (a per-batch cost that grows with the rows already done makes the whole rotation
quadratic, and a linear extrapolation to 1M subjects too optimistic).
"""

from __future__ import annotations

import argparse
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select

from bench.common import (
    Header,
    Stopwatch,
    console,
    fmt_rate,
    load_average,
    parse_backends,
    parse_ints,
    peak_rss_mib,
    print_table,
    run_isolated,
    temp_platform,
)
from cdp.db import Database
from cdp.db.models import Subject
from cdp.vault import Vault
from cdp.vault import rotation as rotation_mod
from cdp.vault.subjects import SubjectStore

CREATE_BATCH = 5000
TARGET_SUBJECTS = 1_000_000
TARGET_SECONDS = 30.0
MIN_BATCHES_TO_FIT = 8
"""With fewer batches the per-batch trend is noise; the fitted extrapolation falls back to linear."""


@dataclass
class RotationRun:
    backend: str
    batch: int
    subjects: int
    create_s: float = 0.0
    rotate_wall_s: float = 0.0
    rewrap_s: float = 0.0
    """RotationResult.seconds: the rewrap loop (plus the initial pending count and new KEK)."""
    rewrapped: int = 0
    retired: list[int] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    batch_done_before: list[int] = field(default_factory=list)
    plan: str = ""
    peak_rss_mib: float = 0.0

    def fit(self) -> tuple[float, float]:
        """Least-squares fit of batch duration = c + k * (rows already rewrapped before the batch)."""
        xs, ys = self.batch_done_before, self.batch_seconds
        n = len(xs)
        mean_y = sum(ys) / n if n else 0.0
        if n < MIN_BATCHES_TO_FIT:
            return mean_y, 0.0
        mean_x = sum(xs) / n
        var = sum((x - mean_x) ** 2 for x in xs)
        k = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
        k = max(k, 0.0)  # a batch never gets cheaper because more rows are done; negative is noise
        return mean_y - k * mean_x, k

    def extrapolate(self, target: int) -> tuple[float, float]:
        """(linear, fitted) seconds to rotate ``target`` subjects at this batch size.

        Linear scales the measured time. Fitted sums c + k*done over target/batch batches, and scales
        the part outside the batches (the pending counts: full scans) linearly."""
        linear = self.rewrap_s * target / self.subjects
        c, k = self.fit()
        batches = -(-target // self.batch)
        in_batches = batches * c + k * self.batch * batches * (batches - 1) / 2
        outside = max(self.rewrap_s - sum(self.batch_seconds), 0.0) * target / self.subjects
        return linear, in_batches + outside

    def slice_mean(self, first: bool) -> float:
        n = max(1, len(self.batch_seconds) // 10)
        part = self.batch_seconds[:n] if first else self.batch_seconds[-n:]
        return sum(part) / len(part) if part else 0.0


def run_one(backend: str, subjects: int, batch: int) -> RotationRun:
    run = RotationRun(backend, batch, subjects)
    with temp_platform(backend, "rotation") as bench:
        db = bench.platform.db
        vault = Vault.from_settings(bench.settings)
        console.print(f"[dim]{backend}/batch {batch:,}: creating {subjects:,} subjects…[/dim]")
        watch = Stopwatch()
        remaining = subjects
        sample: uuid.UUID | None = None
        while remaining:
            n = min(CREATE_BATCH, remaining)
            remaining -= n
            with watch, db.transaction() as session:
                created = SubjectStore(session, vault.keys).create_many(n)
            sample = sample or created[0][0]
        run.create_s = watch.seconds
        if not db.is_sqlite:
            # What autovacuum would soon do after a bulk load; keeps the plan choice deterministic.
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE subject")
        run.plan = explain_plan(bench.platform.db, batch)

        console.print(f"[dim]{backend}/batch {batch:,}: rotating…[/dim]")
        marks: list[tuple[float, int]] = []

        def progress(done: int, total: int) -> None:
            marks.append((time.perf_counter(), done))

        started = time.perf_counter()
        result = rotation_mod.rotate(
            db, vault, batch_size=batch, progress=progress, retire_old=True, settle_seconds=0
        )
        run.rotate_wall_s = time.perf_counter() - started
        run.rewrap_s = result.seconds
        run.rewrapped = result.rewrapped
        run.retired = result.retired
        for (t0, done0), (t1, _done1) in itertools.pairwise(marks):
            run.batch_seconds.append(t1 - t0)
            run.batch_done_before.append(done0)

        # The rotation really happened: every key under the new KEK, old KEK gone, keys still open.
        status = rotation_mod.status(db, Vault.from_settings(bench.settings))
        under_new = {v: n for v, _state, n in status.keks}.get(result.target_kek_version, 0)
        if status.pending_rewrap or under_new != subjects or result.rewrapped != subjects:
            raise RuntimeError(f"rotation incomplete: {status}")
        assert sample is not None
        with db.read() as session:
            SubjectStore(session, Vault.from_settings(bench.settings).keys).open(sample)
    run.peak_rss_mib = peak_rss_mib()
    return run


def explain_plan(db: Database, batch: int) -> str:
    """The query plan of the rewrap batch's SELECT (built as SubjectStore.rewrap_batch builds it)."""
    stmt = (
        select(Subject.id, Subject.key_version, Subject.kek_version, Subject.wrapped_key)
        .where(Subject.wrapped_key.is_not(None), Subject.kek_version != 2)
        .order_by(Subject.id)
        .limit(batch)
    )
    compiled = str(stmt.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        if db.is_sqlite:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled).all()
            return "; ".join(str(row[-1]) for row in rows)
        rows = conn.exec_driver_sql("EXPLAIN " + compiled).all()
        return " → ".join(str(row[0]).strip().split("  (")[0].lstrip("-> ").strip() for row in rows)


def report(runs: list[RotationRun]) -> list[str]:
    rows: list[list[object]] = []
    for r in runs:
        first, last = r.slice_mean(True), r.slice_mean(False)
        rows.append(
            [
                r.backend,
                f"{r.batch:,}",
                f"{r.subjects:,}",
                fmt_rate(r.subjects, r.create_s),
                f"{r.rewrap_s:.2f}",
                f"{r.rotate_wall_s:.2f}",
                fmt_rate(r.rewrapped, r.rewrap_s),
                f"{len(r.batch_seconds)}",
                f"{first * 1000:,.0f} / {last * 1000:,.0f}",
                f"{last / first:.1f}x" if first else "n/a",
            ]
        )
    print_table(
        "KEK rotation (rotate(batch_size=B, retire_old=True, settle_seconds=0))",
        [
            "backend",
            "batch",
            "subjects",
            "create subj/s",
            "rewrap s",
            "rotate() wall s",
            "keys rewrapped/s",
            "batches",
            "ms/batch first 10% / last 10%",
            "last/first",
        ],
        rows,
    )

    extra_rows: list[list[object]] = []
    verdicts: list[str] = []
    for r in runs:
        c, k = r.fit()
        linear, fitted = r.extrapolate(TARGET_SUBJECTS)
        ok = "meets" if fitted < TARGET_SECONDS else "MISSES"
        extra_rows.append(
            [
                r.backend,
                f"{r.batch:,}",
                (
                    f"{c * 1000:,.1f} ms + {k * 1e6:,.2f} ms per 1k done"
                    if len(r.batch_seconds) >= MIN_BATCHES_TO_FIT
                    else f"{c * 1000:,.1f} ms (too few batches to fit a trend)"
                ),
                f"{linear:,.0f}",
                f"{fitted:,.0f}",
                f"{ok} (<{TARGET_SECONDS:.0f} s)",
            ]
        )
        verdicts.append(
            f"{r.backend} B={r.batch:,}: {fmt_rate(r.rewrapped, r.rewrap_s)} keys/s, "
            f"1M ≈ {fitted:,.0f} s ({ok} <{TARGET_SECONDS:.0f} s"
            + ("" if len(r.batch_seconds) >= MIN_BATCHES_TO_FIT else "; linear only: too few batches to fit")
            + ")"
        )
    print_table(
        f"Extrapolated to {TARGET_SUBJECTS:,} subjects (linear = measured time scaled; "
        "fitted = per-batch cost c + k·rows-already-done, summed)",
        ["backend", "batch", "fitted batch cost", "linear s", "fitted s", "target"],
        extra_rows,
    )
    print_table(
        "Rewrap batch SELECT plan (after the load)",
        ["backend", "batch", "plan"],
        [[r.backend, f"{r.batch:,}", r.plan] for r in runs],
        left=3,
    )
    console.print(
        "peak RSS per run (each in its own process): "
        + ", ".join(f"{r.backend} B={r.batch:,}: {r.peak_rss_mib:,.0f} MiB" for r in runs)
    )
    return verdicts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.key_rotation", description=__doc__)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--batch", default="1000,5000")
    args = parser.parse_args(argv)
    if args.subjects < 1:
        parser.error("--subjects must be positive")
    backends = parse_backends(args.backends)
    batches = parse_ints(args.batch, "--batch")

    Header(
        "cdp KEK rotation",
        {
            "subjects": f"{args.subjects:,}",
            "backends": ",".join(backends),
            "batch sizes": ",".join(f"{b:,}" for b in batches),
            "team target": f"< {TARGET_SECONDS:.0f} s for {TARGET_SUBJECTS:,} subjects",
        },
    ).print(backends)
    runs = [run_isolated(run_one, backend, args.subjects, b) for backend in backends for b in batches]
    verdicts = report(runs)
    console.print(
        "[bold]Key ratios:[/bold] " + "; ".join(verdicts) + f"  (load average at end: {load_average()})"
    )


if __name__ == "__main__":
    main()
