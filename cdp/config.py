"""One Settings object for the whole platform.

Sources, later ones winning: built-in defaults (safe for a laptop demo) → a TOML file (``CDP_CONFIG``,
else ``./cdp.toml`` when present) → ``CDP_*`` environment variables. Nothing else in the code base reads
``os.environ``, so every knob is listed here and documented in README.md.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cdp.errors import ConfigurationError
from cdp.serving import default_workers

DEFAULT_DATA_DIR = Path("var")


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Secrets (keyring data) are excluded from ``repr`` so they never reach logs."""

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    keyring: str = ""
    keyring_data: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=default_workers)
    """gunicorn sync workers of ``cdp serve``: two per core by default (see :mod:`cdp.serving`)."""
    rotation_batch_size: int = 1000
    issuer: str = ""
    """OAuth issuer identifier (``iss`` of every token); defaults to http://host:port."""
    api_audience: str = "cdp-api"
    access_token_ttl_seconds: int = 300
    refresh_token_ttl_seconds: int = 8 * 3600
    """Lifetime of a sign-in (refresh-token family): a working day, then sign in again."""
    authorization_code_ttl_seconds: int = 60
    login_max_failures: int = 5
    """Failed staff sign-ins in a row before the account locks."""
    login_lockout_seconds: int = 900
    login_code_ttl_seconds: int = 600
    """Lifetime of a customer's emailed one-time sign-in code."""
    login_code_max_attempts: int = 5
    sqlite_busy_timeout_ms: int = 10_000
    sqlite_cache_mib: int = 32
    """SQLite page cache per connection (SQLite's default is 2 MB)."""
    sqlite_mmap_mib: int = 1024
    """SQLite memory-mapped I/O window (address space, shared with the OS page cache; 0 turns it off):
    for the CLI and batch work (ingest, resolution, sweeps), where one process writes."""
    sqlite_wal_autocheckpoint: int = 1000
    """WAL pages after which a committing SQLite connection copies the log back into the database (SQLite's
    own default)."""
    sqlite_server_mmap_mib: int = 0
    """The memory map of the HTTP server's workers (:meth:`for_http_workers`), off by default. Every read
    appends an audit entry, so with several workers each commit makes the other workers' connections
    drop their page cache at their next statement; with a memory map that also unmaps the window and
    faults it back in page by page. Off, four workers on 2 cores served 22 % more authorized reads per
    second at 19 % less CPU each (``bench.http_reads --variant``, paired rounds)."""
    sqlite_server_wal_autocheckpoint: int = 16384
    """The HTTP server workers' WAL checkpoint threshold (64 MiB of 4 KiB pages): high, because the
    sequencer checkpoints after every tick (:func:`cdp.jobs.audit_tick`), off the request path; this is
    the safety net for when no sequencer runs. At SQLite's 1,000 pages every hundred-odd reads one
    request copied the log back and synced it: leaving it to the sequencer, four workers served 15 % more
    reads per second at 14 % less CPU each (``bench.http_reads --variant``, paired rounds)."""
    audit_seal_interval_ms: int = 500
    """How often the sequencer links pending audit entries into the chain."""
    background_jobs_in_workers: bool = True
    """Whether each server worker runs the background jobs itself (a plain ``gunicorn api.wsgi:app``).
    ``cdp serve`` turns it off for its workers and runs the jobs in a process of their own (``cdp
    jobs``), so request threads never share an interpreter with the sequencer's hashing."""
    audit_checkpoint_interval_seconds: int = 300
    """How often the chain head gets a signed checkpoint (when it moved)."""
    audit_retention_days: int = 4018
    """How long audit entries are kept: eleven years by default, longer than the longest data retention
    (ten years for bookkeeping); checked against the retention policy when jobs start and before pruning."""
    dsr_deadline_days: int = 30
    """Statutory deadline of a data-subject request (GDPR Art 12(3): one month)."""
    dsr_erasure_requires_approval: bool = True
    """Whether a DPO must approve an erasure before it executes."""
    dsr_export_ttl_hours: int = 72
    """How long a data-subject export can be downloaded (once) before it is shredded."""
    dsr_code_ttl_minutes: int = 15
    """How long the one-time code that verifies a requester stays valid."""
    retention_policy_file: Path | None = None
    """A retention policy TOML to use instead of the packaged one."""
    retention_sweep_cron: str = "0 3 * * *"
    """When the scheduled retention sweep runs (crontab syntax, UTC)."""
    analytics_model_file: Path | None = None
    """An analytics model TOML (revenue kinds, rates, costs, k, CLV and churn settings) to use instead of
    the packaged ``cdp/analytics/model.toml``."""
    analytics_check_seconds: int = 300
    """How often the scheduler looks for segments whose own schedule is due."""

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'data' / 'cdp.db'}")
        if not self.issuer:
            object.__setattr__(self, "issuer", f"http://{self.host}:{self.port}")
        if not 30 <= self.access_token_ttl_seconds <= 3600:
            raise ConfigurationError(
                "access_token_ttl_seconds must be between 30 and 3600 (short-lived tokens)"
            )
        if not 300 <= self.refresh_token_ttl_seconds <= 30 * 86400:
            raise ConfigurationError("refresh_token_ttl_seconds must be between 300 and 2592000 (30 days)")
        if not 10 <= self.authorization_code_ttl_seconds <= 600:
            raise ConfigurationError("authorization_code_ttl_seconds must be between 10 and 600")
        if not 1 <= self.login_max_failures <= 100:
            raise ConfigurationError("login_max_failures must be between 1 and 100")
        if not 1 <= self.login_lockout_seconds <= 86400:
            raise ConfigurationError("login_lockout_seconds must be between 1 and 86400")
        if not 60 <= self.login_code_ttl_seconds <= 3600:
            raise ConfigurationError("login_code_ttl_seconds must be between 60 and 3600")
        if not 1 <= self.login_code_max_attempts <= 20:
            raise ConfigurationError("login_code_max_attempts must be between 1 and 20")
        if not self.keyring:
            object.__setattr__(self, "keyring", f"file:{self.data_dir / 'keys' / 'keyring.json'}")
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port must be between 1 and 65535, got {self.port}")
        if self.workers < 1:
            raise ConfigurationError(f"workers must be at least 1, got {self.workers}")
        if not 50 <= self.audit_seal_interval_ms <= 60_000:
            raise ConfigurationError("audit_seal_interval_ms must be between 50 and 60000")
        if not 1 <= self.audit_checkpoint_interval_seconds <= 86400:
            raise ConfigurationError("audit_checkpoint_interval_seconds must be between 1 and 86400")
        if not 365 <= self.audit_retention_days <= 36500:
            raise ConfigurationError(
                "audit_retention_days must be between 365 and 36500: the audit log outlives the data"
            )
        if not 1 <= self.dsr_deadline_days <= 90:
            raise ConfigurationError("dsr_deadline_days must be between 1 and 90")
        if not 1 <= self.dsr_export_ttl_hours <= 720:
            raise ConfigurationError("dsr_export_ttl_hours must be between 1 and 720")
        if not 1 <= self.dsr_code_ttl_minutes <= 1440:
            raise ConfigurationError("dsr_code_ttl_minutes must be between 1 and 1440")
        if not 30 <= self.analytics_check_seconds <= 86400:
            raise ConfigurationError("analytics_check_seconds must be between 30 and 86400")
        if len(self.retention_sweep_cron.split()) != 5:
            raise ConfigurationError("retention_sweep_cron must have five fields, e.g. '0 3 * * *'")
        if not 2 <= self.sqlite_cache_mib <= 4096:
            raise ConfigurationError("sqlite_cache_mib must be between 2 and 4096")
        if not 0 <= self.sqlite_mmap_mib <= 65536:
            raise ConfigurationError("sqlite_mmap_mib must be between 0 and 65536")
        if not 0 <= self.sqlite_server_mmap_mib <= 65536:
            raise ConfigurationError("sqlite_server_mmap_mib must be between 0 and 65536")
        for name in ("sqlite_wal_autocheckpoint", "sqlite_server_wal_autocheckpoint"):
            if not 100 <= getattr(self, name) <= 1_000_000:
                raise ConfigurationError(f"{name} must be between 100 and 1000000 pages")
        if self.rotation_batch_size < 1:
            raise ConfigurationError("rotation_batch_size must be at least 1")

    @property
    def keyring_kind(self) -> str:
        """``file`` or ``env``; validated when the keyring is opened."""
        return self.keyring.split(":", 1)[0]

    @property
    def keyring_path(self) -> Path:
        if self.keyring_kind != "file":
            raise ConfigurationError(f"keyring {self.keyring_kind!r} has no file path")
        return Path(self.keyring.split(":", 1)[1])

    def for_http_workers(self) -> Settings:
        """These settings as an HTTP server worker applies them: its own SQLite memory map and WAL
        checkpoint threshold."""
        return replace(
            self,
            sqlite_mmap_mib=self.sqlite_server_mmap_mib,
            sqlite_wal_autocheckpoint=self.sqlite_server_wal_autocheckpoint,
        )

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_ENV_NAMES = {
    "CDP_DATA_DIR": "data_dir",
    "CDP_DATABASE_URL": "database_url",
    "CDP_KEYRING": "keyring",
    "CDP_KEYRING_DATA": "keyring_data",
    "CDP_HOST": "host",
    "CDP_PORT": "port",
    "CDP_WORKERS": "workers",
    "CDP_ROTATION_BATCH_SIZE": "rotation_batch_size",
    "CDP_ISSUER": "issuer",
    "CDP_API_AUDIENCE": "api_audience",
    "CDP_ACCESS_TOKEN_TTL_SECONDS": "access_token_ttl_seconds",
    "CDP_REFRESH_TOKEN_TTL_SECONDS": "refresh_token_ttl_seconds",
    "CDP_AUTHORIZATION_CODE_TTL_SECONDS": "authorization_code_ttl_seconds",
    "CDP_LOGIN_MAX_FAILURES": "login_max_failures",
    "CDP_LOGIN_LOCKOUT_SECONDS": "login_lockout_seconds",
    "CDP_LOGIN_CODE_TTL_SECONDS": "login_code_ttl_seconds",
    "CDP_LOGIN_CODE_MAX_ATTEMPTS": "login_code_max_attempts",
    "CDP_SQLITE_BUSY_TIMEOUT_MS": "sqlite_busy_timeout_ms",
    "CDP_SQLITE_CACHE_MIB": "sqlite_cache_mib",
    "CDP_SQLITE_MMAP_MIB": "sqlite_mmap_mib",
    "CDP_SQLITE_SERVER_MMAP_MIB": "sqlite_server_mmap_mib",
    "CDP_SQLITE_WAL_AUTOCHECKPOINT": "sqlite_wal_autocheckpoint",
    "CDP_SQLITE_SERVER_WAL_AUTOCHECKPOINT": "sqlite_server_wal_autocheckpoint",
    "CDP_AUDIT_SEAL_INTERVAL_MS": "audit_seal_interval_ms",
    "CDP_BACKGROUND_JOBS_IN_WORKERS": "background_jobs_in_workers",
    "CDP_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "audit_checkpoint_interval_seconds",
    "CDP_AUDIT_RETENTION_DAYS": "audit_retention_days",
    "CDP_DSR_DEADLINE_DAYS": "dsr_deadline_days",
    "CDP_DSR_ERASURE_REQUIRES_APPROVAL": "dsr_erasure_requires_approval",
    "CDP_DSR_EXPORT_TTL_HOURS": "dsr_export_ttl_hours",
    "CDP_DSR_CODE_TTL_MINUTES": "dsr_code_ttl_minutes",
    "CDP_RETENTION_POLICY_FILE": "retention_policy_file",
    "CDP_RETENTION_SWEEP_CRON": "retention_sweep_cron",
    "CDP_ANALYTICS_MODEL_FILE": "analytics_model_file",
    "CDP_ANALYTICS_CHECK_SECONDS": "analytics_check_seconds",
}


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def _coerce(name: str, raw: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = kinds[name]
    try:
        if kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise TypeError
            return int(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.strip().lower() in _BOOLEANS:
                return _BOOLEANS[raw.strip().lower()]
            raise TypeError
        if not isinstance(raw, str):
            raise TypeError
        return raw
    except (TypeError, ValueError):
        raise ConfigurationError(f"setting {name!r} must be of type {kind}") from None


def load_settings(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Build the Settings from defaults, an optional TOML file and the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    path = config_file or (Path(env["CDP_CONFIG"]) if env.get("CDP_CONFIG") else Path("cdp.toml"))
    explicit = config_file is not None or bool(env.get("CDP_CONFIG"))
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read config file {path}: {exc}") from None
        section = data.get("cdp", data)
        if not isinstance(section, dict):
            raise ConfigurationError(f"{path}: [cdp] must be a table of settings")
        if section is not data and set(data) - {"cdp"}:
            raise ConfigurationError(f"{path}: put every setting under [cdp] or none of them")
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigurationError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
        if "keyring_data" in section:
            raise ConfigurationError(f"{path}: keyring_data is a secret; pass it as CDP_KEYRING_DATA only")
        values.update({k: _coerce(k, v) for k, v in section.items()})
    elif explicit:
        raise ConfigurationError(f"config file {path} does not exist")

    for env_name, attr in _ENV_NAMES.items():
        if env.get(env_name):
            values[attr] = _coerce(attr, env[env_name])
    return Settings(**values)
