"""`cdp audit ...`: seal and sign the audit chain, verify it, export signed slices for third parties, check
such a slice offline, rotate the checkpoint key and prune past retention.

This module is imported by :mod:`cdp.cli` (which registers :data:`audit`) and imports the CLI's helpers
only inside the commands, so either module can be imported first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from cdp.audit import offline

if TYPE_CHECKING:
    from cdp.audit.service import AuditService
    from cdp.cli import _State
    from cdp.platform import Platform

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def _opened(state: _State) -> Iterator[Platform]:
    from cdp.cli import _platform

    with _platform(state) as platform:
        yield platform


def _service(platform: Platform) -> AuditService:
    from cdp.audit.service import AuditService

    return AuditService(platform.db, platform.vault, platform.settings.issuer)


def _public_keys(values: tuple[str, ...]) -> dict[str, str]:
    """``--public-key`` values by key id; rejects anything but a raw Ed25519 key in hex."""
    keys: dict[str, str] = {}
    for value in values:
        key = value.strip().lower()
        try:
            valid = len(bytes.fromhex(key)) == 32
        except ValueError:
            valid = False
        if not valid:
            raise click.BadParameter("a public key is 64 hex digits (see `cdp audit public-key`)")
        keys[offline.key_id_of(key)] = key
    return keys


_PUBLIC_KEY = click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="HEX",
    help="Trust only this checkpoint key (repeat for several), obtained out of band.",
)


@click.group()
def audit() -> None:
    """The tamper-evident audit log: seal, verify, export for third parties, prune."""


@audit.command("seal")
@click.pass_obj
def audit_seal(state: _State) -> None:
    """Link every pending entry into the hash chain, then sign a checkpoint if the head moved."""
    with _opened(state) as platform:
        result, checkpoint = _service(platform).seal_and_checkpoint()
    out.print(f"sealed: {result.sealed:,} entries", highlight=False)
    out.print(f"head: seq {result.head.seq} hash {result.head.hash}", highlight=False)
    if checkpoint is not None:
        out.print(f"checkpoint: signed seq {checkpoint.seq} with key {checkpoint.key_id}", highlight=False)
    elif result.head.seq:
        out.print("checkpoint: the head is already signed", highlight=False)
    else:
        out.print("checkpoint: none (the log is empty)", highlight=False)


@audit.command("verify")
@_PUBLIC_KEY
@click.pass_obj
@click.pass_context
def audit_verify(ctx: click.Context, state: _State, public_keys: tuple[str, ...]) -> None:
    """Recompute every sealed entry's hash and check every checkpoint's signature; pending entries are
    counted, not judged. Exit status 1 names the first bad entry.

    By default the checkpoint keys stored in the database are trusted; someone able to write the
    database could add their own, so pass --public-key with the published key for a stronger check."""
    from cdp.audit import AuditEvent, Outcome, record_now
    from cdp.audit.verify import verify_chain

    pinned = _public_keys(public_keys)
    with _opened(state) as platform:
        keys = pinned or _service(platform).public_keys()
        report = verify_chain(platform.db, keys)
        problem = report.first_problem
        details: dict[str, int | str] = {
            "entries": report.entries,
            "head_seq": report.head_seq,
            "checkpoints": report.checkpoints,
            "pending": report.pending,
            "keys": "pinned" if pinned else "database",
        }
        if problem is not None and problem.seq is not None:
            details["failed_at_seq"] = problem.seq
        record_now(
            platform.db,
            AuditEvent("audit.verify", Outcome.SUCCESS if report.ok else Outcome.FAILED, details=details),
        )
    table = Table(title="audit chain")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("entries verified", f"{report.entries:,}")
    table.add_row("first seq", str(report.first_seq))
    table.add_row("verified through seq", str(report.head_seq))
    table.add_row("checkpoints verified", f"{report.checkpoints:,}")
    table.add_row(
        "latest checkpoint verified",
        "none" if report.latest_checkpoint is None else str(report.latest_checkpoint),
    )
    table.add_row("pending (not sealed yet)", f"{report.pending:,}")
    out.print(table)
    if problem is not None:
        out.print(f"FAILED at {problem}", markup=False, highlight=False)
        ctx.exit(1)
    out.print(f"head: seq {report.head_seq} hash {report.head_hash}", highlight=False)
    out.print("OK: the chain and its checkpoints verify", highlight=False)


@audit.command("checkpoint")
@click.pass_obj
def audit_checkpoint(state: _State) -> None:
    """Sign the sealed head now (pending entries are not sealed: `cdp audit seal` does both)."""
    from cdp.audit import AuditEvent, record_now
    from cdp.cli import _audited

    with _opened(state) as platform, _audited(platform, "audit.checkpoint"):
        checkpoint = _service(platform).checkpoint()
        if checkpoint is not None:
            record_now(
                platform.db,
                AuditEvent("audit.checkpoint", details={"seq": checkpoint.seq, "key_id": checkpoint.key_id}),
            )
    if checkpoint is None:
        out.print(
            "no checkpoint signed: the sealed head is already signed (or nothing is sealed); "
            "`cdp audit seal` seals pending entries and signs them",
            highlight=False,
        )
        return
    out.print(
        f"checkpoint: signed seq {checkpoint.seq} head {checkpoint.head_hash} with key {checkpoint.key_id}",
        highlight=False,
    )


@audit.command("rotate-key")
@click.pass_obj
def audit_rotate_key(state: _State) -> None:
    """Create a new checkpoint signing key; older keys stay listed so their checkpoints still verify."""
    from cdp.audit import AuditEvent, record
    from cdp.cli import _audited
    from cdp.vault.audit_keys import AuditSigningKeys

    with (
        _opened(state) as platform,
        _audited(platform, "key.signing_rotate"),
        platform.db.transaction() as session,
    ):
        signer = AuditSigningKeys(session, platform.vault).rotate()
        record(
            session,
            AuditEvent("key.signing_rotate", details={"key": "audit_checkpoint", "key_id": signer.key_id}),
        )
    out.print(f"new checkpoint key {signer.key_id}: {signer.public_key}", highlight=False)
    out.print("publish it to whoever verifies exports (`cdp audit public-key` lists every key)")


@audit.command("public-key")
@click.pass_obj
def audit_public_key(state: _State) -> None:
    """Every checkpoint key: id, raw Ed25519 public key (hex) and state, one per line, for third parties."""
    from sqlalchemy import select

    from cdp.db.models import AuditSigningKey

    with _opened(state) as platform, platform.db.read() as session:
        rows = session.execute(select(AuditSigningKey).order_by(AuditSigningKey.created_at)).scalars().all()
        listed = [(row.key_id, row.public_key, row.retired_at) for row in rows]
    if not listed:
        out.print("no checkpoint key yet: one is created with the first checkpoint (`cdp audit seal`)")
        return
    for key_id, public_key, retired_at in listed:
        status = "active" if retired_at is None else f"retired {retired_at:%Y-%m-%d}"
        out.print(f"{key_id} {public_key} {status}", highlight=False)


def _checkpoint_seq(value: str) -> int | None:
    if value == "latest":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise click.BadParameter("'latest' or a checkpoint's seq", param_hint="--to-checkpoint")


@audit.command("export")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--from-seq", type=click.IntRange(min=1), default=None, help="First entry (default: oldest kept)."
)
@click.option("--to-checkpoint", default="latest", show_default=True, help="'latest' or a checkpoint's seq.")
@click.pass_obj
def audit_export(state: _State, out_path: Path, from_seq: int | None, to_checkpoint: str) -> None:
    """Write a self-contained JSON Lines slice, ending at a signed checkpoint, that anyone holding the
    public key can check with `cdp audit verify-export` or the standalone cdp/audit/offline.py."""
    from cdp.audit.export import export_slice
    from cdp.cli import _audited

    last = _checkpoint_seq(to_checkpoint)
    with _opened(state) as platform, _audited(platform, "audit.export"):
        result = export_slice(platform.db, out_path, from_seq=from_seq, to_checkpoint=last)
    out.print(
        f"exported entries {result.from_seq}..{result.to_seq} ({result.entries:,}) and the checkpoint "
        f"signed by key {result.checkpoint.key_id} to {result.path}",
        markup=False,
        highlight=False,
    )
    out.print("the recipient needs the public key out of band: `cdp audit public-key`", highlight=False)


@audit.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_PUBLIC_KEY
@click.option("--origin", default=None, help="The installation (issuer URL) the checkpoint must name.")
@click.pass_context
def audit_verify_export(
    ctx: click.Context, file: Path, public_keys: tuple[str, ...], origin: str | None
) -> None:
    """Check an exported slice offline: no database, no keys but the public ones. Exit status 1 names the
    first bad line."""
    from cdp.errors import CdpError

    trusted = list(_public_keys(public_keys).values())
    try:
        report = offline.verify_file(file, trusted, origin=origin)
    except offline.SliceError as exc:
        out.print(f"FAILED: {exc}", markup=False, highlight=False)
        ctx.exit(1)
    except OSError as exc:
        raise CdpError(f"cannot read {file}: {exc.strerror or type(exc).__name__}") from None
    for warning in report.warnings:
        err.print(warning, style="bold red", markup=False, highlight=False)
    out.print(
        f"OK: entries {report.first_seq}..{report.checkpoint_seq} ({report.entries:,}) of {report.origin} "
        f"hash to head {report.head_hash}, signed at {report.signed_at} by key {report.key_id}"
        + ("" if report.key_trusted else " (key NOT independently trusted)"),
        markup=False,
        highlight=False,
    )


@audit.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.pass_obj
def audit_prune(state: _State, dry_run: bool) -> None:
    """Delete the oldest entries past `audit_retention_days` that a checkpoint covers, after recording an
    audit.prune entry that vouches for them."""
    from cdp.audit.retention import prune
    from cdp.cli import _audited
    from cdp.retention.policy import RetentionPolicy, check_audit_outlives_data

    with _opened(state) as platform, _audited(platform, "audit.prune"):
        days = platform.settings.audit_retention_days
        check_audit_outlives_data(RetentionPolicy.load(platform.settings.retention_policy_file), days)
        result = prune(platform.db, platform.vault, platform.settings.issuer, days, dry_run=dry_run)
    plan = result.plan
    if plan is None:
        out.print(
            f"nothing to prune: no entry recorded before {result.cutoff:%Y-%m-%d} ({days} days of "
            "retention) is at the start of the chain and under a checkpoint",
            highlight=False,
        )
        return
    verb = "would prune" if dry_run else "pruned"
    count = plan.entries if dry_run else result.deleted
    out.print(
        f"{verb} {count:,} entries (seq {plan.first_seq}..{plan.through_seq}), all recorded before "
        f"{result.cutoff:%Y-%m-%d}; the chain {'would start' if dry_run else 'now starts'} at seq "
        f"{plan.through_seq + 1}",
        highlight=False,
    )
