"""Statements compiled once and run on the DBAPI cursor, for the few writes whose SQLAlchemy per-execution
machinery costs more than the database work (the audit append on every request, the sequencer's seal).

The SQL is SQLAlchemy's own compilation for the dialect and the parameters pass through the columns' own
bind processors, so the driver receives exactly what ``Connection.execute`` would have sent it — still
parameterized, never formatted into the SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class DriverStatement:
    """``statement`` compiled for ``dialect``; :meth:`parameters` converts one row of named values."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None):
        compiled = statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
        )
        assert isinstance(compiled, SQLCompiler), "DML and queries compile to a SQLCompiler"
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        self._converters: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        # Values the statement carries itself (a LIMIT, a literal compared against): used unless given.
        self._carried: dict[str, Any] = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.effective_value is not None
        }
        selected = getattr(statement, "selected_columns", None)
        self.result_keys: tuple[str, ...] = tuple(selected.keys()) if selected is not None else ()
        self._result_processors: list[Callable[[Any], Any] | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in (selected or ())
        ]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for one execution: a tuple (positional styles) or a dict."""
        if self._carried:
            values = {**self._carried, **values}
        converted = [
            (name, convert(values[name]) if convert is not None else values[name])
            for name, convert in self._converters
        ]
        if self.positional:
            return tuple(value for _, value in converted)
        return dict(converted)

    def first(self, cursor: Any, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run a query on ``cursor`` and return its first row as the driver gave it (no result processing:
        for callers that read presence, truth or plain integers and strings)."""
        cursor.execute(self.sql, self.parameters(values))
        row = cursor.fetchone()
        return None if row is None else tuple(row)

    def mappings(self, cursor: Any, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a query on ``cursor`` and return its rows keyed by column, each value through its type's
        result processor (what SQLAlchemy's ``.mappings()`` would have returned)."""
        cursor.execute(self.sql, self.parameters(values))
        keys, processors = self.result_keys, self._result_processors
        return [
            {
                key: (process(value) if process is not None else value)
                for key, process, value in zip(keys, processors, row, strict=True)
            }
            for row in cursor.fetchall()
        ]


@contextmanager
def dbapi_cursor(connection: Connection) -> Iterator[Any]:
    """A DBAPI cursor on ``connection``'s own transaction, closed on the way out."""
    cursor = connection.connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


class DriverStatements:
    """One :class:`DriverStatement` per dialect, built on first use (a process may open both back ends)."""

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = column_keys
        self._compiled: dict[str, DriverStatement] = {}

    def for_dialect(self, dialect: Dialect) -> DriverStatement:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = DriverStatement(self._statement, dialect, self._column_keys)
            self._compiled[dialect.name] = found
        return found
