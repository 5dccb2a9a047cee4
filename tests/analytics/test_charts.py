"""Charts of the analyses' (already suppressed) outputs: valid SVG and PNG, byte-for-byte deterministic, a
suppressed cell drawn as "< k" and never as a number, and safe to render from several threads at once."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import matplotlib
import pytest

from cdp.analytics import charts

SVG = "{http://www.w3.org/2000/svg}"
K = 5


def history() -> list[dict[str, Any]]:
    sizes = [1200, 1350, None, 1500, None, 1620]
    return [
        {
            "evaluated_at": f"2024-0{month}-01T10:00:00+00:00",
            "size": size,
            "suppressed": size is None,
            "population": 50_000,
        }
        for month, size in zip(range(1, 7), sizes, strict=True)
    ]


def clv() -> dict[str, Any]:
    return {
        "currency": "EUR",
        "horizon_months": 12,
        "customers": 4_200,
        "mean": 812.4,
        "histogram": [
            {"from": 0, "to": 250, "customers": 1500, "suppressed": False},
            {"from": 250, "to": 500, "customers": 1100, "suppressed": False},
            {"from": 500, "to": 1000, "customers": 900, "suppressed": False},
            {"from": 1000, "to": 2000, "customers": None, "suppressed": True},
            {"from": 2000, "to": None, "customers": 300, "suppressed": False},
        ],
        "parameters": {"r": 0.24},
    }


def churn_rows() -> list[dict[str, Any]]:
    return [
        {
            "segment": "champions",
            "customers": 1200,
            "mean_risk": 0.12,
            "high_risk_share": 0.03,
            "suppressed": False,
        },
        {
            "segment": "at_risk",
            "customers": 800,
            "mean_risk": 0.61,
            "high_risk_share": 0.44,
            "suppressed": False,
        },
        {
            "segment": "tiny",
            "customers": None,
            "mean_risk": None,
            "high_risk_share": None,
            "suppressed": True,
        },
    ]


def channels() -> dict[str, Any]:
    return {
        "preferred": [
            {"channel": "email", "customers": 2100, "suppressed": False},
            {"channel": "letter", "customers": None, "suppressed": True},
        ],
        "no_preference": 1500,
        "response_rates": [
            {
                "channel": "email",
                "rate": 0.25,
                "outbound": 4000,
                "responses": 1000,
                "customers_reached": 2000,
                "suppressed": False,
            },
            {
                "channel": "letter",
                "rate": None,
                "outbound": None,
                "responses": None,
                "customers_reached": None,
                "suppressed": True,
            },
        ],
    }


RENDERERS: dict[str, Callable[[str], bytes]] = {
    "segment-sizes": lambda fmt: charts.segment_sizes("Big spenders", history(), fmt, k=K),
    "clv-distribution": lambda fmt: charts.clv_distribution(clv(), fmt, k=K),
    "churn-by-segment": lambda fmt: charts.churn_by_segment(churn_rows(), fmt, k=K, horizon_days=90),
    "channel-mix": lambda fmt: charts.channel_mix(channels(), fmt, k=K),
}


def svg_root(data: bytes) -> ET.Element:
    root = ET.fromstring(data)  # noqa: S314 - our own renderer's output, not untrusted input
    assert root.tag.endswith("svg")
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]


def group(root: ET.Element, gid: str) -> ET.Element | None:
    return next((node for node in root.iter(f"{SVG}g") if node.get("id") == gid), None)


def value_labels(root: ET.Element, panel: str = "") -> dict[str, str]:
    """Label text of each bar, by bar position, from the ids the charts give their value labels."""
    labels = {}
    for node in root.iter(f"{SVG}g"):
        gid = node.get("id") or ""
        if gid.startswith(f"{panel}value-"):
            labels[gid.removeprefix(f"{panel}value-")] = " ".join(texts(node))
    return labels


def test_every_chart_is_described() -> None:
    assert set(charts.CHARTS) == set(RENDERERS)
    assert all(charts.CHARTS.values())


@pytest.mark.parametrize("chart", RENDERERS)
def test_chart_renders_valid_svg_with_title_and_privacy_footnote(chart: str) -> None:
    root = svg_root(RENDERERS[chart]("svg"))
    shown = texts(root)
    assert any("groups smaller than k=5 are suppressed" in text for text in shown)
    assert any("k = 5" in text for text in shown)


@pytest.mark.parametrize("chart", RENDERERS)
def test_chart_renders_png(chart: str) -> None:
    assert RENDERERS[chart]("png").startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("chart", RENDERERS)
def test_same_input_gives_identical_svg_bytes(chart: str) -> None:
    assert RENDERERS[chart]("svg") == RENDERERS[chart]("svg")


@pytest.mark.parametrize("chart", RENDERERS)
def test_unknown_format_is_rejected(chart: str) -> None:
    with pytest.raises(ValueError, match="unsupported chart format"):
        RENDERERS[chart]("pdf")


def test_clv_bands_show_their_counts_and_the_suppressed_band_only_says_below_k() -> None:
    root = svg_root(RENDERERS["clv-distribution"]("svg"))
    assert value_labels(root) == {"0": "1,500", "1": "1,100", "2": "900", "3": "< k", "4": "300"}
    assert group(root, "withheld-3") is not None
    assert group(root, "bar-3") is None
    assert {"0\N{EN DASH}250", "1,000\N{EN DASH}2,000", "≥ 2,000 EUR"} <= set(texts(root))
    assert any("mean 812 EUR" in text and "12-month horizon" in text for text in texts(root))


def test_churn_suppressed_segment_has_no_risk_no_count_and_no_bar() -> None:
    root = svg_root(RENDERERS["churn-by-segment"]("svg"))
    assert value_labels(root) == {"0": "12% · 3.0% high risk", "1": "61% · 44% high risk", "2": "< k"}
    assert group(root, "bar-2") is None
    assert group(root, "withheld-2") is not None
    shown = texts(root)
    assert {"champions", "1,200 customers", "at_risk", "800 customers", "tiny"} <= set(shown)
    assert sum("customers" in text for text in shown) == 2


def test_channel_mix_withholds_the_suppressed_channel_in_both_panels() -> None:
    root = svg_root(RENDERERS["channel-mix"]("svg"))
    assert value_labels(root, "preferred-") == {"0": "2,100", "1": "< k", "2": "1,500"}
    assert value_labels(root, "response-") == {"0": "25% (1,000 of 4,000)", "1": "< k"}
    assert group(root, "preferred-withheld-1") is not None and group(root, "preferred-bar-1") is None
    assert group(root, "response-withheld-1") is not None and group(root, "response-bar-1") is None
    assert "no preference" in texts(root)


def test_segment_sizes_draws_suppressed_evaluations_as_markers_without_values() -> None:
    root = svg_root(RENDERERS["segment-sizes"]("svg"))
    withheld, sizes = group(root, "withheld-points"), group(root, "sizes")
    assert withheld is not None and sizes is not None
    assert len(list(withheld.iter(f"{SVG}use"))) == 2
    assert len(list(sizes.iter(f"{SVG}use"))) == 4  # only the four evaluations with a size
    assert any(text.startswith("< k") for text in texts(root))
    assert any("population 50,000 customers · 6 evaluations · k = 5" in text for text in texts(root))


def test_suppressed_value_missing_key_is_never_drawn_as_zero() -> None:
    rows = [{"segment": "only", "customers": None, "mean_risk": None, "suppressed": True}]
    root = svg_root(charts.churn_by_segment(rows, "svg", k=K, horizon_days=30))
    assert value_labels(root) == {"0": "< k"}
    assert "0%" not in value_labels(root).values()


def test_value_without_suppression_is_shown_as_not_available() -> None:
    rows = [{"segment": "unscored", "customers": 40, "mean_risk": None, "suppressed": False}]
    root = svg_root(charts.churn_by_segment(rows, "svg", k=K, horizon_days=30))
    assert value_labels(root) == {"0": "n/a"}


@pytest.mark.parametrize(
    ("render", "message"),
    [
        (lambda: charts.segment_sizes("new", [], "svg", k=K), "not evaluated yet"),
        (
            lambda: charts.clv_distribution({"currency": "EUR", "customers": 0, "histogram": []}, "svg"),
            "no data",
        ),
        (lambda: charts.churn_by_segment([], "svg", k=K, horizon_days=90), "no data"),
        (lambda: charts.channel_mix({}, "svg", k=K), "no data"),
        (lambda: charts.channel_mix({"preferred": [], "response_rates": []}, "svg", k=K), "no data"),
    ],
)
def test_empty_input_renders_a_no_data_chart(render: Callable[[], bytes], message: str) -> None:
    assert message in texts(svg_root(render()))


def test_channel_mix_with_one_empty_panel_says_so_in_that_panel() -> None:
    data = {"preferred": [{"channel": "email", "customers": 30, "suppressed": False}], "response_rates": []}
    shown = texts(svg_root(charts.channel_mix(data, "svg", k=K)))
    assert "no data" in shown
    assert "30" in shown


def test_everything_suppressed_still_renders() -> None:
    entries = [{"evaluated_at": "2024-05-01", "size": None, "suppressed": True, "population": None}]
    root = svg_root(charts.segment_sizes("s", entries, "svg", k=K))
    withheld = group(root, "withheld-points")
    assert withheld is not None
    assert len(list(withheld.iter(f"{SVG}use"))) == 1


def test_clv_threshold_comes_from_the_result_when_not_given() -> None:
    data = {**clv(), "privacy": {"min_group_size": 7}}
    assert any(
        "groups smaller than k=7" in text for text in texts(svg_root(charts.clv_distribution(data, "svg")))
    )


def test_labels_are_text_not_markup_or_math() -> None:
    name = "VIP $x$ <b>&amp; co</b>"
    shown = texts(svg_root(charts.segment_sizes(name, history(), "svg", k=K)))
    assert f"Segment size: {name}" in shown


def test_rendering_leaves_global_matplotlib_settings_alone() -> None:
    before = (matplotlib.rcParams["svg.hashsalt"], matplotlib.rcParams["font.size"])
    RENDERERS["clv-distribution"]("svg")
    assert (matplotlib.rcParams["svg.hashsalt"], matplotlib.rcParams["font.size"]) == before


def test_concurrent_renders_from_four_threads_match_serial_output() -> None:
    jobs = [(chart, fmt) for chart in RENDERERS for fmt in charts.FORMATS]
    serial = {(chart, fmt): RENDERERS[chart](fmt) for chart, fmt in jobs}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: RENDERERS[job[0]](job[1]), jobs))
    assert results == [serial[job] for job in jobs]


def test_importing_charts_does_not_import_pyplot() -> None:
    code = "import sys, cdp.analytics.charts; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
