"""Shared helpers for the benchmarks: throw-away platforms, timing, machine facts and table printing.

Every platform made here lives in its own temporary directory (SQLite file, key file) and, on
PostgreSQL, its own ``bench_<random>`` schema, all removed on the way out even when the run fails.
"""

from __future__ import annotations

import multiprocessing
import os
import platform as pyplatform
import resource
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import make_url, text

from cdp.config import Settings
from cdp.platform import Platform
from cdp.vault.keyring import FileKeyring

POSTGRES_URL = os.environ.get("CDP_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")
SIZE_TABLES = ("source_record", "subject", "blind_index")

T = TypeVar("T")

console = Console(highlight=False, width=150)


def parse_backends(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise SystemExit(f"--backends takes a comma-separated subset of {','.join(BACKENDS)}")
    return names


def parse_ints(raw: str, what: str) -> list[int]:
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"{what} takes comma-separated positive integers") from None
    if not values or any(v < 1 for v in values):
        raise SystemExit(f"{what} takes comma-separated positive integers")
    return values


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class BenchPlatform:
    """A migrated platform plus what the benchmark needs to measure and re-open it."""

    backend: str
    platform: Platform
    settings: Settings
    workdir: Path
    schema: str | None = None

    @property
    def sqlite_path(self) -> Path:
        database = make_url(self.settings.database_url).database
        assert database
        return Path(database)

    def settle(self) -> None:
        """Bring the database to a steady state after a bulk load, outside any timing: VACUUM ANALYZE on
        PostgreSQL (else the first reader pays for hint bits and autovacuum competes for the CPUs), a WAL
        checkpoint on SQLite."""
        db = self.platform.db
        with db.engine.connect() as conn:
            if db.is_sqlite:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                return
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in SIZE_TABLES:
                autocommit.exec_driver_sql(f"VACUUM (ANALYZE) {table}")

    def db_size_bytes(self) -> dict[str, int]:
        """Bytes on disk: per table on PostgreSQL (heap + indexes + TOAST), the whole file on SQLite
        (after a WAL checkpoint, so the figure is the database and not the log)."""
        db = self.platform.db
        if db.is_sqlite:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            path = self.sqlite_path
            total = path.stat().st_size
            wal = path.with_name(path.name + "-wal")
            if wal.exists():
                total += wal.stat().st_size
            return {"file": total}
        sizes: dict[str, int] = {}
        with db.engine.connect() as conn:
            for table in SIZE_TABLES:
                sizes[table] = int(
                    conn.execute(
                        text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
                    ).scalar_one()
                )
        return sizes


@contextmanager
def temp_platform(backend: str, label: str = "bench") -> Iterator[BenchPlatform]:
    """A fresh, migrated platform on ``backend`` with its own key file; everything is removed after."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    with tempfile.TemporaryDirectory(prefix=f"cdp-{label}-") as tmp:
        workdir = Path(tmp)
        keyring_path = workdir / "keys" / "keyring.json"
        FileKeyring.create(keyring_path)
        schema: str | None = None
        dsn = _libpq_dsn(POSTGRES_URL)
        if backend == "postgres":
            schema = f"bench_{uuid.uuid4().hex[:16]}"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            separator = "&" if "?" in POSTGRES_URL else "?"
            url = f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
        else:
            url = f"sqlite:///{workdir / 'data' / 'cdp.db'}"
        try:
            settings = Settings(data_dir=workdir, database_url=url, keyring=f"file:{keyring_path}")
            opened, created = Platform.initialize(settings)
            assert not created, "the key file made above should have been used"
            try:
                yield BenchPlatform(backend, opened, settings, workdir, schema)
            finally:
                opened.close()
        finally:
            if schema is not None:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Stopwatch:
    """Accumulates the time spent inside ``with watch:`` blocks (so setup in between is not counted)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._started


def run_isolated(func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` in a fresh spawned interpreter and return its (picklable) result, so each run
    starts from a clean heap: per-run peak RSS means something, and caches or freed-but-kept memory of one
    run cannot flatter or burden the next. Exceptions propagate."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, args)


def current_rss_mib() -> float:
    """The process's resident set size right now (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def peak_rss_mib() -> float:
    """This process's peak resident set size since it started its program (a high-water mark).

    ``VmHWM`` from ``/proc/self/status``, not ``getrusage().ru_maxrss``: Linux carries the latter over
    ``execve``, so a worker spawned by a parent that peaked at 300 MiB would report at least 300 MiB
    whatever it does itself. ``ru_maxrss`` only where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def mib(n_bytes: float) -> str:
    return f"{n_bytes / (1024 * 1024):,.1f} MiB"


def postgres_version() -> str:
    try:
        with psycopg.connect(_libpq_dsn(POSTGRES_URL), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('shared_buffers', 'synchronous_commit', 'fsync')"
                ).fetchall()
            )
    except psycopg.Error as exc:
        return f"unavailable ({str(exc).splitlines()[0]})"
    buffers = int(settings.get("shared_buffers", "0")) * 8 // 1024
    return (
        f"{row[0] if row else '?'} (shared_buffers={buffers} MiB, "
        f"synchronous_commit={settings.get('synchronous_commit')}, fsync={settings.get('fsync')})"
    )


@dataclass
class Header:
    title: str
    params: dict[str, Any] = field(default_factory=dict)

    def print(self, backends: Sequence[str]) -> None:
        console.rule(f"[bold]{self.title}")
        facts = {
            "cpus": f"{os.cpu_count()} ({_cpu_model()})",
            "python": f"{pyplatform.python_version()} ({pyplatform.python_implementation()})",
            "sqlite": sqlite3.sqlite_version,
        }
        if "postgres" in backends:
            facts["postgresql"] = postgres_version()
        facts["temp dir"] = tempfile.gettempdir()
        facts["load average"] = load_average() + "  (other work on these cores skews every figure)"
        facts.update({k: str(v) for k, v in self.params.items()})
        width = max(len(k) for k in facts)
        for key, value in facts.items():
            console.print(f"  {key:<{width}}  {value}")


def load_average() -> str:
    """1/5/15-minute load averages: with 2 cores, anything else running shows up in every figure."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return pyplatform.machine()


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], *, left: int = 2
) -> None:
    """A rich table; the first ``left`` columns are labels (left-aligned), the rest figures. A cell too
    wide for its column wraps instead of being cut with an ellipsis: a figure must never be lost from a
    log."""
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < left else "right", overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def fmt_rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "∞"
