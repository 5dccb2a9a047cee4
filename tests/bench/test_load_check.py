"""bench/load --check, the verdict that scripts/test.sh applies to the PostgreSQL-restart load run."""

from __future__ import annotations

from bench.load import RECOVERY_GRACE_SECONDS, Tally, _check


def _tally(*answers: tuple[float, int, bool]) -> Tally:
    tally = Tally()
    for at, status, ok in answers:
        tally.record("read", 0.01, ok, "", status)
        tally.outcomes[-1] = (at, ok)
    return tally


def test_a_clean_run_passes() -> None:
    assert _check(_tally((1.0, 200, True), (2.0, 201, True)), []) == []


def test_any_failure_without_a_restart_fails() -> None:
    assert _check(_tally((1.0, 200, True), (2.0, 503, False)), []) == [
        "1 requests failed with no database restart"
    ]


def test_503s_while_the_database_restarts_pass_if_it_recovers() -> None:
    tally = _tally((1.0, 200, True), (10.5, 503, False), (11.0, 0, False), (12.5, 200, True))
    assert _check(tally, [10.0, 12.0]) == []


def test_a_500_during_the_restart_fails() -> None:
    tally = _tally((10.5, 500, False), (12.5, 200, True))
    assert _check(tally, [10.0, 12.0]) == ["server errors other than 503: {500: 1}"]


def test_failures_outlasting_the_grace_period_fail() -> None:
    late = 12.0 + RECOVERY_GRACE_SECONDS + 1
    tally = _tally((10.5, 503, False), (late, 503, False), (late + 1, 200, True))
    assert _check(tally, [10.0, 12.0]) == [
        f"1 failures more than {RECOVERY_GRACE_SECONDS:.0f} s after the restart ended"
    ]


def test_no_success_after_the_restart_fails() -> None:
    tally = _tally((1.0, 200, True), (10.5, 503, False), (12.5, 503, False))
    assert "no request succeeded after the restart" in _check(tally, [10.0, 12.0])
