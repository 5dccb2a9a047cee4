"""What a web page costs over the API calls it makes.

    python -m bench.web_pages [--people 300] [--rounds 60]

A seeded world (the demo data set, SQLite, :func:`tests.web.harness.build_world`) served in process by
Flask's test client. A customer signs in to the privacy center and a support agent to the department view
through the real OAuth flow; then, interleaved round by round, each page is requested and so are the API
calls the page makes, directly, with the same access token. The page's own work is the session lookup,
the in-process dispatch of those calls (:mod:`web.gateway`) and the template.

Printed per page: median and p95 latency of the page, of its API calls done directly (the baseline in
the same run), the ratio and the difference in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from bench.common import Header, console, print_table
from cdp.access.websessions import WebSessions
from tests.web.harness import build_world, sign_in_customer, sign_in_staff, web_client


def _token(world: Any, client: FlaskClient, app: str) -> str:
    cookie = client.get_cookie(f"__Host-cdp-{app}")
    assert cookie is not None
    with world.platform.db.read() as session:
        found = WebSessions(session, world.platform.vault).find(app, cookie.value)
    assert found is not None
    return str(found.state["access_token"])


def _timed(call: Callable[[], int]) -> float:
    started = time.perf_counter()
    status = call()
    elapsed = time.perf_counter() - started
    assert status == 200, status
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    Header("web pages against their API calls", {"people": args.people, "rounds": args.rounds}).print(
        ["sqlite"]
    )

    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp), people=args.people)
        email, _, entity_id = world.customer(0)
        customer = web_client(world)
        sign_in_customer(customer, world, email)
        agent = web_client(world)
        sign_in_staff(agent, world, "/staff", "support")
        api = world.app.test_client()
        customer_auth = {"Authorization": f"Bearer {_token(world, customer, 'privacy')}"}
        agent_auth = {"Authorization": f"Bearer {_token(world, agent, 'staff')}"}

        def page(client: FlaskClient, path: str) -> Callable[[], int]:
            return lambda: client.get(path).status_code

        def direct(headers: dict[str, str], *paths: str) -> Callable[[], int]:
            def run() -> int:
                statuses = {api.get(path, headers=headers).status_code for path in paths}
                return 200 if statuses == {200} else max(statuses)

            return run

        profile = f"/v1/customers/{entity_id}?purpose=support"
        cases = [
            ("privacy: your data", page(customer, "/privacy/"), direct(customer_auth, "/v1/me")),
            (
                "privacy: contact history",
                page(customer, "/privacy/history"),
                direct(customer_auth, "/v1/me/timeline?limit=50"),
            ),
            (
                "privacy: consents",
                page(customer, "/privacy/consents"),
                direct(customer_auth, "/v1/me/consents"),
            ),
            (
                "privacy: who saw your data",
                page(customer, "/privacy/access"),
                direct(customer_auth, "/v1/me/access-log?limit=50"),
            ),
            (
                "staff: customer profile",
                page(agent, f"/staff/customers/{entity_id}?purpose=support"),
                direct(
                    agent_auth,
                    profile,
                    f"/v1/customers/{entity_id}/timeline?purpose=support&limit=50",
                ),
            ),
        ]
        timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in cases}
        for _, page_call, api_call in cases:  # warm-up
            _timed(page_call)
            _timed(api_call)
        for _ in range(args.rounds):
            for name, page_call, api_call in cases:
                timings[name][0].append(_timed(page_call))
                timings[name][1].append(_timed(api_call))
        world.platform.close()

    rows = []
    for name, (pages, calls) in timings.items():
        page_median, call_median = statistics.median(pages), statistics.median(calls)
        rows.append(
            [
                name,
                f"{page_median * 1000:.1f}",
                f"{statistics.quantiles(pages, n=20)[18] * 1000:.1f}",
                f"{call_median * 1000:.1f}",
                f"{statistics.quantiles(calls, n=20)[18] * 1000:.1f}",
                f"{page_median / call_median:.2f}",
                f"{(page_median - call_median) * 1000:+.1f}",
            ]
        )
    print_table(
        "page vs its API calls made directly (ms)",
        ["page", "page p50", "page p95", "API p50", "API p95", "ratio", "page's own work"],
        rows,
        left=1,
    )
    console.print(
        "The staff profile page also reads the identity cluster when the token has identity:read; a support "
        "agent's has not, so both columns make the same two reads."
    )


if __name__ == "__main__":
    main()
