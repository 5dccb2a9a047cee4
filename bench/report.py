"""Run every benchmark of the project and write one Markdown report of all their figures.

    python -m bench.report [--size quick|full] [--only NAME,NAME] [--out PATH]

Each benchmark runs as its own process (``python -m bench.<name>``), one after another, never two at once
(they would skew each other on a small machine), with the arguments of the chosen size: ``full`` is each
benchmark's own defaults — the sizes the README's figures come from, hours in all — and ``quick`` is a
small run of every one (minutes) that proves the report reproduces and shows the same ratios against the
same baselines at a smaller scale. The report names the machine, the commit and each command, so anyone
can run the same thing again; each benchmark's printed tables follow as they were printed, with the time
it took and whether it succeeded. A benchmark that fails does not stop the others.
"""

from __future__ import annotations

import argparse
import os
import platform as pyplatform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK: dict[str, list[str]] = {
    "vault_throughput": ["--subjects", "5000", "--backends", "sqlite,postgres", "--repeat", "1"],
    "key_rotation": ["--subjects", "5000", "--backends", "sqlite,postgres"],
    "ingest_throughput": ["--records", "5000", "--backends", "sqlite,postgres"],
    "resolution": ["--sets", "febrl1", "--demo", "2000"],
    "http_reads": [
        "--backends",
        "sqlite",
        "--seconds",
        "5",
        "--warmup",
        "1",
        "--people",
        "500",
        "--connections",
        "8",
    ],
    "audit": ["--backends", "sqlite,postgres", "--appends", "500", "--people", "200", "--reads", "200"],
    "retention": ["--subjects", "5000", "--backends", "sqlite", "--erasures", "10"],
    "analytics": ["--sizes", "10000", "--vault-size", "2000"],
    "web_pages": ["--people", "200", "--rounds", "20"],
    "load": ["--seconds", "30", "--people", "500"],
}
"""Small but complete runs: every benchmark, its baselines and both back ends where it has them."""
BENCHMARKS = tuple(QUICK)


@dataclass
class Outcome:
    name: str
    command: list[str]
    seconds: float
    status: int
    output: str


def _commit() -> str:
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return found.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _run(name: str, size: str, timeout: float) -> Outcome:
    command = [sys.executable, "-m", f"bench.{name}", *(QUICK[name] if size == "quick" else [])]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "150", "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        status, output = (
            done.returncode,
            done.stdout + (f"\n[stderr]\n{done.stderr[-3000:]}" if done.returncode else ""),
        )
    except subprocess.TimeoutExpired as exc:
        status, output = -1, f"timed out after {timeout:.0f} s\n{exc.stdout or ''}"
    return Outcome(name, command, time.monotonic() - started, status, output)


def _markdown(outcomes: list[Outcome], size: str) -> str:
    lines = [
        f"# cdp benchmark report ({size})",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: `{_commit()}`",
        f"- machine: {os.cpu_count()} cores, {pyplatform.machine()}, Python {pyplatform.python_version()}",
        "- reproduce: `python -m bench.report --size " + size + "` (or each command below)",
        "",
        "| benchmark | result | time |",
        "|---|---|---|",
    ]
    lines += [
        f"| [{o.name}](#{o.name.replace('_', '-')}) | {'ok' if o.status == 0 else f'FAILED ({o.status})'} "
        f"| {o.seconds:.0f} s |"
        for o in outcomes
    ]
    for outcome in outcomes:
        shown = " ".join(["python", *outcome.command[1:]])
        lines += [
            "",
            f"## {outcome.name}",
            "",
            f"`{shown}` — {outcome.seconds:.0f} s",
            "",
            "```",
            outcome.output.rstrip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("quick", "full"), default="quick")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/report-<size>.md")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    args = parser.parse_args()
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    timeout = args.timeout or (1800 if args.size == "quick" else 6 * 3600)
    out = args.out or REPO / "bench" / "results" / f"report-{args.size}.md"
    outcomes = []
    for name in names:
        print(f"running {name} ({args.size})…", flush=True)
        outcome = _run(name, args.size, timeout)
        print(f"  {'ok' if outcome.status == 0 else 'FAILED'} in {outcome.seconds:.0f} s", flush=True)
        outcomes.append(outcome)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_markdown(outcomes, args.size), encoding="utf-8")  # partial reports survive a stop
    print(f"report: {out}")
    if any(o.status != 0 for o in outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
