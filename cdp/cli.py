"""The `cdp` command-line tool: thin commands over the services, with progress bars for long jobs.

Every expected failure (bad configuration, missing keys, unreachable database) ends as one line on
stderr — ``error: ...`` — and exit status 2, never a traceback.

Every command runs in an audit scope for the operator (``operator:<OS user>``): whoever holds the
keyring and the database is trusted, and still accountable. Administrative changes (clients, staff
users, keys) are audited in the transaction that makes them; a change that fails leaves a ``failed``
or ``not_found`` entry naming the error class only.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from cdp import __version__
from cdp.audit import AuditActor, AuditEvent, Outcome, acting_as, record, record_now
from cdp.config import Settings, load_settings
from cdp.db import safe_url
from cdp.errors import CdpError
from cdp.platform import Platform
from cdp.serving import Supervisor, gunicorn_argv
from cdp.vault import rotation

if TYPE_CHECKING:
    from cdp.access.users import UserRepository
    from cdp.identity.service import IdentityService
    from cdp.sources.ingest import IngestSummary

out = Console(soft_wrap=True)
err = Console(stderr=True)


class _State:
    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(config_file=self.config)
        return self._settings


@contextmanager
def _platform(state: _State) -> Iterator[Platform]:
    platform = Platform.open(state.settings)
    try:
        yield platform
    finally:
        platform.close()


@contextmanager
def _audited(platform: Platform, action: str) -> Iterator[None]:
    """Record ``action`` as not found or failed when the block raises. The block's transaction has
    rolled back by then, and the entry the change recorded with it, so this records in one of its own;
    it names the error class, never the input (a username, a client name)."""
    from cdp.access.clients import ClientNotFound
    from cdp.access.users import UserNotFound

    try:
        yield
    except Exception as exc:
        outcome = Outcome.NOT_FOUND if isinstance(exc, UserNotFound | ClientNotFound) else Outcome.FAILED
        record_now(platform.db, AuditEvent(action, outcome, details={"error": type(exc).__name__}))
        raise


@contextmanager
def _users(state: _State, action: str) -> Iterator[UserRepository]:
    """Staff accounts in one transaction (committed when the command's block ends without error); the
    repository audits the change in it, and a failure is audited as ``action``."""
    from cdp.access.users import UserRepository

    with _platform(state) as platform, _audited(platform, action), platform.db.transaction() as session:
        yield UserRepository(session, platform.vault, platform.settings)


def _os_user() -> str:
    """Who is at the command line, as the OS knows them (not a name they typed)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


@click.group()
@click.version_option(__version__, prog_name="cdp")
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML settings file (default: $CDP_CONFIG, else ./cdp.toml if present).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """cdp — privacy-first customer data platform."""
    ctx.obj = _State(config)
    ctx.with_resource(acting_as(AuditActor.operator(_os_user())))


@cli.command()
@click.pass_obj
def init(state: _State) -> None:
    """Create the keys (file keyring) and the database schema. Safe to run again."""
    platform, created = Platform.initialize(state.settings)
    try:
        settings = platform.settings
        if settings.keyring_kind == "file":
            verb = "created" if created else "kept existing"
            out.print(f"keys: {verb} {settings.keyring_path} (mode 0600)")
        else:
            out.print(
                f"keys: {settings.keyring_kind} keyring, active KEK v{platform.vault.keks.active_version()}"
            )
        out.print(f"database: {safe_url(settings.database_url)} migrated to the latest schema")
    finally:
        platform.close()


def _gunicorn() -> str:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or shutil.which("gunicorn")
    if gunicorn is None:
        raise CdpError("gunicorn is not installed in this environment; reinstall cdp")
    return gunicorn


def _run_server(state: _State, host: str, port: int, workers: int, *, access_log: bool = True) -> None:
    """Serve until stopped: the HTTP workers plus one background-jobs process (:mod:`cdp.serving`)."""
    from cdp.jobs import check_jobs_can_start

    check_jobs_can_start(state.settings)
    server_argv = gunicorn_argv(_gunicorn(), f"{host}:{port}", workers, access_log=access_log)
    env = dict(os.environ)
    if state.config is not None:
        env["CDP_CONFIG"] = str(state.config.resolve())
    # The workers load their settings again: they must bind-match what was chosen here (--host,
    # --port), or an issuer derived from host and port would name another origin than the one served.
    env["CDP_HOST"] = host
    env["CDP_PORT"] = str(port)
    env["CDP_BACKGROUND_JOBS_IN_WORKERS"] = "false"
    jobs_argv = [sys.executable, "-m", "cdp", "jobs", "--parent-pid", str(os.getpid())]
    out.print(f"cdp {__version__} serving on http://{host}:{port}/  (Ctrl+C to stop)")
    sys.stdout.flush()
    raise SystemExit(Supervisor(server_argv, jobs_argv, env).run())


@cli.command()
@click.option("--host", default=None, help="Interface to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default from settings: 8000).")
@click.option(
    "--workers", type=int, default=None, help="Worker processes (default from settings: two per core)."
)
@click.option(
    "--no-access-log",
    is_flag=True,
    help="Do not log each request (e.g. when the proxy in front logs them already).",
)
@click.pass_obj
def serve(
    state: _State, host: str | None, port: int | None, workers: int | None, no_access_log: bool
) -> None:
    """Serve the HTTP API (gunicorn) and run the background jobs beside it. Checks keys and database
    first."""
    settings = state.settings.with_overrides(host=host, port=port, workers=workers)
    Platform.open(settings).close()
    _run_server(state, settings.host, settings.port, settings.workers, access_log=not no_access_log)


@cli.command()
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Stop when this process is gone.")
@click.pass_obj
def jobs(state: _State, parent_pid: int | None) -> None:
    """Run the background jobs in the foreground until stopped (SIGTERM or Ctrl+C): the audit sequencer,
    housekeeping, scheduled segments and the retention sweep. `cdp serve` runs this beside its workers;
    run it yourself when serving `api.wsgi:app` with background_jobs_in_workers off."""
    from cdp.jobs import run_jobs

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    with _platform(state) as platform:
        run_jobs(platform, stop, parent_pid=parent_pid)


@cli.group()
def keys() -> None:
    """Key-encryption keys: status and rotation."""


@keys.command("status")
@click.pass_obj
def keys_status(state: _State) -> None:
    """KEK versions, their state and how many data keys each wraps."""
    with _platform(state) as platform:
        status = rotation.status(platform.db, platform.vault)
    table = Table(title="key-encryption keys")
    table.add_column("KEK")
    table.add_column("state")
    table.add_column("data keys", justify="right")
    for version, kek_state, count in status.keks:
        marker = " (active)" if version == status.active_kek_version else ""
        table.add_row(f"v{version}{marker}", kek_state, f"{count:,}")
    out.print(table)
    out.print(f"shredded subjects (no data key): {status.shredded_subjects:,}")
    if status.pending_rewrap:
        out.print(
            f"rotation in progress: {status.pending_rewrap:,} data keys "
            f"not yet under v{status.active_kek_version}"
        )


@keys.command("rotate")
@click.option("--batch-size", type=int, default=None, help="Data keys per transaction.")
@click.option("--no-retire", is_flag=True, help="Keep old KEKs (decrypt-only) even when unreferenced.")
@click.pass_obj
def keys_rotate(state: _State, batch_size: int | None, no_retire: bool) -> None:
    """Create a new KEK and rewrap every data key under it, online. Re-run to resume after a crash."""
    with _platform(state) as platform:
        with _audited(platform, "key.rotate"), _progress() as progress:
            task = progress.add_task("rewrapping data keys", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = rotation.rotate(
                platform.db,
                platform.vault,
                batch_size=batch_size or platform.settings.rotation_batch_size,
                progress=report,
                retire_old=not no_retire,
            )
        # Each batch committed on its own, so the rotation is recorded once it is done.
        details = {
            "target_kek_version": result.target_kek_version,
            "rewrapped": result.rewrapped,
            "resumed": result.resumed,
            "retired": result.retired,
        }
        record_now(platform.db, AuditEvent("key.rotate", details=details))
    verb = "resumed rotation to" if result.resumed else "rotated to"
    rate = result.rewrapped / result.seconds if result.seconds else 0.0
    out.print(
        f"{verb} KEK v{result.target_kek_version}: {result.rewrapped:,} data keys rewrapped "
        f"in {result.seconds:.1f} s ({rate:,.0f}/s)"
    )
    if result.retired:
        out.print("retired (key material destroyed): " + ", ".join(f"v{v}" for v in result.retired))


@cli.group()
def clients() -> None:
    """OAuth clients: department services and other API callers."""


@clients.command("create")
@click.option("--name", required=True, help="Who this client is, e.g. 'billing export job'.")
@click.option(
    "--grant",
    type=click.Choice(["client_credentials", "authorization_code"]),
    default="client_credentials",
    show_default=True,
    help="client_credentials for a department service; authorization_code (+ PKCE) for an app people "
    "sign in to.",
)
@click.option(
    "--role",
    required=True,
    help="client_credentials: the service's role, it bounds the scopes. authorization_code: who signs in "
    "through the app — 'staff' (username, password, TOTP) or 'customer' (emailed one-time code).",
)
@click.option("--department", default=None, help="Department a service client acts for.")
@click.option("--scope", "scopes", multiple=True, required=True, help="Scope to grant (repeat for several).")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="authorization_code: a redirect URI, matched exactly (https, or http on a loopback host; repeat).",
)
@click.option(
    "--public", is_flag=True, help="authorization_code: a browser or native app that cannot keep a secret."
)
@click.pass_obj
def clients_create(
    state: _State,
    name: str,
    grant: str,
    role: str,
    department: str | None,
    scopes: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    public: bool,
) -> None:
    """Register a client and print its id and secret — the secret is shown this once only."""
    from cdp.access.clients import ClientRepository

    if grant == "client_credentials" and (redirect_uris or public):
        raise click.UsageError("--redirect-uri and --public apply to the authorization_code grant only")
    with (
        _platform(state) as platform,
        _audited(platform, "client.create"),
        platform.db.transaction() as session,
    ):
        client, secret = ClientRepository(session).create(
            name=name,
            role=role,
            department=department,
            scopes=scopes,
            grant=grant,
            redirect_uris=redirect_uris,
            public=public,
        )
    out.print(f"client_id:     {client.client_id}")
    if secret is not None:
        out.print(f"client_secret: {secret}")
    else:
        out.print("public client: no secret; it must use PKCE (S256) and token endpoint auth 'none'")
    out.print(f"role {client.role}, scopes: {' '.join(sorted(client.scopes))}")
    if client.redirect_uris:
        out.print(f"redirect URIs: {' '.join(client.redirect_uris)}")
    if secret is not None:
        out.print("store the secret now: only a hash of it is kept")


@clients.command("list")
@click.pass_obj
def clients_list(state: _State) -> None:
    """Registered clients (never their secrets)."""
    from cdp.access.clients import ClientRepository

    with _platform(state) as platform, platform.db.read() as session:
        registered = ClientRepository(session).all()
    table = Table(title="OAuth clients")
    for column in ("client_id", "name", "grant", "role", "department", "scopes", "status"):
        table.add_column(column)
    for c in registered:
        status = "active" if c.active else f"disabled {c.disabled_at:%Y-%m-%d %H:%M}"
        grant = "authorization_code" if "authorization_code" in c.grant_types else "client_credentials"
        if c.public:
            grant += " (public)"
        table.add_row(
            c.client_id, c.name, grant, c.role, c.department or "", " ".join(sorted(c.scopes)), status
        )
    out.print(table)


@clients.command("disable")
@click.argument("client_id")
@click.pass_obj
def clients_disable(state: _State, client_id: str) -> None:
    """Disable a client; its tokens stop working at the next request."""
    from cdp.access.clients import ClientRepository

    with (
        _platform(state) as platform,
        _audited(platform, "client.disable"),
        platform.db.transaction() as session,
    ):
        ClientRepository(session).disable(client_id)
    out.print(f"disabled {client_id}")


# --- staff users and the demo outbox -----------------------------------------------------------------


@cli.group()
def users() -> None:
    """Staff accounts that sign in to the web apps: password, TOTP, lockout."""


_PASSWORD_FILE = click.option(
    "--password-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Read the password from this file ('-' for stdin) instead of prompting; for scripts. "
    "One trailing newline is dropped.",
)


def _read_password(password_file: Path | None) -> str:
    """The new password, from a file (or stdin) for scripts, else a hidden prompt typed twice."""
    if password_file is None:
        password: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
        return password
    try:
        text = sys.stdin.read() if str(password_file) == "-" else password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise CdpError(f"cannot read the password file {password_file}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _print_totp_uri(uri: str) -> None:
    out.print("TOTP enrolled. Add it to an authenticator app now (this is shown once):")
    out.print(uri, markup=False, highlight=False)


@users.command("create")
@click.option("--username", required=True, help="3-64 characters of a-z, 0-9, '.', '_' and '-'.")
@click.option("--role", required=True, help="Staff role; it bounds which scopes may be granted.")
@click.option("--department", default=None, help="Department the user works for.")
@click.option("--scope", "scopes", multiple=True, required=True, help="Scope to grant (repeat for several).")
@_PASSWORD_FILE
@click.pass_obj
def users_create(
    state: _State,
    username: str,
    role: str,
    department: str | None,
    scopes: tuple[str, ...],
    password_file: Path | None,
) -> None:
    """Create a staff user. Compliance officers, DPOs and admins get a TOTP second factor at once."""
    password = _read_password(password_file)
    with _users(state, "user.create") as accounts:
        user, uri = accounts.create(
            username=username, password=password, role=role, scopes=scopes, department=department
        )
    out.print(
        f"created user {user.username}: role {user.role}, scopes: {' '.join(sorted(user.scopes))}",
        markup=False,
        highlight=False,
    )
    if uri is not None:
        _print_totp_uri(uri)


@users.command("list")
@click.pass_obj
def users_list(state: _State) -> None:
    """Staff users and their status (never their passwords or second factors)."""
    from cdp.access.users import UserRepository
    from cdp.db.types import utcnow

    with _platform(state) as platform, platform.db.read() as session:
        accounts = UserRepository(session, platform.vault, platform.settings).all()
    now = utcnow()
    table = Table(title="staff users")
    for column in ("username", "role", "department", "scopes", "totp", "status", "last login"):
        table.add_column(column)
    for u in accounts:
        if u.disabled_at is not None:
            status = f"disabled {u.disabled_at:%Y-%m-%d %H:%M}"
        elif u.locked_until is not None and u.locked_until > now:
            status = f"locked until {u.locked_until:%Y-%m-%d %H:%M}"
        else:
            status = "active"
        table.add_row(
            _cell(u.username),
            u.role,
            u.department or "",
            " ".join(sorted(u.scopes)),
            "yes" if u.totp_enabled else "no",
            status,
            f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never",
        )
    _print_table(table)


@users.command("disable")
@click.argument("username")
@click.pass_obj
def users_disable(state: _State, username: str) -> None:
    """Disable a user: they can no longer sign in."""
    with _users(state, "user.disable") as accounts:
        user = accounts.disable(username)
    out.print(f"disabled {user.username}", markup=False, highlight=False)


@users.command("enable")
@click.argument("username")
@click.pass_obj
def users_enable(state: _State, username: str) -> None:
    """Re-enable a user and clear a lockout."""
    with _users(state, "user.enable") as accounts:
        user = accounts.enable(username)
    out.print(f"enabled {user.username}", markup=False, highlight=False)


@users.command("enroll-totp")
@click.argument("username")
@click.pass_obj
def users_enroll_totp(state: _State, username: str) -> None:
    """Enrol a new TOTP secret for a user; any previous authenticator stops working."""
    with _users(state, "user.credentials") as accounts:
        uri = accounts.enroll_totp(username)
    _print_totp_uri(uri)


@users.command("set-password")
@click.argument("username")
@_PASSWORD_FILE
@click.pass_obj
def users_set_password(state: _State, username: str, password_file: Path | None) -> None:
    """Set a new password for a user (a lockout stays; `cdp users enable` clears it)."""
    password = _read_password(password_file)
    with _users(state, "user.credentials") as accounts:
        user = accounts.set_password(username, password)
    out.print(f"password of {user.username} changed", markup=False, highlight=False)


@cli.group()
def outbox() -> None:
    """The local demo outbox: messages cdp would have sent (sign-in codes)."""


@outbox.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.pass_obj
def outbox_list(state: _State, limit: int) -> None:
    """The newest messages first, decrypted; those of erased customers are gone."""
    from cdp.access.outbox import Outbox

    with _platform(state) as platform, platform.db.read() as session:
        entries = Outbox(session, platform.vault).latest(limit)
    err.print(
        "warning: local demo outbox — nothing here was sent; it holds customers' data and codes",
        soft_wrap=True,
    )
    if not entries:
        out.print("the outbox is empty")
        return
    table = Table(title="outbox (newest first)")
    for column in ("time", "channel", "purpose", "recipient", "subject", "body"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            f"{entry.created_at:%Y-%m-%d %H:%M:%S}",
            entry.channel,
            entry.purpose,
            _cell(entry.recipient),
            _cell(entry.subject),
            _cell(entry.body),
        )
    _print_table(table)


@cli.group()
def sources() -> None:
    """Sources (lines of business) and their field mappings."""


@sources.command("register")
@click.argument(
    "mappings", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.pass_obj
def sources_register(state: _State, mappings: tuple[Path, ...]) -> None:
    """Register sources from mapping TOML files (re-registering replaces the mapping)."""
    from cdp.sources.ingest import IngestService

    with _platform(state) as platform:
        service = IngestService(platform.db, platform.vault)
        for path in mappings:
            mapping, created = service.register_source(path.read_text(encoding="utf-8"), origin=str(path))
            verb = "registered" if created else "updated mapping of"
            out.print(f"{verb} source {mapping.name} ({mapping.line_of_business})")


@sources.command("list")
@click.pass_obj
def sources_list(state: _State) -> None:
    """Sources with their record, interaction and pending-quarantine counts."""
    from cdp.sources.ingest import IngestService

    with _platform(state) as platform:
        infos = IngestService(platform.db, platform.vault).sources()
    table = Table(title="sources")
    for column in ("name", "line of business", "records", "interactions", "quarantined"):
        table.add_column(
            column, justify="right" if column in ("records", "interactions", "quarantined") else "left"
        )
    for info in infos:
        table.add_row(
            info.name,
            info.line_of_business,
            f"{info.records:,}",
            f"{info.interactions:,}",
            f"{info.quarantined:,}",
        )
    out.print(table)


def _print_summary(summary: IngestSummary) -> None:
    resumed = f" (resumed after row {summary.resumed_after_row:,})" if summary.resumed_after_row else ""
    rate = summary.rows / summary.seconds if summary.seconds else 0.0
    out.print(
        f"{summary.source} {summary.kind}{resumed}: {summary.inserted:,} inserted, "
        f"{summary.updated:,} updated, {summary.unchanged:,} unchanged, {summary.rejected:,} rejected "
        f"in {summary.seconds:.1f} s ({rate:,.0f} rows/s)"
    )
    for reason, count in summary.reasons.most_common():
        out.print(f"  quarantined: {count:,} x {reason}")
    if summary.rejected:
        out.print("  see `cdp quarantine list`; fix the mapping or data, then `cdp quarantine retry`")


@cli.command()
@click.argument("source")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--interactions", is_flag=True, help="The file holds contact history, not customer records.")
@click.option("--chunk-size", type=click.IntRange(1, 100_000), default=500, show_default=True)
@click.pass_obj
def ingest(state: _State, source: str, file: Path, interactions: bool, chunk_size: int) -> None:
    """Ingest a CSV or JSON Lines FILE for SOURCE. Idempotent; re-run to resume an interrupted run."""
    from cdp.sources.ingest import IngestService
    from cdp.sources.readers import count_rows

    with _platform(state) as platform, _progress() as progress:
        task = progress.add_task(f"ingesting {file.name}", total=count_rows(file))
        summary = IngestService(platform.db, platform.vault, chunk_size=chunk_size).ingest_file(
            source,
            file,
            kind="interactions" if interactions else "records",
            progress=lambda n: progress.advance(task, n),
        )
    _print_summary(summary)


@cli.group()
def quarantine() -> None:
    """Rows that could not be ingested: list, retry, discard."""


@quarantine.command("list")
@click.option("--source", default=None)
@click.option("--reason", default=None)
@click.option("--status", type=click.Choice(["pending", "reprocessed", "discarded"]), default="pending")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.pass_obj
def quarantine_list(state: _State, source: str | None, reason: str | None, status: str, limit: int) -> None:
    """Quarantined rows with their reasons (never their values)."""
    from cdp.sources.ingest import IngestService
    from cdp.sources.quarantine import QuarantineRepository

    with _platform(state) as platform, platform.db.read() as session:
        service = IngestService(platform.db, platform.vault)
        source_id = service.mapping(session, source)[0] if source else None
        names = {info.id: info.name for info in service.sources()}
        entries = QuarantineRepository(session, platform.vault).entries(
            source_id=source_id, reason=reason, status=status, limit=limit
        )
    table = Table(title=f"quarantine ({status})")
    for column in ("id", "source", "kind", "row", "reason", "detail"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            str(entry.id),
            names.get(entry.source_id, "?"),
            entry.kind,
            str(entry.row_number),
            entry.reason,
            entry.detail,
        )
    out.print(table)


@quarantine.command("retry")
@click.option("--source", default=None, help="Only this source's pending rows.")
@click.argument("ids", nargs=-1, type=click.UUID)
@click.pass_obj
def quarantine_retry(state: _State, source: str | None, ids: tuple[uuid.UUID, ...]) -> None:
    """Re-process pending rows with the current mapping (all pending, one source's, or the given IDS)."""
    from cdp.sources.ingest import IngestService

    with _platform(state) as platform:
        result = IngestService(platform.db, platform.vault).retry_quarantined(
            source_name=source, entry_ids=ids
        )
    out.print(
        f"retried {result.retried:,}: {result.reprocessed:,} ingested, "
        f"{result.still_rejected:,} still quarantined"
    )


@quarantine.command("discard")
@click.argument("ids", nargs=-1, required=True, type=click.UUID)
@click.pass_obj
def quarantine_discard(state: _State, ids: tuple[uuid.UUID, ...]) -> None:
    """Discard quarantined rows: their encrypted copy is crypto-shredded."""
    from cdp.sources.ingest import IngestService

    with _platform(state) as platform:
        count = IngestService(platform.db, platform.vault).discard_quarantined(list(ids))
    out.print(f"discarded {count:,} quarantined row(s)")


@keys.command("rotate-signing")
@click.pass_obj
def keys_rotate_signing(state: _State) -> None:
    """Make a new token-signing key the signer; the old one stays published until its tokens expire."""
    from cdp.vault.signing import SigningKeys

    with (
        _platform(state) as platform,
        _audited(platform, "key.signing_rotate"),
        platform.db.transaction() as session,
    ):
        kid = SigningKeys(session, platform.vault).rotate()
        record(session, AuditEvent("key.signing_rotate", details={"key": "token_signing", "kid": kid}))
    out.print(
        f"new signing key {kid}; servers switch to it within 5 s, old tokens stay valid until they expire"
    )


@cli.group()
def demo() -> None:
    """Demo data and the one-command demo server."""


def _seed(platform: Platform, people: int, seed_value: int) -> None:
    from cdp.demo.seed import seed

    with _progress() as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=max(total, done))

        result = seed(
            platform.db,
            platform.vault,
            work_dir=platform.settings.data_dir / "demo",
            people=people,
            seed_value=seed_value,
            progress=report,
        )
    generated = result.generated
    out.print(
        f"demo data: {generated.people:,} fictitious people in {len(generated.sources)} sources "
        f"({generated.records:,} source records, {generated.interactions:,} interactions generated)"
    )
    out.print(
        f"ingested: {result.records:,} new or changed records, {result.interactions:,} interactions "
        f"({result.unchanged:,} rows already present and unchanged)"
    )
    if result.quarantined:
        reasons = ", ".join(f"{count:,} {reason}" for reason, count in result.quarantined.most_common())
        out.print(f"quarantined (the generator plants bad data on purpose): {reasons}")
    if result.resolution is not None:
        resolved = result.resolution
        out.print(
            f"resolved: {resolved['records']:,} records → {resolved['entities']:,} customers "
            f"(largest {resolved['largest_entity']} records; "
            f"{resolved['pairs_for_review']:,} pairs to review)"
        )
    out.print(f"ground truth (who is who, for evaluating identity resolution): {result.ground_truth}")
    _demo_access(platform)


def _demo_access(platform: Platform) -> None:
    from cdp.demo.principals import ensure_demo_access

    access = ensure_demo_access(platform, platform.settings.data_dir / "demo")
    verb = "created" if access.created else "in"
    out.print(f"demo accounts (staff per role, one department service): {verb} {access.credentials}")
    if access.sample_customer:
        out.print(
            f"try: a token for the demo service, then GET /v1/customers/{access.sample_customer}"
            "?purpose=support"
        )


@demo.command("seed")
@click.option("--people", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
@click.option("--seed", "seed_value", type=int, default=42, show_default=True)
@click.pass_obj
def demo_seed(state: _State, people: int, seed_value: int) -> None:
    """Generate realistic fictitious customers across four sources and ingest them (deterministic)."""
    with _platform(state) as platform:
        _seed(platform, people, seed_value)


@demo.command("run")
@click.option("--people", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
@click.option("--port", type=int, default=None)
@click.pass_obj
def demo_run(state: _State, people: int, port: int | None) -> None:
    """Initialize (if needed), seed demo data (if empty) and serve — the `make demo` command."""
    from cdp.sources.records import RecordRepository

    platform, created = Platform.initialize(state.settings)
    try:
        if created:
            out.print(f"keys: created {platform.settings.keyring_path}")
        with platform.db.read() as session:
            existing = RecordRepository(session, platform.vault).count()
        if existing == 0:
            _seed(platform, people, 42)
        else:
            out.print(f"demo data: {existing:,} records already present")
            _demo_access(platform)
        settings = state.settings.with_overrides(port=port)
        base = _served_issuer(state.settings, settings.host, settings.port)
        _print_web_apps(platform, base)
    finally:
        platform.close()
    _run_server(state, settings.host, settings.port, settings.workers)


def _served_issuer(configured: Settings, host: str, port: int) -> str:
    """The origin the server will answer on: the configured issuer, unless it was only derived from
    the default host and port, which ``--port`` may change."""
    if configured.issuer == f"http://{configured.host}:{configured.port}":
        return f"http://{host}:{port}"
    return configured.issuer


def _print_web_apps(platform: Platform, base: str) -> None:
    from cdp.demo.principals import CREDENTIALS_FILE, demo_logins, sample_customer_email

    credentials = platform.settings.data_dir / "demo" / CREDENTIALS_FILE
    table = Table(title="web apps and demo users (fictitious; passwords also in the credentials file)")
    table.add_column("app")
    table.add_column("sign in as")
    table.add_column("role")
    table.add_column("password")
    table.add_column("second factor")
    email = sample_customer_email(platform)
    if email:
        table.add_row(
            f"{base}/privacy/", email, "customer", "-", "emailed code: cdp outbox list", end_section=True
        )
    for login in demo_logins(credentials):
        factor = f"TOTP: cdp demo totp {login.username}" if login.totp_uri else "-"
        apps = " ".join(f"{base}{app}" for app in login.apps) or "-"
        table.add_row(apps, login.username, login.role, login.password, factor)
    out.print(table)


@demo.command("totp")
@click.argument("username")
@click.pass_obj
def demo_totp(state: _State, username: str) -> None:
    """The current TOTP code of a demo account (read from the demo's own credentials file, as an
    authenticator app would compute it) — for signing in to the compliance console in the demo."""
    from cdp.demo.principals import CREDENTIALS_FILE, demo_logins

    credentials = state.settings.data_dir / "demo" / CREDENTIALS_FILE
    login = next((login for login in demo_logins(credentials) if login.username == username), None)
    if login is None or login.totp_uri is None:
        raise CdpError(f"no demo account with TOTP named {username!r} in {credentials}")
    out.print(login.totp_now())


@cli.command("resolve-file")
@click.option(
    "--mapping",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML: id column, optional date_format/default_country, [fields] canonical = column.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output CSV.")
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Matching settings TOML (default: cdp/identity/default_settings.toml).",
)
@click.option("--threshold", type=float, default=None, help="Match weight (bits) needed to link.")
@click.option(
    "--allow-duplicates-within-file",
    is_flag=True,
    help="Linkage of two files: let a record link to several records of the other file.",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the run report (counts, model, timings; no data values) as JSON.",
)
@click.argument(
    "inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def resolve_file(
    mapping: Path,
    out: Path,
    settings_file: Path | None,
    threshold: float | None,
    allow_duplicates_within_file: bool,
    report_file: Path | None,
    inputs: tuple[Path, ...],
) -> None:
    """Resolve CSV files without a server or database; write source,record_id,cluster_id.

    One input is a deduplication, two a linkage, more a link-and-dedupe. Nothing else is stored.
    """
    import dataclasses
    import json

    from cdp.identity.files import resolve_files
    from cdp.identity.settings import MatchSettings

    settings = MatchSettings.from_file(settings_file) if settings_file else MatchSettings.default()
    if threshold is not None:
        settings = dataclasses.replace(
            settings, clustering=dataclasses.replace(settings.clustering, threshold=threshold)
        )
    result = resolve_files(
        list(inputs), mapping, out, settings=settings, one_to_one=not allow_duplicates_within_file
    )
    report = result.report
    if report_file is not None:
        report_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    err.print(
        f"{report['records']:,} records → {report['entities']:,} entities "
        f"(largest {report['largest_entity']}); {report['candidate_pairs']:,} candidate pairs; "
        f"{report['timings_seconds']['wall']:.2f} s; written to {out}",
        markup=False,
        highlight=False,
    )


# --- identity resolution over the vault -------------------------------------------------------------


def _print_table(table: Table) -> None:
    """Print a table at its natural width when the terminal (or a pipe's 80 columns) is narrower: a
    folded or truncated record id cannot be pasted into the next command."""
    need = Console(width=100_000).measure(table).maximum
    if need <= out.width:
        out.print(table)
        return
    # Same defaults as `out` (so the same colour and terminal detection), only wider.
    Console(file=out.file, width=need, soft_wrap=True).print(table)


def _id(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CdpError(f"{what} is not a valid id (expected a UUID)") from None


def _default_actor() -> str:
    return f"cli:{_os_user()}"


def _identity(platform: Platform) -> IdentityService:
    from cdp.identity.service import IdentityService

    return IdentityService(platform.db, platform.vault)


def _cell(value: object) -> Text:
    """A table cell shown literally: ids and values are never parsed as console markup."""
    return Text("" if value is None else str(value))


@cli.command("resolve")
@click.option(
    "--retrain",
    is_flag=True,
    help="Train a new match model on the current data first (otherwise the active one is reused; "
    "the first run always trains).",
)
@click.pass_obj
def resolve_vault(state: _State, retrain: bool) -> None:
    """Re-resolve every record in the vault into entities (batch); prints counts and timings only.

    Manual merges and splits are kept. Ingestion resolves new records incrementally once a model exists.
    """
    with _platform(state) as platform:
        report = _identity(platform).resolve_all(retrain=retrain)
    table = Table(title="identity resolution" + (" (retrained)" if retrain else ""), show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("records", f"{report['records']:,}")
    table.add_row("entities", f"{report['entities']:,}")
    table.add_row("largest entity", f"{report['largest_entity']:,}")
    table.add_row("singletons", f"{report['singletons']:,}")
    table.add_row("candidate pairs", f"{report['candidate_pairs']:,}")
    table.add_row("pairs above threshold", f"{report['pairs_above_threshold']:,}")
    table.add_row("pairs for review", f"{report['pairs_for_review']:,}")
    table.add_row("stored edges", f"{report.get('stored_edges', 0):,}")
    refused: dict[str, int] = report["refused_links"]
    table.add_section()
    if refused:
        for reason, count in sorted(refused.items(), key=lambda kv: (-kv[1], kv[0])):
            table.add_row(f"refused links: {reason}", f"{count:,}")
    else:
        table.add_row("refused links", "0")
    table.add_section()
    for stage, seconds in report["timings_seconds"].items():
        table.add_row(f"time: {stage}", f"{seconds:.3f} s")
    out.print(table)


@cli.group()
def identity() -> None:
    """Entities: review queue, explanations, manual merges and splits, golden profiles."""


@identity.command("review")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.pass_obj
def identity_review(state: _State, limit: int) -> None:
    """Undecided pairs to look at: refused links and weights near the threshold (ids and weights only)."""
    with _platform(state) as platform:
        items = _identity(platform).review_queue(limit)
    if not items:
        out.print("nothing to review")
        return
    plural = "" if len(items) == 1 else "s"
    table = Table(title=f"review queue ({len(items)} pair{plural}, nearest the threshold first)")
    for column in ("record_a", "record_b", "weight", "linked", "refused"):
        table.add_column(column, justify="right" if column == "weight" else "left")
    for item in items:
        table.add_row(
            str(item.record_a),
            str(item.record_b),
            f"{item.weight:+.2f}",
            "yes" if item.linked else "no",
            item.refused or "",
        )
    _print_table(table)
    out.print("decide with `cdp identity explain A B`, then `cdp identity merge` or `cdp identity split`")


@identity.command("explain")
@click.argument("record_a")
@click.argument("record_b")
@click.pass_obj
def identity_explain(state: _State, record_a: str, record_b: str) -> None:
    """Why two records are (not) linked: the waterfall of evidence in bits (labels, never values)."""
    a, b = _id(record_a, "RECORD_A"), _id(record_b, "RECORD_B")
    with _platform(state) as platform:
        explanation = _identity(platform).explain(a, b)
    out.print(f"{a} vs {b} (threshold {explanation.threshold:+.2f})", markup=False, highlight=False)
    out.print(explanation.waterfall(), markup=False, highlight=False)


@identity.command("explain-entity")
@click.argument("entity")
@click.pass_obj
def identity_explain_entity(state: _State, entity: str) -> None:
    """Why an entity holds its records: the scored links between them and any manual decisions."""
    entity_id = _id(entity, "ENTITY")
    with _platform(state) as platform:
        explained = _identity(platform).explain_entity(entity_id)
    records = explained["records"]
    out.print(f"entity {entity_id}: {len(records)} record(s)", markup=False, highlight=False)
    for record_id in records:
        source = explained["sources"].get(record_id, "?")
        out.print(f"  {record_id}  ({source})", markup=False, highlight=False)
    if explained["links"]:
        links = Table(title="scored pairs between its records")
        for column in ("record_a", "record_b", "weight", "refused"):
            links.add_column(column, justify="right" if column == "weight" else "left")
        for link in sorted(explained["links"], key=lambda lk: -lk["match_weight"]):
            links.add_row(
                link["record_a"], link["record_b"], f"{link['match_weight']:+.2f}", link["refused"] or ""
            )
        _print_table(links)
    if explained["decisions"]:
        decisions = Table(title="manual decisions")
        for column in ("record_a", "record_b", "kind", "actor"):
            decisions.add_column(column)
        for d in explained["decisions"]:
            decisions.add_row(d["record_a"], d["record_b"], d["kind"], _cell(d["actor"]))
        _print_table(decisions)


_REASON = click.option(
    "--reason", required=True, help="Why (at most 300 characters); kept with the decision."
)
_ACTOR = click.option("--actor", default=None, help="Who decides (default: cli:<login name>).")


@identity.command("merge")
@click.argument("record_a")
@click.argument("record_b")
@_REASON
@_ACTOR
@click.pass_obj
def identity_merge(state: _State, record_a: str, record_b: str, reason: str, actor: str | None) -> None:
    """Decide by hand that RECORD_A and RECORD_B are the same person (kept through later batch runs)."""
    a, b = _id(record_a, "RECORD_A"), _id(record_b, "RECORD_B")
    with _platform(state) as platform:
        entity_id = _identity(platform).merge(a, b, actor=actor or _default_actor(), reason=reason)
    out.print(f"merged: both records are entity {entity_id}", markup=False, highlight=False)


@identity.command("split")
@click.argument("entity")
@click.argument("records", nargs=-1, required=True)
@_REASON
@_ACTOR
@click.pass_obj
def identity_split(
    state: _State, entity: str, records: tuple[str, ...], reason: str, actor: str | None
) -> None:
    """Decide by hand that RECORDS are not the same person as the rest of ENTITY."""
    entity_id = _id(entity, "ENTITY")
    record_ids = [_id(value, "RECORD") for value in records]
    with _platform(state) as platform:
        entities = _identity(platform).split(
            entity_id, record_ids, actor=actor or _default_actor(), reason=reason
        )
    out.print(f"split into {len(entities)} entities:", markup=False, highlight=False)
    for split_entity in entities:
        out.print(f"  {split_entity}", markup=False, highlight=False)


@identity.command("show")
@click.argument("entity")
@click.option(
    "--reveal",
    is_flag=True,
    help="Also print the values. Without it only attribute names and provenance are shown.",
)
@click.pass_obj
def identity_show(state: _State, entity: str, reveal: bool) -> None:
    """The golden profile of ENTITY: each surviving attribute, the record and source it came from and the
    strategy that decided it.

    Values are printed only with --reveal. That adds no new power — whoever runs this command holds the
    keyring and the database and could decrypt the records anyway — but the default output stays
    value-free, so it can be pasted into a ticket or a chat.
    """
    entity_id = _id(entity, "ENTITY")
    with _platform(state) as platform:
        profile = _identity(platform).golden(entity_id)
    table = Table(title=f"golden profile of entity {entity_id}")
    columns = ["attribute", "source", "source record id", "record id", "decided by"]
    for column in [*columns, "value"] if reveal else columns:
        table.add_column(column)
    for name, value in profile.attributes.items():
        row = [
            _cell(name),
            _cell(value.source),
            _cell(value.source_record_id),
            _cell(value.record_id),
            _cell(value.strategy),
        ]
        if reveal:
            row.append(_cell(value.value))
        table.add_row(*row)
    _print_table(table)
    out.print(
        f"{len(profile.record_ids)} record(s) from {', '.join(profile.sources) or 'no source'}",
        markup=False,
        highlight=False,
    )


def _register_groups() -> None:
    from cdp.cli_analytics import analytics
    from cdp.cli_audit import audit  # these import cdp.cli helpers lazily: no cycle at import time
    from cdp.cli_consent import consent
    from cdp.cli_dsr import dsr, receipts, work
    from cdp.cli_retention import retention

    cli.add_command(analytics)
    cli.add_command(audit)
    cli.add_command(consent)
    cli.add_command(dsr)
    cli.add_command(receipts)
    cli.add_command(retention)
    cli.add_command(work)


_register_groups()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the command, turning expected failures into one line."""
    try:
        result = cli.main(args=argv, prog_name="cdp", standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CdpError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        # Driver messages can echo SQL parameters; print the error class only.
        err.print(f"error: database operation failed ({type(exc).__name__})", markup=False, soft_wrap=True)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
