"""The HTTP layer: a Flask app over one :class:`~cdp.platform.Platform`.

``api`` imports ``cdp``, never the reverse; views stay thin and call services. Nothing here exposes
customer data yet: authorization (OAuth) arrives first, and until then the only routes are the index,
the health probes and the OpenAPI document.
"""

from __future__ import annotations

from flask import Flask

from api.analytics import blp as analytics_blp
from api.audit import blp as audit_blp
from api.audit import self_blp as audit_self_blp
from api.config import ApiConfig
from api.consent import blp as consent_blp
from api.context import EXTENSION_KEY
from api.dsr import blp as dsr_blp
from api.dsr import receipts_blp
from api.dsr import self_blp as dsr_self_blp
from api.health import blp as health_blp
from api.hooks import register_hooks
from api.identity import blp as identity_blp
from api.ingest import blp as ingest_blp
from api.keys import blp as keys_blp
from api.oauth import blp as oauth_blp
from api.oauth import create_authorization_server
from api.profiles import blp as profiles_blp
from api.retention import blp as retention_blp
from api.search import blp as search_blp
from api.signin import blp as signin_blp
from api.smorest import CdpApi
from api.work import blp as work_blp
from cdp.access.roles import SCOPES
from cdp.config import Settings, load_settings
from cdp.platform import Platform
from web import register_web

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> Flask:
    """Build the app. Tests pass a ``platform`` they own; servers pass nothing and the app opens one
    from the configuration, failing at start-up (not on the first request) if it is unusable."""
    if platform is None:
        platform = Platform.open(settings or load_settings())
    # No static folder: the API serves no files, and an implicit /static route is one more surface.
    app = Flask(__name__, static_folder=None)
    app.config.from_object(ApiConfig)
    app.extensions[EXTENSION_KEY] = platform
    register_hooks(app)
    api = CdpApi(app)
    api.register_blueprint(health_blp)
    api.register_blueprint(ingest_blp)
    api.register_blueprint(identity_blp)
    api.register_blueprint(profiles_blp)
    api.register_blueprint(search_blp)
    api.register_blueprint(audit_blp)
    api.register_blueprint(audit_self_blp)
    api.register_blueprint(keys_blp)
    api.register_blueprint(consent_blp)
    api.register_blueprint(dsr_blp)
    api.register_blueprint(dsr_self_blp)
    api.register_blueprint(receipts_blp)
    api.register_blueprint(retention_blp)
    api.register_blueprint(work_blp)
    api.register_blueprint(analytics_blp)
    api.spec.components.security_scheme(
        "oauth2",
        {
            "type": "oauth2",
            "flows": {
                "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": dict(SCOPES)},
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize",
                    "tokenUrl": "/oauth/token",
                    "refreshUrl": "/oauth/token",
                    "scopes": dict(SCOPES),
                },
            },
        },
    )
    create_authorization_server(app)
    app.register_blueprint(oauth_blp)
    app.register_blueprint(signin_blp)
    register_web(app)
    return app
