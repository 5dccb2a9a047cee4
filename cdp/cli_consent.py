"""`cdp consent ...`: the purposes catalog, a customer's consent state and history, recording what a
customer said (grant, withdraw) on their behalf, and per-purpose counts.

Events are appended, never changed: there is no command that edits or deletes one. Each is recorded as
the operator (``operator:<OS user>``) and audited (``consent.record``) in the transaction that appends it;
``show`` and ``history`` record ``consent.read`` with the customer's and records' ids, ``counts``
``consent.counts``. Nothing printed or recorded here holds a value from a customer's record.

Imported by :mod:`cdp.cli` (which registers :data:`consent`); it imports the CLI's helpers only inside
the commands, so either module can be imported first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cdp.errors import CdpError

if TYPE_CHECKING:
    from cdp.cli import _State
    from cdp.consent.ledger import ConsentLedger
    from cdp.platform import Platform

DEFAULT_SOURCE = "call_centre"


@contextmanager
def _opened(state: _State) -> Iterator[Platform]:
    from cdp.cli import _platform

    with _platform(state) as platform:
        yield platform


def _ledger(platform: Platform) -> ConsentLedger:
    from cdp.consent.ledger import ConsentLedger

    return ConsentLedger(platform.db)


def _print(text: str) -> None:
    from cdp.cli import out

    out.print(text, markup=False, highlight=False)


def _table(table: Table) -> None:
    from cdp.cli import _print_table

    _print_table(table)


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CdpError(f"{what} must be an id (UUID)") from None


def _time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CdpError(f"{what}: not an ISO-8601 date and time") from None
    if parsed.tzinfo is None:
        raise CdpError(f"{what}: give a time zone (e.g. 2026-01-31T00:00:00+00:00)")
    return parsed


def _members(platform: Platform, customer_id: uuid.UUID) -> list[uuid.UUID]:
    """The customer's records, most recently updated first; refuses an unknown customer."""
    from cdp.consent.ledger import entity_records

    with platform.db.read() as session:
        members = entity_records(session, customer_id)
    if not members:
        raise CdpError(f"no such customer {customer_id}")
    return members


def _operator() -> str:
    from cdp.audit.context import current_actor

    return current_actor().principal


@click.group()
def consent() -> None:
    """Consent: the purposes catalog, customers' consent events, what holds now."""


@consent.command("purposes")
def consent_purposes() -> None:
    """The purposes catalog: lawful basis, text version, channels and the reads each governs."""
    from cdp.cli import _cell
    from cdp.consent.catalog import ConsentCatalog

    catalog = ConsentCatalog.default()
    table = Table(title=f"consent purposes (catalog v{catalog.version})")
    for column in ("purpose", "lawful basis", "text", "channels", "governs reads for", "description"):
        table.add_column(column)
    for purpose in catalog.purposes.values():
        table.add_row(
            _cell(purpose.name),
            _cell(purpose.lawful_basis.value),
            _cell(f"v{purpose.text_version}"),
            _cell(", ".join(purpose.channels)),
            _cell(", ".join(purpose.read_purposes) or "-"),
            _cell(purpose.description),
        )
    _table(table)
    _print(f"sources: {', '.join(catalog.sources)}")


def _event_options(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        (
            click.argument("customer"),
            click.argument("purpose"),
            click.option("--channel", required=True, help="One of the purpose's channels."),
            click.option(
                "--source",
                default=DEFAULT_SOURCE,
                show_default=True,
                help="How the customer said it (privacy_center, call_centre, web_form, import, api).",
            ),
            click.option(
                "--record",
                "record",
                default=None,
                metavar="RECORD_ID",
                help="The customer's record it came through (default: their most recently updated).",
            ),
            click.option(
                "--at",
                "occurred_at",
                default=None,
                metavar="ISO",
                help="When the customer said it, with a time zone (default: now).",
            ),
        )
    ):
        command = option(command)
    return command


def _append(
    state: _State,
    customer: str,
    purpose: str,
    channel: str,
    action: str,
    source: str,
    record: str | None,
    occurred_at: str | None,
    expires_at: str | None = None,
) -> None:
    from cdp.cli import _audited

    customer_id = _uuid(customer, "CUSTOMER")
    occurred = _time(occurred_at, "--at")
    expires = _time(expires_at, "--expires")
    with _opened(state) as platform, _audited(platform, "consent.record"):
        members = _members(platform, customer_id)
        record_id = _uuid(record, "--record") if record is not None else members[0]
        if record_id not in members:
            raise CdpError(f"record {record_id} is not one of customer {customer_id}'s records")
        ledger = _ledger(platform)
        with platform.db.transaction() as session:
            event = ledger.record(
                session,
                record_id,
                purpose,
                channel,
                action,
                source,
                occurred_at=occurred,
                expires_at=expires,
                actor=_operator(),
            )
        holds = ledger.state(customer_id)[purpose].holds
    _print(f"recorded {event.action} of {event.purpose} ({event.channel}) as event {event.id}")
    _print(f"record {event.record_id}, text v{event.purpose_version}, source {event.source}")
    _print(f"{purpose} now {'holds' if holds else 'does not hold'} for customer {customer_id}")


@consent.command("grant")
@_event_options
@click.option("--expires", "expires_at", default=None, metavar="ISO", help="When the grant ends (time zone).")
@click.pass_obj
def consent_grant(
    state: _State,
    customer: str,
    purpose: str,
    channel: str,
    source: str,
    record: str | None,
    occurred_at: str | None,
    expires_at: str | None,
) -> None:
    """Record that CUSTOMER agreed to PURPOSE on a channel (appended; takes effect on the next read)."""
    _append(state, customer, purpose, channel, "grant", source, record, occurred_at, expires_at)


@consent.command("withdraw")
@_event_options
@click.pass_obj
def consent_withdraw(
    state: _State,
    customer: str,
    purpose: str,
    channel: str,
    source: str,
    record: str | None,
    occurred_at: str | None,
) -> None:
    """Record that CUSTOMER withdrew PURPOSE on a channel (takes effect on the next read)."""
    _append(state, customer, purpose, channel, "withdraw", source, record, occurred_at)


def _audit_read(platform: Platform, customer_id: uuid.UUID, members: list[uuid.UUID], events: int) -> None:
    from cdp.audit import AuditEvent, record_now

    record_now(
        platform.db,
        AuditEvent(
            "consent.read",
            subjects=(str(customer_id), *(str(m) for m in members)),
            details={"events": events},
        ),
    )


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@consent.command("show")
@click.argument("customer")
@click.pass_obj
def consent_show(state: _State, customer: str) -> None:
    """What holds now for CUSTOMER: every purpose and channel, its status, since when and from where."""
    from cdp.cli import _audited, _cell

    customer_id = _uuid(customer, "CUSTOMER")
    with _opened(state) as platform, _audited(platform, "consent.read"):
        members = _members(platform, customer_id)
        ledger = _ledger(platform)
        states = ledger.state(customer_id)
        events = len(ledger.history(customer_id))
        _audit_read(platform, customer_id, members, events)
    table = Table(title=f"consent of customer {customer_id}")
    for column in ("purpose", "basis", "holds", "channel", "status", "since", "expires", "text", "source"):
        table.add_column(column)
    for purpose in states.values():
        for index, channel in enumerate(purpose.channels):
            first = index == 0
            table.add_row(
                _cell(purpose.purpose if first else ""),
                _cell(purpose.lawful_basis.value if first else ""),
                _cell(("yes" if purpose.holds else "no") if first else ""),
                _cell(channel.channel),
                _cell(channel.status.value),
                _cell(_when(channel.since)),
                _cell(_when(channel.expires_at)),
                _cell(f"v{channel.purpose_version}" if channel.purpose_version else "-"),
                _cell(channel.source or "-"),
            )
    _table(table)
    _print(f"{events} event(s) from {len(members)} record(s)")


@consent.command("history")
@click.argument("customer")
@click.pass_obj
def consent_history(state: _State, customer: str) -> None:
    """Every consent event of CUSTOMER's records, oldest first."""
    from cdp.cli import _audited, _cell

    customer_id = _uuid(customer, "CUSTOMER")
    with _opened(state) as platform, _audited(platform, "consent.read"):
        members = _members(platform, customer_id)
        history = _ledger(platform).history(customer_id)
        _audit_read(platform, customer_id, members, len(history))
    table = Table(title=f"consent history of customer {customer_id}")
    columns = (
        "occurred",
        "purpose",
        "channel",
        "action",
        "text",
        "source",
        "expires",
        "record",
        "by",
        "event",
    )
    for column in columns:
        table.add_column(column)
    for event in history:
        table.add_row(
            _cell(_when(event.occurred_at)),
            _cell(event.purpose),
            _cell(event.channel),
            _cell(event.action),
            _cell(f"v{event.purpose_version}"),
            _cell(event.source),
            _cell(_when(event.expires_at)),
            _cell(event.record_id),
            _cell(event.actor),
            _cell(event.id),
        )
    _table(table)
    _print(f"{len(history)} event(s)")


@consent.command("counts")
@click.pass_obj
def consent_counts(state: _State) -> None:
    """Per purpose: customers it holds for, and customers who granted, withdrew or let it expire."""
    from cdp.audit import AuditEvent, record_now
    from cdp.cli import _audited, _cell

    with _opened(state) as platform, _audited(platform, "consent.counts"):
        ledger = _ledger(platform)
        counts = ledger.counts()
        record_now(platform.db, AuditEvent("consent.counts", details={"purposes": len(counts)}))
    table = Table(title="consent by purpose (customers)")
    for column in ("purpose", "basis", "holds", "granted", "withdrawn", "expired"):
        table.add_column(column, justify="left" if column in ("purpose", "basis") else "right")
    for name, values in counts.items():
        table.add_row(
            _cell(name),
            _cell(ledger.catalog.purposes[name].lawful_basis.value),
            *(_cell(f"{values[key]:,}") for key in ("holds", "granted", "withdrawn", "expired")),
        )
    _table(table)
