"""Server-side charts of the analyses' outputs, as SVG or PNG bytes.

Each function takes the plain dicts an analysis already returned, after small-cohort suppression, and never
looks at a Dataset: a chart can only show what the JSON shows. A suppressed cell has no value, so it is drawn
as an empty hatched bar (or a hollow marker) labelled ``< k`` — drawing it as zero, or leaving it out, would
tell the reader something false about the group.

Rendering uses matplotlib's object-oriented API only (``Figure`` + Agg canvas, never pyplot), but some
settings matplotlib reads at render time are process-global ``rcParams`` (the SVG id salt, the font type).
``rc_context`` changes them for the whole process while it is open, so renders are serialized behind one
lock: two web requests drawing at once would otherwise restore each other's settings half-way. A chart
takes tens of milliseconds, so the queue is short.

Output is deterministic: a fixed id salt, text kept as text (``svg.fonttype = none``) in the bundled
DejaVu Sans, and no creation date in the metadata, so the same input gives the same bytes (cacheable,
diffable, testable).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from io import BytesIO
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

FORMATS = ("svg", "png")

CHARTS: dict[str, str] = {
    "segment-sizes": "Number of customers in a segment at each evaluation, oldest first; evaluations whose "
    "size is suppressed are shown as hollow markers without a value.",
    "clv-distribution": "Customers per band of predicted customer lifetime value (BG/NBD + Gamma-Gamma) over "
    "the model's horizon, in the base currency; the top band is open-ended.",
    "churn-by-segment": "Mean predicted churn risk per segment (probability of no activity within the churn "
    "horizon), with the number of customers and the share at high risk.",
    "channel-mix": "Customers per preferred contact channel, and the response rate to outbound contacts "
    "per channel.",
}

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe & Ito's palette, distinguishable under the common colour-vision deficiencies."""

WITHHELD_LABEL = "< k"
NO_VALUE_LABEL = "n/a"

_INK = "#222222"
_MUTED = "#5f5f5f"
_WITHHELD = "#8c8c8c"
_WIDTH_IN = 8.0
_HEADER_IN = 0.8
_FOOTER_IN = 0.4
_LABEL_CHARS = 32

_STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "cdp",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9.5,
    "text.parse_math": False,
    "text.usetex": False,
    "text.color": _INK,
    "axes.labelcolor": _INK,
    "axes.edgecolor": "#555555",
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "hatch.linewidth": 0.8,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "date.converter": "concise",
    "timezone": "UTC",
}

_METADATA: dict[str, dict[str, Any]] = {"svg": {"Date": None}, "png": {"Software": None}}

_RENDER_LOCK = threading.Lock()


class _Withheld:
    """A cell the analysis suppressed: it has a value, which the chart must not show."""


class _Missing:
    """A cell with no value that was not suppressed (nothing to compute): shown as n/a, never as zero."""


WITHHELD = _Withheld()
MISSING = _Missing()
Cell = float | _Withheld | _Missing


def segment_sizes(name: str, history: list[dict[str, Any]], fmt: str, *, k: int) -> bytes:
    """Size of segment ``name`` at each evaluation (``history`` oldest first).

    Points are joined only between consecutive shown sizes: a suppressed evaluation breaks the line, since
    joining across it would imply sizes in between that nobody computed."""
    _check_format(fmt)
    population = next(
        (int(entry["population"]) for entry in reversed(history) if entry.get("population") is not None), None
    )
    evaluations = f"{len(history):,} evaluation{'s' if len(history) != 1 else ''}"
    subtitle = _subtitle(population, k, evaluations)

    def draw(fig: Figure) -> None:
        if not history:
            _no_data(fig, "not evaluated yet")
            return
        ax = fig.add_subplot()
        moments = np.array([_moment(str(entry["evaluated_at"])) for entry in history], dtype="datetime64[s]")
        cells = [_cell(entry, "size") for entry in history]
        shown = [c for c in cells if isinstance(c, float)]
        line = ax.plot(
            moments,
            [c if isinstance(c, float) else math.nan for c in cells],
            color=OKABE_ITO[0],
            marker="o",
            markersize=4.5,
            linewidth=1.8,
            label="customers in segment",
        )[0]
        line.set_gid("sizes")
        withheld = moments[[isinstance(c, _Withheld) for c in cells]]
        if len(withheld):
            markers = ax.plot(
                withheld,
                [0.04] * len(withheld),
                transform=ax.get_xaxis_transform(),
                linestyle="none",
                marker="o",
                markersize=6,
                markerfacecolor="none",
                markeredgecolor=_WITHHELD,
                markeredgewidth=1.2,
                clip_on=False,
                label=f"{WITHHELD_LABEL}: size suppressed (no value shown)",
            )[0]
            markers.set_gid("withheld-points")
        ax.set_ylim(bottom=0, top=max(shown) * 1.12 if shown and max(shown) > 0 else 1)
        if shown:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        else:
            ax.set_yticks([])
        ax.set_ylabel("customers in segment")
        ax.set_xlabel("evaluated at (UTC)")
        ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, borderaxespad=0.2)

    return _render(fmt, 4.5, f"Segment size: {_short(name, 60)}", subtitle, _footnote(k), draw)


def clv_distribution(
    clv: dict[str, Any], fmt: str, *, k: int | None = None, population: int | None = None
) -> bytes:
    """Customers per band of predicted lifetime value.

    ``k`` defaults to the threshold the result records (``clv["privacy"]["min_group_size"]``) when present;
    pass it when the result does not carry it, so the footnote can name it."""
    _check_format(fmt)
    k = k if k is not None else _recorded_k(clv)
    currency = str(clv.get("currency") or "")
    horizon = clv.get("horizon_months")
    bands = list(clv.get("histogram") or [])
    customers = clv.get("customers")
    details = []
    if horizon is not None:
        details.append(f"{int(horizon)}-month horizon")
    mean = _number(clv.get("mean"))
    if mean is not None:
        details.append(f"mean {_amount(mean)} {currency}".rstrip())
    subtitle = _subtitle(population if population is not None else customers, k, *details)

    def draw(fig: Figure) -> None:
        if not bands:
            _no_data(fig, "no data")
            return
        ax = fig.add_subplot()
        labels = [_band_label(band.get("from"), band.get("to"), currency) for band in bands]
        cells = [_cell(band, "customers") for band in bands]
        _vertical_bars(ax, labels, cells, color=OKABE_ITO[0], value_format=_count)
        ax.set_ylabel("customers")
        ax.set_xlabel(f"predicted lifetime value ({currency})" if currency else "predicted lifetime value")
        if len(bands) > 6:
            ax.tick_params(axis="x", labelrotation=30)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
                tick.set_rotation_mode("anchor")

    title = "Customer lifetime value distribution"
    return _render(fmt, 4.5, title, subtitle, _footnote(k), draw)


def churn_by_segment(
    rows: list[dict[str, Any]], fmt: str, *, k: int, horizon_days: int, population: int | None = None
) -> bytes:
    """Mean churn risk per segment as horizontal bars, in the order given (top to bottom)."""
    _check_format(fmt)
    subtitle = _subtitle(population, k, f"risk of no activity in the next {horizon_days} days")

    def draw(fig: Figure) -> None:
        if not rows:
            _no_data(fig, "no data")
            return
        ax = fig.add_subplot()
        cells = [_cell(row, "mean_risk") for row in rows]
        labels = []
        for row, cell in zip(rows, cells, strict=True):
            count = row.get("customers")
            size = f"{int(count):,} customers" if count is not None and isinstance(cell, float) else ""
            labels.append(f"{_short(str(row.get('segment', '')))}\n{size}".rstrip())
        notes = []
        for row in rows:
            share = _number(row.get("high_risk_share"))
            notes.append(f" · {_percent(share)} high risk" if share is not None else "")
        _horizontal_bars(ax, labels, cells, color=OKABE_ITO[5], value_format=_percent, notes=notes)
        ax.set_xlim(0, 1.3)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        ax.set_xlabel("mean churn risk")

    height = max(3.4, 1.9 + 0.42 * len(rows))
    return _render(fmt, height, "Churn risk by segment", subtitle, _footnote(k), draw)


def channel_mix(channels: dict[str, Any], fmt: str, *, k: int, population: int | None = None) -> bytes:
    """Preferred channel counts (left) and response rates per channel (right).

    A channel keeps one colour in both panels, so the eye can pair them without reading the labels."""
    _check_format(fmt)
    preferred = list(channels.get("preferred") or [])
    rates = list(channels.get("response_rates") or [])
    has_no_preference = "no_preference" in channels
    if population is None and channels.get("population") is not None:
        population = int(channels["population"])
    names = sorted({str(row.get("channel")) for row in [*preferred, *rates]})
    colours = {name: OKABE_ITO[i % (len(OKABE_ITO) - 1)] for i, name in enumerate(names)}
    subtitle = _subtitle(population, k)

    def draw(fig: Figure) -> None:
        if not preferred and not rates and not has_no_preference:
            _no_data(fig, "no data")
            return
        left, right = fig.subplots(1, 2)
        left.set_title("Preferred channel")
        right.set_title("Response rate to outbound contacts")
        if preferred or has_no_preference:
            labels = [_short(str(row.get("channel")), 20) for row in preferred]
            cells = [_cell(row, "customers") for row in preferred]
            bar_colours = [colours[str(row.get("channel"))] for row in preferred]
            if has_no_preference:
                labels.append("no preference")
                count = _number(channels.get("no_preference"))
                cells.append(WITHHELD if count is None else count)
                bar_colours.append("#bbbbbb")
            _horizontal_bars(left, labels, cells, color=bar_colours, value_format=_count, panel="preferred-")
            _pad_right(left, cells)
            left.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
            left.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
            left.set_xlabel("customers")
        else:
            _panel_note(left, "no data")
        if rates:
            labels = [_short(str(row.get("channel")), 20) for row in rates]
            cells = [_cell(row, "rate") for row in rates]
            notes = []
            for row, cell in zip(rates, cells, strict=True):
                responses, outbound = row.get("responses"), row.get("outbound")
                shown = isinstance(cell, float) and responses is not None and outbound is not None
                notes.append(f" ({int(responses):,} of {int(outbound):,})" if shown else "")
            _horizontal_bars(
                right,
                labels,
                cells,
                color=[colours[str(row.get("channel"))] for row in rates],
                value_format=_percent,
                notes=notes,
                panel="response-",
            )
            right.set_xlim(0, 1.45)
            right.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
            right.xaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            right.set_xlabel("contacts answered within the response window")
        else:
            _panel_note(right, "no data")

    rows = max(len(preferred) + int(has_no_preference), len(rates), 1)
    height = max(3.6, 2.0 + 0.4 * rows)
    return _render(fmt, height, "Channel mix", subtitle, _footnote(k), draw)


def _render(
    fmt: str, height: float, title: str, subtitle: str, footnote: str, draw: Callable[[Figure], None]
) -> bytes:
    """One figure of ``height`` inches: a header (title, subtitle), the plot area laid out by constrained
    layout inside the space left, and a footnote. Fixed header and footer heights in inches keep charts of
    different heights visually alike."""
    buffer = BytesIO()
    with _RENDER_LOCK, matplotlib.rc_context(_STYLE):
        bottom, top = _FOOTER_IN / height, 1 - _HEADER_IN / height
        fig = Figure(
            figsize=(_WIDTH_IN, height),
            layout=ConstrainedLayoutEngine(rect=(0.0, bottom, 1.0, top - bottom), h_pad=0.06, w_pad=0.1),
        )
        FigureCanvasAgg(fig)
        fig.text(0.015, 1 - 0.15 / height, title, fontsize=12.5, fontweight="bold", va="top", gid="title")
        fig.text(0.015, 1 - 0.45 / height, subtitle, fontsize=9, color=_MUTED, va="top", gid="subtitle")
        fig.text(0.015, 0.1 / height, footnote, fontsize=8, color=_MUTED, va="bottom", gid="footnote")
        draw(fig)
        fig.savefig(buffer, format=fmt, metadata=_METADATA[fmt])
    return buffer.getvalue()


def _vertical_bars(
    ax: Axes,
    labels: Sequence[str],
    cells: Sequence[Cell],
    *,
    color: str,
    value_format: Callable[[float], str],
) -> None:
    """Bars for shown values, a full-height hatched band for withheld ones (a short stub would read as
    "few", which is false for a group suppressed because its complement is small)."""
    shown = [c for c in cells if isinstance(c, float)]
    top = max(shown) if shown and max(shown) > 0 else 1.0
    for i, cell in enumerate(cells):
        if isinstance(cell, float):
            ax.bar(i, cell, width=0.75, color=color, gid=f"bar-{i}")
            _value_label(ax, i, cell, value_format(cell), gid=f"value-{i}", horizontal=False)
        else:
            if isinstance(cell, _Withheld):
                ax.axvspan(i - 0.375, i + 0.375, **_withheld_style(), gid=f"withheld-{i}")
            _placeholder(ax, (i, 0.03), cell, gid=f"value-{i}", horizontal=False)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, top * 1.15)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def _horizontal_bars(
    ax: Axes,
    labels: Sequence[str],
    cells: Sequence[Cell],
    *,
    color: str | Sequence[str],
    value_format: Callable[[float], str],
    notes: Sequence[str] | None = None,
    panel: str = "",
) -> None:
    """Rows top to bottom in the given order; withheld rows span the full width, hatched. ``panel``
    prefixes the element ids so two panels' bars stay distinguishable in the SVG."""
    colours = [color] * len(cells) if isinstance(color, str) else list(color)
    for i, cell in enumerate(cells):
        if isinstance(cell, float):
            ax.barh(i, cell, height=0.7, color=colours[i], gid=f"{panel}bar-{i}")
            note = notes[i] if notes else ""
            _value_label(ax, i, cell, value_format(cell) + note, gid=f"{panel}value-{i}", horizontal=True)
        else:
            if isinstance(cell, _Withheld):
                ax.axhspan(i - 0.35, i + 0.35, **_withheld_style(), gid=f"{panel}withheld-{i}")
            _placeholder(ax, (0.01, i), cell, gid=f"{panel}value-{i}", horizontal=True)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.4, -0.6)
    ax.tick_params(axis="y", length=0)


def _pad_right(ax: Axes, cells: Iterable[Cell]) -> None:
    """Room to the right of the longest bar for its label."""
    shown = [c for c in cells if isinstance(c, float)]
    top = max(shown) if shown and max(shown) > 0 else 1.0
    ax.set_xlim(0, top * 1.3)


def _value_label(ax: Axes, position: int, value: float, text: str, *, gid: str, horizontal: bool) -> None:
    if horizontal:
        ax.annotate(
            text,
            (value, position),
            xytext=(3, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=8.5,
            gid=gid,
        )
    else:
        ax.annotate(
            text,
            (position, value),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8.5,
            gid=gid,
        )


def _placeholder(ax: Axes, at: tuple[float, float], cell: Cell, *, gid: str, horizontal: bool) -> None:
    """``< k`` for a withheld cell, ``n/a`` for one without a value, on a white patch over the hatching."""
    ax.text(
        *at,
        WITHHELD_LABEL if isinstance(cell, _Withheld) else NO_VALUE_LABEL,
        transform=ax.get_yaxis_transform() if horizontal else ax.get_xaxis_transform(),
        ha="left" if horizontal else "center",
        va="center" if horizontal else "bottom",
        fontsize=8.5,
        color=_MUTED,
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        gid=gid,
    )


def _withheld_style() -> dict[str, Any]:
    return {"fill": False, "hatch": "////", "edgecolor": _WITHHELD, "linewidth": 0.8}


def _no_data(fig: Figure, message: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    _panel_note(ax, message)


def _panel_note(ax: Axes, message: str) -> None:
    ax.text(
        0.5,
        0.5,
        message,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=11,
        color=_MUTED,
        gid="no-data",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unsupported chart format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _cell(row: dict[str, Any], key: str) -> Cell:
    if row.get("suppressed"):
        return WITHHELD
    value = _number(row.get(key))
    return MISSING if value is None else value


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _recorded_k(result: dict[str, Any]) -> int | None:
    privacy = result.get("privacy")
    if isinstance(privacy, dict) and privacy.get("min_group_size") is not None:
        return int(privacy["min_group_size"])
    return None


def _subtitle(population: Any, k: int | None, *details: str) -> str:
    parts = [f"population {int(population):,} customers"] if population is not None else []
    parts.extend(details)
    if k is not None:
        parts.append(f"k = {k}")
    return " · ".join(parts)


def _footnote(k: int | None) -> str:
    if k is None:
        return f"{WITHHELD_LABEL}: groups below the privacy threshold k are suppressed; no value is shown."
    return (
        f"{WITHHELD_LABEL}: groups smaller than k={k} are suppressed (so are groups leaving fewer than {k} "
        "others); no value is shown for them."
    )


def _moment(text: str) -> datetime:
    """ISO 8601 to a naive UTC datetime (numpy's datetime64 has no zone); a naive input is taken as UTC,
    as the store keeps UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _band_label(low: Any, high: Any, currency: str) -> str:
    low_value, high_value = _number(low), _number(high)
    if high_value is None and low_value is not None:
        return f"≥ {_amount(low_value)} {currency}".rstrip()
    if low_value is None and high_value is not None:
        return f"< {_amount(high_value)}"
    if low_value is None or high_value is None:
        return "all"
    return f"{_amount(low_value)}\N{EN DASH}{_amount(high_value)}"


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _percent(value: float) -> str:
    return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def _short(text: str, limit: int = _LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
