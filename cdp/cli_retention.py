"""`cdp retention ...`: run the retention sweep by hand, read the policy and past sweeps, and place or
release legal holds.

The sweep is the one the scheduler runs (``retention_sweep_cron``): leased, in batches, resumable, ending
in a signed destruction certificate (`cdp receipts show ID`). Only one sweep runs at a time; when another
process holds the lease this command says so and exits with status **3**, so a script can tell "try again
later" from a failure (status 2, one ``error:`` line).

Holds, releases and sweeps are recorded as the operator (``operator:<OS user>``) by the services, in the
transactions that make them; reads record ``retention.read``. A hold's reason is a case number or a
reference, never personal data.

Imported by :mod:`cdp.cli` (which registers :data:`retention`); it imports the CLI's helpers only inside
functions, so either module can be imported first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table

from cdp.cli_dsr import (
    audited,
    cell,
    emit_json,
    key_value_table,
    opened,
    operator,
    parse_id,
    record_read,
    say,
    show_table,
    when,
)

if TYPE_CHECKING:
    from cdp.cli import _State
    from cdp.platform import Platform
    from cdp.retention.holds import HoldView
    from cdp.retention.policy import RetentionPolicy
    from cdp.retention.sweep import SweepReport

EXIT_SWEEP_BUSY = 3
"""`cdp retention run` when another process is sweeping: nothing was done, try again later."""

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _policy(platform: Platform) -> RetentionPolicy:
    from cdp.retention.policy import RetentionPolicy

    return RetentionPolicy.load(platform.settings.retention_policy_file)


@click.group()
def retention() -> None:
    """Retention: the policy, the sweep that destroys what is past it (exit status 3 when another sweep
    is running), and legal holds that keep data from any destruction."""


# -- the sweep ----------------------------------------------------------------------------------------


def _summary(report: SweepReport, policy: RetentionPolicy) -> tuple[Table, Table]:
    verb = "to destroy" if report.dry_run else "destroyed"
    by_category = Table(
        title="retention sweep (dry run: nothing destroyed)" if report.dry_run else "retention sweep"
    )
    for column in ("category", "line of business", "keep", verb, "held"):
        by_category.add_column(column, justify="right" if column in (verb, "held") else "left")
    for category in policy.categories:
        by_category.add_row(
            cell(category.name),
            cell(category.line_of_business),
            f"{category.keep} after {category.anchor.replace('_', ' ')}",
            f"{report.expired.get(category.name, 0):,}",
            f"{report.held.get(category.name, 0):,}",
        )
    destroyed = report.destroyed
    rows: list[tuple[str, object]] = [
        (f"records {verb}", f"{sum(report.expired.values()):,}"),
        ("records kept under legal hold", f"{sum(report.held.values()):,}"),
        (f"retained documents {verb} (obligation ran out)", f"{report.retained_destroyed:,}"),
        (f"quarantined rows {verb}", f"{report.operational_destroyed.get('quarantined_rows', 0):,}"),
        (f"outbox messages {verb}", f"{report.operational_destroyed.get('outbox_messages', 0):,}"),
    ]
    if not report.dry_run:
        rows += [
            ("data keys shredded", f"{destroyed.subjects_shredded:,}"),
            ("interactions destroyed", f"{destroyed.interactions:,}"),
            ("customers removed", f"{destroyed.entities_removed:,}"),
            ("documents kept pseudonymized", f"{destroyed.retained:,}"),
            (
                "batches",
                f"{report.batches:,}" + (" (resumed an interrupted sweep)" if report.resumed else ""),
            ),
        ]
    rows += [
        ("cut-off time", report.as_of.isoformat(timespec="seconds")),
        ("policy version", report.policy_version),
        ("seconds", f"{report.seconds:.2f}"),
    ]
    if report.sweep_id is not None:
        rows.append(("sweep", report.sweep_id))
    if report.certificate is not None:
        rows.append(("certificate", report.certificate.id))
    return by_category, key_value_table("totals", rows)


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Count what has expired; destroy nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Records destroyed per transaction.",
)
@_JSON
@click.pass_obj
@click.pass_context
def retention_run(ctx: click.Context, state: _State, dry_run: bool, batch_size: int, as_json: bool) -> None:
    """Destroy every record past its category's retention period (legal holds excepted) and sign a
    destruction certificate. Re-run to resume an interrupted sweep; exit status 3 if another process is
    sweeping right now."""
    from cdp.cli import _progress, err
    from cdp.retention.sweep import RetentionSweeper, SweepBusy

    with opened(state) as platform:
        try:
            with audited(platform, "retention.sweep"):
                policy = _policy(platform)
                sweeper = RetentionSweeper(platform.db, platform.vault, policy, batch_size=batch_size)
                if dry_run:
                    report = sweeper.run(dry_run=True)
                else:
                    with _progress() as progress:
                        task = progress.add_task("destroying expired records", total=None)
                        report = sweeper.run(progress=lambda done: progress.advance(task, done))
        except SweepBusy as exc:
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            ctx.exit(EXIT_SWEEP_BUSY)
    if as_json:
        emit_json(report.to_dict())
        return
    by_category, totals = _summary(report, policy)
    show_table(by_category)
    show_table(totals)
    if report.certificate is not None:
        say(
            f"destruction certificate {report.certificate.id}: `cdp receipts show "
            f"{report.certificate.id} --json` exports it"
        )


@retention.command("sweeps")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@_JSON
@click.pass_obj
def retention_sweeps(state: _State, limit: int, as_json: bool) -> None:
    """Past and running sweeps, newest first: cut-off, counts and certificate."""
    from cdp.retention.sweep import RetentionSweeper

    with opened(state) as platform, audited(platform, "retention.read"):
        sweeps = RetentionSweeper(platform.db, platform.vault, _policy(platform)).sweeps(limit)
        record_read(platform, "retention.read", sweeps=len(sweeps))
    if as_json:
        emit_json(sweeps)
        return
    if not sweeps:
        say("no sweep has run yet")
        return
    table = Table(title=f"retention sweeps ({len(sweeps)}, newest first)")
    for column in ("sweep", "status", "policy", "cut-off", "started", "finished", "records", "certificate"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for sweep in sweeps:
        counts = sweep["counts"]
        table.add_row(
            cell(sweep["id"]),
            cell(sweep["status"]),
            f"v{sweep['policy_version']}",
            cell(sweep["as_of"][:16].replace("T", " ")),
            cell(sweep["started_at"][:16].replace("T", " ")),
            cell((sweep["finished_at"] or "-")[:16].replace("T", " ")),
            f"{int(counts.get('records', 0)):,}",
            cell(sweep["certificate_id"] or "-"),
        )
    show_table(table)


# -- the policy ---------------------------------------------------------------------------------------


@retention.command("policy")
@_JSON
@click.pass_obj
def retention_policy(state: _State, as_json: bool) -> None:
    """The retention policy this installation applies: categories, legal obligations, version and
    SHA-256 — and whether that version is the one in force."""
    from cdp.db.models import RetentionPolicyVersion

    with opened(state) as platform, audited(platform, "retention.read"):
        policy = _policy(platform)
        with platform.db.read() as session:
            stored = session.get(RetentionPolicyVersion, policy.version)
            applied = (stored.digest, stored.activated_at) if stored is not None else None
        record_read(platform, "retention.read", policy_version=policy.version)
    source = str(platform.settings.retention_policy_file or "packaged cdp/retention/policies.toml")
    if applied is None:
        status = "not applied yet: the next sweep records it"
    elif applied[0] == policy.digest:
        status = f"in force since {when(applied[1])} UTC"
    else:
        status = (
            f"CHANGED: version {policy.version} in force has sha256 {applied[0]}; sweeps refuse this text "
            "until it gets a new version"
        )
    if as_json:
        emit_json(
            {
                **policy.to_dict(),
                "source": source,
                "status": status,
            }
        )
        return
    categories = Table(title=f"retention policy v{policy.version}: categories")
    for column in ("category", "line of business", "keep", "after", "description"):
        categories.add_column(column)
    for c in policy.categories:
        categories.add_row(
            cell(c.name),
            cell(c.line_of_business),
            str(c.keep),
            c.anchor.replace("_", " "),
            cell(c.description),
        )
    show_table(categories)
    if policy.obligations:
        obligations = Table(title="legal obligations: kept pseudonymized after an erasure")
        for column in ("obligation", "line of business", "documents", "keep", "basis"):
            obligations.add_column(column)
        for o in policy.obligations:
            obligations.add_row(
                cell(o.name),
                cell(o.line_of_business),
                cell(", ".join(o.interaction_kinds)),
                str(o.keep),
                cell(o.basis),
            )
        show_table(obligations)
    say(f"version {policy.version}, sha256 {policy.digest}")
    say(f"from {source}; {status}")


# -- legal holds --------------------------------------------------------------------------------------


def _hold_status(hold: HoldView) -> str:
    if hold.active:
        return "active"
    return f"released {when(hold.released_at)} by {hold.released_by}"


@retention.command("hold")
@click.option("--customer", default=None, metavar="UUID", help="Hold every record of this customer.")
@click.option("--record", default=None, metavar="UUID", help="Hold this one record.")
@click.option(
    "--reason", required=True, help="3 to 300 characters: a case number or reference, never personal data."
)
@click.pass_obj
def retention_hold(state: _State, customer: str | None, record: str | None, reason: str) -> None:
    """Place a legal hold: nothing it covers is destroyed — by the sweep or an erasure — until it is
    released. A customer's hold covers the records they have now."""
    from cdp.retention.holds import LegalHolds

    if (customer is None) == (record is None):
        raise click.UsageError("give exactly one of --customer and --record")
    customer_id = parse_id(customer, "--customer") if customer else None
    record_id = parse_id(record, "--record") if record else None
    target = str(customer_id or record_id)
    with (
        opened(state) as platform,
        audited(platform, "retention.hold", (target,)),
        platform.db.transaction() as session,
    ):
        holds = LegalHolds(session).place(
            reason=reason, actor=operator(), entity_id=customer_id, record_id=record_id
        )
    what = f"customer {customer_id}" if customer_id else f"record {record_id}"
    say(f"placed {len(holds)} legal hold(s) on {what}; nothing they cover is destroyed until released")
    table = Table(title="legal holds placed")
    table.add_column("hold")
    table.add_column("record")
    for hold in holds:
        table.add_row(cell(hold.id), cell(hold.record_id))
    show_table(table)


@retention.command("release")
@click.argument("hold")
@click.option("--reason", required=True, help="3 to 300 characters: why the hold ends (a reference).")
@click.pass_obj
def retention_release(state: _State, hold: str, reason: str) -> None:
    """Release a legal hold: the record is again subject to the sweep and to erasure requests."""
    from cdp.retention.holds import LegalHolds

    hold_id = parse_id(hold, "HOLD_ID")
    with (
        opened(state) as platform,
        audited(platform, "retention.release", (str(hold_id),)),
        platform.db.transaction() as session,
    ):
        released = LegalHolds(session).release(hold_id, reason=reason, actor=operator())
    customer = f" (customer {released.entity_id})" if released.entity_id else ""
    say(f"released legal hold {released.id} on record {released.record_id}{customer}")


@retention.command("holds")
@click.option("--customer", default=None, metavar="UUID", help="Only this customer's holds.")
@click.option("--all", "include_released", is_flag=True, help="Released holds too.")
@click.option("--limit", type=click.IntRange(1, 1000), default=200, show_default=True)
@_JSON
@click.pass_obj
def retention_holds(
    state: _State, customer: str | None, include_released: bool, limit: int, as_json: bool
) -> None:
    """Legal holds, newest first: what each keeps, why, and who placed (and released) it."""
    from cdp.retention.holds import LegalHolds

    customer_id = parse_id(customer, "--customer") if customer else None
    subjects = (str(customer_id),) if customer_id else ()
    with opened(state) as platform, audited(platform, "retention.read", subjects):
        with platform.db.read() as session:
            holds = LegalHolds(session).search(
                entity_id=customer_id, active_only=not include_released, limit=limit
            )
        record_read(platform, "retention.read", subjects=subjects, holds=len(holds))
    if as_json:
        emit_json([hold.to_dict() for hold in holds])
        return
    if not holds:
        say("no legal holds" if include_released else "no active legal holds")
        return
    title = "legal holds" if include_released else "active legal holds"
    table = Table(title=f"{title} ({len(holds)}, newest first)")
    for column in ("hold", "customer", "record", "reason", "placed by", "placed", "status"):
        table.add_column(column)
    for hold in holds:
        table.add_row(
            cell(hold.id),
            cell(hold.entity_id or "-"),
            cell(hold.record_id),
            cell(hold.reason),
            cell(hold.created_by),
            when(hold.created_at),
            cell(_hold_status(hold)),
        )
    show_table(table)
