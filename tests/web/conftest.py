"""A seeded world per test module (modules that need more set-up define their own ``world``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from tests.web.harness import WebWorld, build_world, web_client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebWorld]:
    built = build_world(tmp_path_factory.mktemp("web"))
    try:
        yield built
    finally:
        built.platform.close()


@pytest.fixture
def client(world: WebWorld) -> FlaskClient:
    """A fresh browser-like client (no cookies) on the module's world."""
    return web_client(world)
