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

HOT_TABLES = ("blind_index", "source_record", "subject", "entity", "entity_member", "match_edge")
"""The tables a load grows and its look-ups read."""
MIN_CHANGED = 5_000
SHARE_CHANGED = 0.2

_STALE = """
SELECT relname FROM pg_stat_user_tables
WHERE schemaname = current_schema() AND relname = ANY(%(names)s)
  AND n_mod_since_analyze >= %(min_changed)s
  AND n_mod_since_analyze >= %(share)s * GREATEST(n_live_tup, 1)
"""


def refresh_if_stale(db: Database) -> list[str]:
    """ANALYZE the hot tables whose statistics are stale (PostgreSQL; a no-op on SQLite, whose planner
    uses the indexes without statistics). Returns the tables analyzed."""
    if db.is_sqlite:
        return []
    with db.engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        stale = [
            str(name)
            for (name,) in autocommit.exec_driver_sql(
                _STALE, {"names": list(HOT_TABLES), "min_changed": MIN_CHANGED, "share": SHARE_CHANGED}
            ).all()
        ]
        for name in stale:
            if name in HOT_TABLES:  # identifiers come from the fixed list above, never from input
                autocommit.exec_driver_sql(f'ANALYZE "{name}"')
    return stale
