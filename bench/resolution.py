"""Identity-resolution accuracy and cost: cdp next to Splink 5 and recordlinkage on the same CSV files.

    python -m bench.resolution [--sets febrl1,febrl2,febrl3,febrl4] [--demo 100000,1000000]
                               [--tools cdp,splink,recordlinkage] [--work-dir var/bench/resolution]

Data sets (:mod:`bench.resolution_data`): the four FEBRL sets (FEBRL1-3 deduplication of one file, FEBRL4
linkage of two) and the project's own demo data at ``--demo`` sizes in *people* (about 2.6 records each,
across four sources with their own formats: link and dedupe). Every tool reads the same CSV files.

Measured per tool and data set, each tool in a fresh interpreter (:func:`bench.resolution_baselines.
run_isolated`): pairwise precision, recall and F1 against the truth (:mod:`bench.resolution_metrics`; in
FEBRL4 only pairs across the two files count), wall seconds from reading the files to having clusters
(training and clustering included, interpreter start and package import not), the ratio of that time to
Splink's, the process's peak RSS and the largest predicted cluster (a sign of over-merging). For several
demo sizes, how each tool's time grows from the smallest to the largest next to how the records grow.

A tool that fails is reported with its exception class and the run goes on; cdp shows as "not available
yet" while ``cdp.identity.files`` does not exist. Generated data is cached in ``--work-dir``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from bench.common import Header, console, parse_ints
from bench.resolution_baselines import DEFAULT_THRESHOLD, TOOLS, Outcome, run_isolated
from bench.resolution_data import FEBRL_SETS, Dataset, demo, febrl
from bench.resolution_metrics import Scores, pairwise_scores

DEMO_SEED = 42


@dataclass
class SetReport:
    dataset: Dataset
    records: int
    outcomes: list[Outcome] = field(default_factory=list)
    scores: dict[str, Scores] = field(default_factory=dict)

    def seconds(self, tool: str) -> float | None:
        for outcome in self.outcomes:
            if outcome.tool == tool and outcome.result is not None:
                return outcome.result.seconds
        return None


def _names(raw: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [part.strip() for part in raw.split(",") if part.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise SystemExit(
            f"{what} takes a comma-separated subset of {','.join(allowed)}; got {','.join(unknown)}"
        )
    return names


def _status_text(outcome: Outcome) -> str:
    if outcome.status == "unavailable":
        return "not available yet"
    if outcome.status == "skipped":
        return f"skipped: {outcome.detail}"
    if outcome.status == "failed":
        return f"failed: {outcome.detail}"
    return outcome.result.notes if outcome.result else ""


def print_set(report: SetReport) -> None:
    d = report.dataset
    title = (
        f"{d.name}: {d.mode}, {d.records:,} records in {len(d.files)} file(s) ({', '.join(d.sources)}), "
        f"{d.entities:,} true entities"
    )
    table = Table(title=title, title_justify="left")
    columns = ["tool", "precision", "recall", "F1", "seconds", "vs Splink", "peak MiB", "largest", "notes"]
    for name in columns:
        table.add_column(name, justify="left" if name in ("tool", "notes") else "right")
    splink = report.seconds("splink")
    for outcome in report.outcomes:
        result = outcome.result
        scores = report.scores.get(outcome.tool)
        if result is None or scores is None:
            table.add_row(outcome.tool, "", "", "", "", "", "", "", _status_text(outcome))
            continue
        ratio = f"{result.seconds / splink:.2f}x" if splink else ""
        table.add_row(
            outcome.tool,
            f"{scores.precision:.4f}",
            f"{scores.recall:.4f}",
            f"{scores.f1:.4f}",
            f"{result.seconds:.2f}",
            ratio,
            f"{result.peak_rss_mib:,.0f}",
            f"{scores.largest_cluster:,}",
            "; ".join(filter(None, [f"{scores.tp:,} tp, {scores.fp:,} fp, {scores.fn:,} fn", result.notes])),
        )
    console.print(table)


def print_growth(reports: Sequence[SetReport], tools: Sequence[str]) -> None:
    """Time growth per tool from the smallest to the largest demo size (next to the record growth)."""
    small, large = reports[0], reports[-1]
    records = large.records / max(small.records, 1)
    table = Table(
        title=f"demo growth: {small.dataset.name} → {large.dataset.name} "
        f"({small.records:,} → {large.records:,} records, {records:.1f}x)",
        title_justify="left",
    )
    for name in ("tool", "seconds (small)", "seconds (large)", "time growth", "per record"):
        table.add_column(name, justify="left" if name == "tool" else "right")
    for tool in tools:
        before, after = small.seconds(tool), large.seconds(tool)
        if before is None or after is None:
            table.add_row(tool, f"{before:.1f}" if before else "-", f"{after:.1f}" if after else "-", "", "")
            continue
        growth = after / before if before else float("inf")
        table.add_row(tool, f"{before:.1f}", f"{after:.1f}", f"{growth:.1f}x", f"{growth / records:.2f}x")
    console.print(table)


def run_set(dataset: Dataset, tools: Sequence[str], threshold: float, timeout: float | None) -> SetReport:
    report = SetReport(dataset, dataset.records)
    for tool in tools:
        console.print(f"  {dataset.name}: running {tool} …", style="dim")
        outcome = run_isolated(tool, dataset, threshold=threshold, timeout=timeout)
        report.outcomes.append(outcome)
        if outcome.result is not None:
            report.scores[tool] = pairwise_scores(outcome.result.predicted, dataset.truth, dataset.mode)
            outcome.result.predicted = {}  # scored; free the memory before the next tool
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(FEBRL_SETS), help="FEBRL sets ('' for none)")
    parser.add_argument("--demo", default="100000", help="demo sizes in people ('' for none)")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/resolution"))
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="Splink match probability")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per tool run (default: none)")
    args = parser.parse_args(argv)
    sets = _names(args.sets, FEBRL_SETS, "--sets")
    sizes = sorted(set(parse_ints(args.demo, "--demo"))) if args.demo.strip() else []
    tools = _names(args.tools, TOOLS, "--tools")
    if not tools:
        raise SystemExit("--tools must name at least one tool")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    Header(
        "identity resolution: cdp, Splink 5, recordlinkage",
        {
            "data sets": ", ".join([*sets, *(f"demo-{n} (people)" for n in sizes)]) or "none",
            "tools": ", ".join(tools),
            "Splink threshold": args.threshold,
            "work dir": args.work_dir,
        },
    ).print([])

    loaders: list[tuple[str, Callable[[], Dataset]]] = [
        (name, lambda name=name: febrl(name, args.work_dir)) for name in sets
    ]
    loaders += [(f"demo-{n}", lambda n=n: demo(n, DEMO_SEED, args.work_dir)) for n in sizes]
    demo_reports: list[SetReport] = []
    for label, load in loaders:
        started = time.perf_counter()
        try:
            dataset = load()
        except Exception as exc:
            console.print(f"[red]{label}: data preparation failed: {type(exc).__name__}: {exc}")
            continue
        console.print(
            f"{label}: {dataset.records:,} records ready in {time.perf_counter() - started:.1f}s", style="dim"
        )
        report = run_set(dataset, tools, args.threshold, args.timeout)
        print_set(report)
        if label.startswith("demo-"):
            demo_reports.append(report)
        dataset.truth = {}  # scored; the growth table only needs the counts
    if len(demo_reports) > 1:
        print_growth(demo_reports, tools)


if __name__ == "__main__":
    main()
