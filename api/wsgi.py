"""WSGI entry point: ``gunicorn api.wsgi:app``.

Each worker imports this module and opens its own platform (database pool and keyring), so no
connection is ever shared across a fork. Do not combine with ``--preload`` without disposing the
engine's pool in a ``post_fork`` hook.
"""

from __future__ import annotations

from api import create_app

app = create_app()
