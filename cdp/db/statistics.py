"""Fresh planner statistics on PostgreSQL during bulk loads, whether or not autovacuum keeps up.

Without statistics PostgreSQL's planner guessed the blind-index look-ups of an ingest at thousands of rows
and scanned the whole table for each: at 160k records of a 1M-record load, 331 sequential scans had read
373M rows and not one look-up had used the index (the local server runs with autovacuum off; with it on,
its analyze still lags a bulk load). After one ``ANALYZE`` the look-ups went to the index at once.
:func:`refresh_if_stale` applies autovacuum's own rule — analyze a table once the rows changed since its
last analyze exceed a share of its size — from the loader itself, after each committed chunk.
"""

from __future__ import annotations

from cdp.db import Database
from cdp.db.models import Base

MIN_CHANGED = 5_000
SHARE_CHANGED = 0.2

_STALE = """
SELECT relname FROM pg_stat_user_tables
WHERE schemaname = current_schema()
  AND n_mod_since_analyze >= %(min_changed)s
  AND n_mod_since_analyze >= %(share)s * GREATEST(n_live_tup, 1)
ORDER BY relname
"""


def refresh_if_stale(db: Database) -> list[str]:
    """ANALYZE every cdp table whose statistics are stale (PostgreSQL; a no-op on SQLite, whose planner
    uses the indexes without statistics). Returns the tables analyzed.

    Every table, not a list of "hot" ones: a list missed the interaction and consent-event tables, whose
    batched look-ups (``natural_key IN (…500 keys)``) a planner without statistics estimates to match
    every row — a 1M-record load then read each source's whole interaction index per chunk and fell from
    2,285 to 542 interactions/s within 200k."""
    if db.is_sqlite:
        return []
    ours = Base.metadata.tables
    with db.engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        found = autocommit.exec_driver_sql(_STALE, {"min_changed": MIN_CHANGED, "share": SHARE_CHANGED})
        # Only names of cdp's own tables are ever put into the statement (identifiers cannot be bound).
        stale = [str(name) for (name,) in found.all() if name in ours]
        for name in stale:
            autocommit.exec_driver_sql(f'ANALYZE "{name}"')
    return stale
