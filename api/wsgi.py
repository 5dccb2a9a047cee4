"""WSGI entry point: ``gunicorn api.wsgi:app``.

Each worker imports this module and opens its own platform (database pool and keyring), so no
connection is ever shared across a fork, and records the field policy in force if the audit log does
not name it yet (:mod:`cdp.access.activation`). Unless ``background_jobs_in_workers`` is off, each worker
also starts its own background jobs (the audit sequencer and the rest of :mod:`cdp.jobs`): right for a
bare ``gunicorn api.wsgi:app``. ``cdp serve`` turns it off and runs them once, in a ``cdp jobs`` process
beside the workers. Do not combine with ``--preload`` without disposing the engine's pool and starting
the jobs in a ``post_fork`` hook.

Workers open the platform with :meth:`~cdp.config.Settings.for_http_workers`: their own SQLite memory map
(off: several processes appending audit entries make a map a cost, not a saving) and a high WAL
checkpoint threshold (the sequencer checkpoints after every tick, so requests do not).
"""

from __future__ import annotations

from api import create_app
from api.context import EXTENSION_KEY
from cdp.access.activation import record_policy_in_force
from cdp.access.policy import FieldPolicy
from cdp.audit import AuditActor, acting_as
from cdp.config import load_settings
from cdp.jobs import start_background_jobs

app = create_app(load_settings().for_http_workers())
platform = app.extensions[EXTENSION_KEY]
with acting_as(AuditActor.system("startup")):
    record_policy_in_force(platform.db, FieldPolicy.default())
scheduler = start_background_jobs(platform) if platform.settings.background_jobs_in_workers else None
