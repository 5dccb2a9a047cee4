"""The tools the identity-resolution benchmark compares: cdp, Splink 5 (DuckDB) and recordlinkage (ECM).

Each runner takes a :class:`~bench.resolution_data.Dataset` and returns a :class:`RunResult` with a cluster
id for every record it clustered. ``seconds`` is wall time from reading the CSV files to having clusters:
everything the tool needs (reading, training, scoring, clustering), not the interpreter start nor the
import of the tool's package.

Set-ups, kept to what each tool's own documentation does:

* **Splink**: the FEBRL examples of Splink's docs (``docs/demos/examples/duckdb/febrl3`` for the dedupe
  sets, ``febrl4`` for linkage): their blocking rules and comparisons, the prior match probability from
  deterministic rules, ``u`` by random sampling (10^6 pairs, as the examples), ``m`` by EM on two blocking
  rules, then predict and connected components at the threshold (match probability 0.9). For the cdp demo
  data (link_and_dedupe across four sources) the same recipe on that data's columns with 10^7 pairs for
  ``u``, after the light clean-up a Splink user does in SQL before registering the tables (lower case,
  trimmed, empty as NULL), as the docs' examples do with theirs.
* **recordlinkage**: the FEBRL examples of its repository (``examples/linking_deterministic.py``,
  ``dedup_deterministic.py``): blocking on given name, surname and social security id, exact and
  Jaro-Winkler / Levenshtein ≥ 0.85 features (binary, as ECM needs), classified by the unsupervised
  ``ECMClassifier``; clusters are the connected components of the predicted links. FEBRL only: its pandas
  pair index does not scale to the demo data.
* **cdp**: :func:`cdp.identity.files.resolve_files` on the same files and mapping.

:func:`run_isolated` runs one tool in a fresh interpreter (``python -m bench.resolution_baselines``), so
peak RSS is that tool's own (interpreter and imported packages included) and no two tools share a heap.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mib
from bench.resolution_data import Dataset

TOOLS = ("cdp", "splink", "recordlinkage")
DEFAULT_THRESHOLD = 0.9
REPO = Path(__file__).resolve().parent.parent

RecordKey = tuple[str, str]


@dataclass
class RunResult:
    tool: str
    predicted: dict[RecordKey, Hashable]
    """(source, record id) → cluster id"""
    seconds: float
    peak_rss_mib: float
    notes: str = ""


class Skipped(Exception):
    """The tool does not apply to this data set (the message says why)."""


class ToolFailed(Exception):
    """A tool run raised or its process died; ``kind`` is the exception class (or how the process ended)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass
class Outcome:
    tool: str
    status: str
    """ok | unavailable | skipped | failed"""
    result: RunResult | None = None
    detail: str = ""


def connected_components(
    nodes: Iterable[RecordKey], edges: Iterable[tuple[RecordKey, RecordKey]]
) -> dict[RecordKey, RecordKey]:
    """Union-find: every node → the representative of its component (nodes without edges are their own)."""
    parent: dict[RecordKey, RecordKey] = {node: node for node in nodes}

    def find(node: RecordKey) -> RecordKey:
        root = parent.setdefault(node, node)
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in list(parent)}


# ---- Splink -----------------------------------------------------------------------------------------------


def _splink_plan(dataset: Dataset) -> dict[str, Any]:
    """Settings and training steps from Splink's documented examples for this kind of data."""
    import splink.comparison_library as cl
    from splink import block_on

    if dataset.name.startswith("febrl"):
        if dataset.mode == "link":  # docs/demos/examples/duckdb/febrl4 ("detailed model")
            blocking = [
                block_on("given_name", "surname"),
                "l.given_name = r.surname and l.surname = r.given_name",
                block_on("date_of_birth"),
                block_on("soc_sec_id"),
                block_on("state", "address_1"),
                block_on("street_number", "address_1"),
                block_on("postcode"),
            ]
            comparisons = [
                cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
                cl.NameComparison("surname").configure(term_frequency_adjustments=True),
                cl.DateOfBirthComparison(
                    "date_of_birth",
                    input_is_string=True,
                    datetime_format="%Y%m%d",
                    invalid_dates_as_null=True,
                ),
                cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
                cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
                    term_frequency_adjustments=True
                ),
            ]
            recall = 0.8
            deterministic = [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]
        else:  # docs/demos/examples/duckdb/febrl3
            blocking = [
                block_on("soc_sec_id"),
                block_on("given_name"),
                block_on("surname"),
                block_on("date_of_birth"),
                block_on("postcode"),
            ]
            comparisons = [
                cl.NameComparison("given_name"),
                cl.NameComparison("surname"),
                cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
                cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
                cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
            ]
            recall = 0.9
            deterministic = [
                block_on("soc_sec_id"),
                block_on("given_name", "surname", "date_of_birth"),
                "l.given_name = r.surname and l.surname = r.given_name and l.date_of_birth = r.date_of_birth",
            ]
        return {
            "id": "rec_id",
            "select": (
                "* replace (trim(date_of_birth) as date_of_birth, trim(soc_sec_id) as soc_sec_id, "
                "trim(postcode) as postcode)"
            ),
            "blocking": blocking,
            "comparisons": comparisons,
            "deterministic": deterministic,
            "recall": recall,
            "em": [block_on("date_of_birth"), block_on("postcode")],
            "u_max_pairs": 1e6,  # as both examples
        }
    # cdp demo data: the same recipe on its columns.
    lowered = ("first_name", "last_name", "email", "city", "address_line1", "postcode", "national_id")
    return {
        "id": "record_id",
        "select": "* replace ("
        + ", ".join(f"nullif(lower(trim({c})), '') as {c}" for c in lowered)
        + ", nullif(trim(phone), '') as phone)",
        "blocking": [
            block_on("email"),
            block_on("phone"),
            block_on("national_id"),
            block_on("last_name", "date_of_birth"),
            block_on("postcode", "first_name"),
        ],
        "comparisons": [
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y-%m-%d", invalid_dates_as_null=True
            ),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(term_frequency_adjustments=True),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("address_line1", [0.9, 0.8]),
            cl.DamerauLevenshteinAtThresholds("national_id", [1, 2]),
        ],
        "deterministic": [block_on("email"), block_on("first_name", "last_name", "date_of_birth")],
        "recall": 0.8,
        "em": [block_on("last_name", "date_of_birth"), block_on("email")],
        "u_max_pairs": 1e7,  # the docs' advice for real data ("1e7 is often adequate")
    }


def run_splink(dataset: Dataset, threshold: float = DEFAULT_THRESHOLD) -> RunResult:
    """Splink 5 on DuckDB: train (deterministic-rule prior, u by sampling, m by EM), predict, cluster."""
    import duckdb
    from splink import DuckDBAPI, Linker, SettingsCreator

    logging.getLogger("splink").setLevel(logging.ERROR)
    link_type = {"link": "link_only", "dedupe": "dedupe_only", "link_and_dedupe": "link_and_dedupe"}
    plan = _splink_plan(dataset)
    started = time.perf_counter()
    con = duckdb.connect()
    db_api = DuckDBAPI(connection=con)
    tables = []
    for i, path in enumerate(dataset.files):
        # Every column as text; DuckDB reads an empty cell as NULL.
        literal = str(path).replace("'", "''")
        con.execute(
            f"create table input_{i} as select {plan['select']} "  # noqa: S608 - our own paths and SQL
            f"from read_csv('{literal}', header = true, all_varchar = true)"
        )
        tables.append(db_api.register(f"input_{i}", dataset_display_name=path.stem))
    settings = SettingsCreator(
        unique_id_column_name=plan["id"],
        link_type=link_type[dataset.mode],
        blocking_rules_to_generate_predictions=plan["blocking"],
        comparisons=plan["comparisons"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        linker = Linker(tables if len(tables) > 1 else tables[0], settings, log_level=None)
        logging.getLogger("splink").setLevel(logging.ERROR)
        linker.training.estimate_probability_two_random_records_match(
            plan["deterministic"], recall=plan["recall"]
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=plan["u_max_pairs"], seed=1)
        for rule in plan["em"]:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True
            )
        predictions = linker.inference.predict(threshold_match_probability=threshold)
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        )
    relation = clusters.as_duckdbpyrelation()
    uid = plan["id"]
    if len(tables) > 1:
        rows = relation.select(f"source_dataset, {uid}, cluster_id").fetchall()
        predicted: dict[RecordKey, Hashable] = {(s, str(r)): c for s, r, c in rows}
    else:
        source = dataset.files[0].stem
        predicted = {(source, str(r)): c for r, c in relation.select(f"{uid}, cluster_id").fetchall()}
    seconds = time.perf_counter() - started
    (pairs,) = con.sql(f"select count(*) from {predictions.physical_name}").fetchall()[0]  # noqa: S608
    notes = f"{pairs:,} pairs scored ≥ {threshold}"
    con.close()
    return RunResult("splink", predicted, seconds, peak_rss_mib(), notes)


# ---- recordlinkage ----------------------------------------------------------------------------------------


def run_recordlinkage(dataset: Dataset) -> RunResult:
    """recordlinkage: block, compare (binary features), ECM, connected components. FEBRL data only."""
    if not dataset.name.startswith("febrl"):
        raise Skipped("FEBRL only: the pandas pair index and ECM do not scale to the demo data")
    import pandas as pd
    import recordlinkage as rl
    from recordlinkage.compare import Exact, String
    from recordlinkage.index import Block

    started = time.perf_counter()
    frames = [
        pd.read_csv(path, dtype=str, keep_default_na=False, index_col="rec_id").replace("", None)
        for path in dataset.files
    ]
    indexer = rl.Index()
    indexer.add(Block("given_name"))
    indexer.add(Block("surname"))
    indexer.add(Block("soc_sec_id"))
    comparer = rl.Compare()
    comparer.add(Exact("given_name", "given_name", label="given_name"))
    comparer.add(String("surname", "surname", method="jarowinkler", threshold=0.85, label="surname"))
    comparer.add(Exact("date_of_birth", "date_of_birth", label="date_of_birth"))
    comparer.add(Exact("suburb", "suburb", label="suburb"))
    comparer.add(Exact("state", "state", label="state"))
    comparer.add(String("address_1", "address_1", threshold=0.85, label="address_1"))
    comparer.add(String("address_2", "address_2", threshold=0.85, label="address_2"))
    candidates = indexer.index(*frames)
    features = comparer.compute(candidates, *frames).astype(int)
    links = rl.ECMClassifier().fit_predict(features)
    sources = [path.stem for path in dataset.files]
    left, right = sources[0], sources[-1]
    nodes = [(source, str(r)) for source, frame in zip(sources, frames, strict=True) for r in frame.index]
    edges = (((left, str(a)), (right, str(b))) for a, b in links)
    components = connected_components(nodes, edges)
    predicted: dict[RecordKey, Hashable] = {node: f"{root[0]}/{root[1]}" for node, root in components.items()}
    seconds = time.perf_counter() - started
    notes = f"{len(candidates):,} candidate pairs, {len(links):,} ECM links"
    return RunResult("recordlinkage", predicted, seconds, peak_rss_mib(), notes)


# ---- cdp --------------------------------------------------------------------------------------------------


def run_cdp(dataset: Dataset) -> RunResult | None:
    """cdp's file resolution; None while ``cdp.identity.files`` does not exist yet."""
    try:
        from cdp.identity.files import resolve_files
    except ModuleNotFoundError as exc:
        if exc.name in ("cdp.identity.files", "cdp.identity"):
            return None
        raise
    started = time.perf_counter()
    resolution = resolve_files(dataset.files, dataset.mapping)
    predicted: dict[RecordKey, Hashable] = {
        (str(source), str(record_id)): cluster for source, record_id, cluster in resolution.assignments
    }
    seconds = time.perf_counter() - started
    return RunResult("cdp", predicted, seconds, peak_rss_mib())


# ---- isolation --------------------------------------------------------------------------------------------


def run_tool(tool: str, dataset: Dataset, threshold: float = DEFAULT_THRESHOLD) -> RunResult | None:
    """Run ``tool`` in this process (see :func:`run_isolated` for a fresh one)."""
    if tool == "splink":
        return run_splink(dataset, threshold)
    if tool == "recordlinkage":
        return run_recordlinkage(dataset)
    if tool == "cdp":
        return run_cdp(dataset)
    raise ValueError(f"unknown tool {tool!r}")


def run_isolated(
    tool: str, dataset: Dataset, *, threshold: float = DEFAULT_THRESHOLD, timeout: float | None = None
) -> Outcome:
    """Run ``tool`` on ``dataset`` in a fresh interpreter; never raises for the tool's own failures."""
    with tempfile.TemporaryDirectory(prefix="cdp-resolution-") as tmp:
        spec = Path(tmp) / "dataset.json"
        spec.write_text(dataset.to_json(), encoding="utf-8")
        out = Path(tmp) / "result.pickle"
        command = [
            sys.executable,
            "-m",
            "bench.resolution_baselines",
            tool,
            str(spec),
            str(out),
            "--threshold",
            str(threshold),
        ]
        try:
            proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(tool, "failed", detail=f"TimeoutExpired (>{timeout:g}s)")
        if not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            return Outcome(tool, "failed", detail=f"{how} {tail[0]}".strip())
        with out.open("rb") as handle:
            reply: dict[str, Any] = pickle.load(handle)  # noqa: S301 - written by our own child process
    return Outcome(tool, reply["status"], reply.get("result"), reply.get("detail", ""))


def worker_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one resolution tool on one data set (a worker).")
    parser.add_argument("tool", choices=TOOLS)
    parser.add_argument("dataset", type=Path, help="JSON written by Dataset.to_json")
    parser.add_argument("out", type=Path, help="where to pickle the outcome")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args(argv)
    dataset = Dataset.from_json(args.dataset.read_text(encoding="utf-8"))
    reply: dict[str, Any]
    try:
        result = run_tool(args.tool, dataset, args.threshold)
    except Skipped as exc:
        reply = {"status": "skipped", "detail": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        reply = {"status": "failed", "detail": f"{type(exc).__name__}: {first_line}"}
    else:
        reply = {"status": "unavailable"} if result is None else {"status": "ok", "result": result}
    with args.out.open("wb") as handle:
        pickle.dump(reply, handle, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    # Run through the package module (not ``__main__``) so pickled RunResults unpickle in the parent.
    from bench.resolution_baselines import worker_main as _worker_main

    _worker_main()
