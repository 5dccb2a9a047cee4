"""WSGI entry point: ``gunicorn api.wsgi:app``.

Each worker imports this module and opens its own platform (database pool and keyring), so no
connection is ever shared across a fork, and starts its own background jobs (the audit sequencer; see
:mod:`cdp.jobs`). Do not combine with ``--preload`` without disposing the engine's pool and starting the
jobs in a ``post_fork`` hook.
"""

from __future__ import annotations

from api import create_app
from api.context import EXTENSION_KEY
from cdp.jobs import start_background_jobs

app = create_app()
scheduler = start_background_jobs(app.extensions[EXTENSION_KEY])
