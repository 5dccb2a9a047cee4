"""The web apps: the customers' privacy center, the department view and the compliance console.

Server-rendered pages (Flask + Jinja, no scripts) over the same OAuth-protected JSON API that other
clients use (:mod:`web.gateway`), behind the sessions of :mod:`web.auth`. ``web`` imports ``api`` and
``cdp``; neither imports ``web``, except :func:`api.create_app`, which mounts it.
"""

from __future__ import annotations

from flask import Blueprint, Flask

STATIC_MAX_AGE_SECONDS = 3600


def register_web(app: Flask) -> None:
    from web.auth import csrf_token
    from web.console import blueprint as console_blueprint
    from web.docs import blueprint as docs_blueprint
    from web.privacy import blueprint as privacy_blueprint
    from web.staff import blueprint as staff_blueprint

    assets = Blueprint("web_assets", __name__, static_folder="static", static_url_path="/web/static")

    @assets.after_request
    def _cache_assets(response):  # type: ignore[no-untyped-def]
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_SECONDS}"
        return response

    # A global, not a context variable: macros imported into templates (web/macros.html) see globals.
    app.jinja_env.globals["web_csrf_token"] = csrf_token
    app.register_blueprint(assets)
    app.register_blueprint(privacy_blueprint)
    app.register_blueprint(staff_blueprint)
    app.register_blueprint(console_blueprint)
    app.register_blueprint(docs_blueprint)
