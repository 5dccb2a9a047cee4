"""Flask and flask-smorest configuration, as a config object (``app.config.from_object``).

Deployment settings (database, keyring, host, port) come from :class:`cdp.config.Settings`; this holds
only what is fixed for every deployment of this version of the HTTP layer.
"""

from __future__ import annotations

import cdp


class ApiConfig:
    API_TITLE = "cdp"
    API_VERSION = cdp.__version__
    OPENAPI_VERSION = "3.1.0"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    # No flask-smorest Swagger UI / ReDoc / RapiDoc paths: they load scripts from a CDN and inline a
    # script, which a privacy-first deployment must not do. web/docs.py serves Swagger UI at /docs/ from
    # this server's own copy, under a CSP without inline scripts.
    API_SPEC_OPTIONS = {
        "info": {
            "description": "A privacy-first customer data platform. Errors are RFC 9457 problems.",
        },
    }
    # Bodies beyond this are refused with a 413 problem before a view parses them.
    MAX_CONTENT_LENGTH = 1024 * 1024
