"""`cdp analytics ...`: segments as data and the analyses, on consented data, aggregates only.

    cdp analytics segments create billing-complainers.json
    cdp analytics segments evaluate billing-complainers
    cdp analytics segments history billing-complainers
    cdp analytics run churn --group-by department
    cdp analytics chart clv-distribution --out clv.svg

Everything printed has passed small-cohort suppression (groups smaller than k show as ``suppressed``),
and every run is audited as the operator with its purpose, as over HTTP.

Imported by :mod:`cdp.cli` (which registers :data:`analytics`); it imports the CLI's helpers only inside
functions, so either module can be imported first.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table

from cdp.cli_dsr import (
    audited,
    cell,
    emit_json,
    key_value_table,
    opened,
    operator,
    record_read,
    say,
    show_table,
    warn,
)
from cdp.errors import CdpError

if TYPE_CHECKING:
    from cdp.analytics.service import AnalyticsService
    from cdp.cli import _State
    from cdp.platform import Platform

T = TypeVar("T")
_AS_OF = click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]),
    help="Look at the history up to this moment (UTC; default now). Consent is applied as it is now.",
)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")


def _service(platform: Platform) -> AnalyticsService:
    from cdp.analytics.service import AnalyticsService

    return AnalyticsService.for_platform(platform)


def _definition(path: str) -> Any:
    """A definition from a JSON file (``-``: standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except OSError as exc:
        raise CdpError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CdpError(f"{path} is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _checked(call: Callable[[], T]) -> T:
    """Run a service call; a bad definition lists every problem, one per line."""
    from cdp.analytics.segments import SegmentDefinitionError

    try:
        return call()
    except SegmentDefinitionError as exc:
        lines = [f"  {path}: {message}" for path, messages in exc.errors.items() for message in messages]
        raise CdpError("invalid segment definition:\n" + "\n".join(lines)) from None


@click.group()
def analytics() -> None:
    """Analytics on consented data: segments, RFM, lifetime value, churn, channels, value. Aggregates
    only; groups smaller than k are suppressed."""


@analytics.group()
def segments() -> None:
    """Segment definitions (JSON), their evaluation and their size over time."""


@segments.command("list")
@_JSON
@click.pass_obj
def segments_list(state: _State, as_json: bool) -> None:
    """Saved segment definitions."""
    with opened(state) as platform, audited(platform, "analytics.read"):
        views = _service(platform).segments()
        record_read(platform, "analytics.read", segments=len(views))
    if as_json:
        emit_json([view.to_dict() for view in views])
        return
    if not views:
        say("no segment is defined yet: `cdp analytics segments create FILE.json`")
        return
    table = Table(title=f"segments ({len(views)})")
    for column in ("name", "purpose", "schedule", "version", "next run", "description"):
        table.add_column(column)
    for view in views:
        table.add_row(
            cell(view.name),
            cell(view.purpose),
            cell(view.schedule or "-"),
            str(view.version),
            cell(view.next_run_at.isoformat(timespec="minutes") if view.next_run_at else "-"),
            cell(view.description),
        )
    show_table(table)


@segments.command("show")
@click.argument("segment")
@click.pass_obj
def segments_show(state: _State, segment: str) -> None:
    """One segment's definition as JSON."""
    with opened(state) as platform, audited(platform, "analytics.read"):
        view = _service(platform).segment(segment)
        record_read(platform, "analytics.read", segment=str(view.id))
    emit_json(view.to_dict())


@segments.command("create")
@click.argument("definition", metavar="FILE")
@click.pass_obj
def segments_create(state: _State, definition: str) -> None:
    """Save the segment defined in FILE (JSON; `-` reads standard input)."""
    data = _definition(definition)
    with opened(state) as platform, audited(platform, "analytics.segments"):
        view = _checked(lambda: _service(platform).create_segment(data, actor=operator()))
    say(f"segment {view.name} saved (id {view.id}, version {view.version})")


@segments.command("update")
@click.argument("segment")
@click.argument("definition", metavar="FILE")
@click.option("--version", "expected", type=click.IntRange(1), help="Refuse unless still at this version.")
@click.pass_obj
def segments_update(state: _State, segment: str, definition: str, expected: int | None) -> None:
    """Replace SEGMENT's definition with FILE's."""
    data = _definition(definition)
    with opened(state) as platform, audited(platform, "analytics.segments"):
        service = _service(platform)
        current = service.segment(segment)
        view = _checked(
            lambda: service.update_segment(current.id, data, actor=operator(), expected_version=expected)
        )
    say(f"segment {view.name} is now at version {view.version}")


@segments.command("delete")
@click.argument("segment")
@click.pass_obj
def segments_delete(state: _State, segment: str) -> None:
    """Delete SEGMENT and its size history."""
    with opened(state) as platform, audited(platform, "analytics.segments"):
        service = _service(platform)
        view = service.segment(segment)
        service.delete_segment(view.id)
    say(f"segment {view.name} deleted")


@segments.command("preview")
@click.argument("definition", metavar="FILE")
@_JSON
@click.pass_obj
def segments_preview(state: _State, definition: str, as_json: bool) -> None:
    """Evaluate the definition in FILE without saving it."""
    data = _definition(definition)
    with opened(state) as platform, audited(platform, "analytics.run"):
        report = _checked(lambda: _service(platform).preview(data))
    _show_segment(report, as_json)


@segments.command("evaluate")
@click.argument("segment")
@_JSON
@click.pass_obj
def segments_evaluate(state: _State, segment: str, as_json: bool) -> None:
    """Evaluate SEGMENT now and add its size to its history."""
    with opened(state) as platform, audited(platform, "analytics.run"):
        report = _service(platform).evaluate(segment, actor=operator())
    _show_segment(report, as_json)


@segments.command("history")
@click.argument("segment")
@_JSON
@click.pass_obj
def segments_history(state: _State, segment: str, as_json: bool) -> None:
    """SEGMENT's size at each evaluation, oldest first."""
    with opened(state) as platform, audited(platform, "analytics.read"):
        history = _service(platform).history(segment)
        record_read(platform, "analytics.read", segment=history["segment"]["id"])
    if as_json:
        emit_json(history)
        return
    points = history["history"]
    if not points:
        say(f"segment {history['segment']['name']} has not been evaluated yet")
        return
    show_table(_rows_table(f"segment {history['segment']['name']}: size over time", points))


def _show_segment(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    size = "suppressed (fewer than k)" if report["suppressed"] else f"{report['size']:,}"
    rows: list[tuple[str, object]] = [
        ("segment", report["name"]),
        ("purpose", report["purpose"]),
        ("as of", report["as_of"][:19].replace("T", " ")),
        ("customers", size),
        ("consenting population", _number(report["population"])),
        ("left out without consent", f"{report['excluded_without_consent']:,}"),
        ("share", "-" if report["share"] is None else f"{report['share']:.1%}"),
    ]
    if report["value"]:
        value = report["value"]
        rows += [
            (f"revenue ({value['currency']})", f"{value['revenue']:,.2f}"),
            (f"cost to serve ({value['currency']})", f"{value['cost_to_serve']:,.2f}"),
            (f"profit ({value['currency']})", f"{value['profit']:,.2f}"),
        ]
    show_table(key_value_table("segment", rows))
    for note in report.get("notes", []):
        warn(f"note: {note}")
    for key, title in (
        ("by_department", "by department"),
        ("by_rfm_segment", "by RFM segment"),
        ("by_preferred_channel", "by preferred channel"),
    ):
        if report[key]:
            show_table(_rows_table(title, report[key]))


# -- analyses -----------------------------------------------------------------------------------------


@analytics.command("run")
@click.argument(
    "analysis", type=click.Choice(["rfm", "clv", "churn", "channels", "profitability", "purchases"])
)
@click.option("--segment", help="Restrict to a saved segment (name or id).")
@click.option(
    "--purpose",
    type=click.Choice(["analytics", "profiling"]),
    default="analytics",
    show_default=True,
    help="Whose data: everyone but objectors (analytics) or profiling consenters only.",
)
@click.option(
    "--group-by",
    type=click.Choice(["rfm", "department", "channel", "segments"]),
    default="rfm",
    show_default=True,
    help="Grouping of the churn and profitability breakdowns.",
)
@_AS_OF
@_JSON
@click.pass_obj
def analytics_run(
    state: _State,
    analysis: str,
    segment: str | None,
    purpose: str,
    group_by: str,
    as_of: datetime | None,
    as_json: bool,
) -> None:
    """Run one analysis over the consenting customers (or a segment of them)."""
    with opened(state) as platform, audited(platform, "analytics.run"):
        report = _service(platform).analyse(
            analysis, purpose=purpose, segment=segment, group_by=group_by, as_of=_utc(as_of)
        )
    if as_json:
        emit_json(report)
        return
    head: list[tuple[str, object]] = [
        ("analysis", report["analysis"]),
        ("purpose", report["purpose"]),
        ("as of", report["as_of"][:19].replace("T", " ")),
        ("segment", report["segment"]["name"] if report["segment"] else "all consenting customers"),
        ("customers", _number(report["customers"])),
        ("left out without consent", f"{report['excluded_without_consent']:,}"),
        ("amounts without an exchange rate", f"{report['unconverted_amounts']:,}"),
    ]
    show_table(key_value_table(analysis, head))
    _show_result(analysis, report["result"])


def _show_result(title: str, result: dict[str, Any]) -> None:
    """Scalars in one table, every list of rows in a table of its own, nested objects flattened."""
    scalars: list[tuple[str, object]] = []
    for key, value in result.items():
        label = key.replace("_", " ")
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            show_table(_rows_table(f"{title}: {label}", value))
        elif isinstance(value, dict):
            if "groups" in value and isinstance(value["groups"], list):
                show_table(_rows_table(f"{title}: by {value.get('group_by', 'group')}", value["groups"]))
            else:
                scalars += [(f"{label}: {k}", _text(v)) for k, v in value.items()]
        else:
            scalars.append((label, _text(value)))
    if scalars:
        show_table(key_value_table(f"{title}: figures", scalars))


def _rows_table(title: str, rows: list[dict[str, Any]]) -> Table:
    columns = [key for key in rows[0] if key != "suppressed"]
    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        if row.get("suppressed"):
            table.add_row(*[_text(row[c]) if row.get(c) is not None else "suppressed" for c in columns])
        else:
            table.add_row(*[_text(row.get(c)) for c in columns])
    return table


def _number(value: int | None) -> str:
    return "suppressed" if value is None else f"{value:,}"


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@analytics.command("chart")
@click.argument(
    "chart", type=click.Choice(["segment-sizes", "clv-distribution", "churn-by-segment", "channel-mix"])
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="File to write; its extension (.svg or .png) picks the format.",
)
@click.option("--segment", help="A saved segment (name or id); segment-sizes needs one.")
@click.option(
    "--group-by",
    type=click.Choice(["rfm", "department", "channel", "segments"]),
    default="rfm",
    show_default=True,
)
@_AS_OF
@click.pass_obj
def analytics_chart(
    state: _State, chart: str, out_path: Path, segment: str | None, group_by: str, as_of: datetime | None
) -> None:
    """Render a chart of the figures to an SVG or PNG file."""
    fmt = out_path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise CdpError("--out must end in .svg or .png")
    with opened(state) as platform, audited(platform, "analytics.run"):
        body = _service(platform).chart(chart, fmt, segment=segment, group_by=group_by, as_of=_utc(as_of))
    out_path.write_bytes(body)
    say(f"wrote {out_path} ({len(body):,} bytes)")
