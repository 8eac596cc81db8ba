"""Compare what reached Elasticsearch with a generator's manifest: per exporter flows, bytes, packets and the
per-5-tuple digest, in a table with a verdict per line.

Elasticsearch's side comes from one composite aggregation over (observer.ip, source.ip, destination.ip,
source.port, destination.port, network.iana_number) summing ``network.bytes`` and ``network.packets``; the
manifest's digest is defined over the same table (see ``manifest.py``), so the two can be compared exactly.

Tolerances: unsampled export (NetFlow, IPFIX) must match to the unit. sFlow documents carry renormalised counts
(frame length x N, N packets per sample); the generator knows exactly which samples it sent, so those must match
to the unit too. What the samples *estimate* (the traffic they were drawn from) is compared separately with a
statistical bound: the 1-in-N estimator is unbiased with variance sum(x^2) (N - 1) over the sampled population's
packets (x = packet size, 1 for packet counts); the check allows ``sigmas`` standard deviations.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsink.generate.manifest import TupleKey, canonical_key, load_manifest, tuple_digest

FLOW_ACTIONS = ["netflow_flow", "ipfix_flow", "sflow_flow_sample"]
KEY_FIELDS = [
    ("observer", "observer.ip"),
    ("src", "source.ip"),
    ("dst", "destination.ip"),
    ("sport", "source.port"),
    ("dport", "destination.port"),
    ("proto", "network.iana_number"),
]


@dataclass
class Row:
    """One line of the verdict table."""

    exporter: str
    metric: str
    expected: float | int | str
    found: float | int | str
    tolerance: float = 0.0

    @property
    def difference(self) -> float | str:
        if isinstance(self.expected, str) or isinstance(self.found, str):
            return "" if self.expected == self.found else "differs"
        return self.found - self.expected

    @property
    def ok(self) -> bool:
        if isinstance(self.expected, str) or isinstance(self.found, str):
            return self.expected == self.found
        return abs(self.found - self.expected) <= self.tolerance


def flow_query(exporters: list[str], since: str | None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"terms": {"observer.ip": exporters}},
        {"terms": {"event.action": FLOW_ACTIONS}},
    ]
    if since:
        filters.append({"range": {"@timestamp": {"gte": since}}})
    return {"bool": {"filter": filters}}


def count_documents(es: Any, index: str, query: dict[str, Any]) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    return int(es.count(index=index, query=query, ignore_unavailable=True, allow_no_indices=True)["count"])


def wait_until_settled(
    es: Any,
    index: str,
    query: dict[str, Any],
    expected: int,
    timeout_s: float,
    quiet_s: float = 3.0,
    interval_s: float = 0.5,
    show: bool = True,
) -> int:
    """Poll the document count until it stops changing for ``quiet_s`` (or reaches ``expected`` and holds for one
    more poll), or ``timeout_s`` passes; returns the last count."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = time.monotonic() + timeout_s
    last, last_change, steady_polls = -1, time.monotonic(), 0
    with Progress(
        TextColumn("waiting for Elasticsearch"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=not show,
        transient=True,
    ) as progress:
        task = progress.add_task("wait", total=max(expected, 1), status="")
        while True:
            count = count_documents(es, index, query)
            now = time.monotonic()
            if count == last:
                steady_polls += 1
            else:
                last, last_change, steady_polls = count, now, 0
            progress.update(
                task, completed=min(count, expected), status=f"{count:,} / {expected:,} documents"
            )
            if count >= expected and steady_polls >= 1:
                break  # all there (or more: duplicates), and nothing more arriving
            if count > 0 and now - last_change >= quiet_s:
                break  # fewer than expected, and no more coming
            if now >= deadline:
                break
            time.sleep(interval_s)
    return last


def fetch_tuples(
    es: Any, index: str, query: dict[str, Any], page_size: int = 5000
) -> dict[str, dict[TupleKey, tuple[int, int, int]]]:
    """exporter -> {5-tuple: (documents, bytes, packets)} from Elasticsearch, every page of the composite."""
    sources = [
        {name: {"terms": {"field": f, "missing_bucket": name in ("sport", "dport")}}}
        for name, f in KEY_FIELDS
    ]
    aggs = {"bytes": {"sum": {"field": "network.bytes"}}, "packets": {"sum": {"field": "network.packets"}}}
    tables: dict[str, dict[TupleKey, tuple[int, int, int]]] = {}
    after = None
    while True:
        composite: dict[str, Any] = {"size": page_size, "sources": sources}
        if after:
            composite["after"] = after
        response = es.search(
            index=index,
            size=0,
            query=query,
            ignore_unavailable=True,
            allow_no_indices=True,
            aggs={"tuples": {"composite": composite, "aggs": aggs}},
        )
        page = (response.get("aggregations") or {}).get("tuples", {"buckets": []})
        for bucket in page["buckets"]:
            k = bucket["key"]
            key = canonical_key(k["src"], k["dst"], k["sport"], k["dport"], int(k["proto"]))
            table = tables.setdefault(k["observer"], {})
            previous = table.get(key, (0, 0, 0))  # ICMP rows can merge once their ports are set to 0
            table[key] = (
                previous[0] + bucket["doc_count"],
                previous[1] + round(bucket["bytes"]["value"]),
                previous[2] + round(bucket["packets"]["value"]),
            )
        after = page.get("after_key")
        if not page["buckets"] or not after:
            return tables


def compare(
    manifest: dict[str, Any], found: dict[str, dict[TupleKey, tuple[int, int, int]]], sigmas: float = 5.0
) -> tuple[list[Row], dict[str, list[str]]]:
    """Rows of the verdict table, and per exporter a few lines naming tuples that differ."""
    rows: list[Row] = []
    details: dict[str, list[str]] = {}
    for address, exp in manifest["exporters"].items():
        table = found.get(address, {})
        totals = [sum(v[i] for v in table.values()) for i in range(3)]
        rows += [
            Row(address, "flows", exp["flows"], totals[0]),
            Row(address, "bytes", exp["bytes"], totals[1]),
            Row(address, "packets", exp["packets"], totals[2]),
        ]
        digest = tuple_digest(table.items())
        rows.append(Row(address, "5-tuple digest", exp["digest"][:12], digest[:12]))
        expected_table = exp.get("table") or {}
        if expected_table:
            differing = sorted(set(expected_table) | set(table), key=lambda k: tuple(map(str, k)))
            differing = [k for k in differing if expected_table.get(k) != table.get(k)]
            rows.append(Row(address, "5-tuples differing", 0, len(differing)))
            details[address] = [
                f"{' '.join(map(str, k))}: expected {expected_table.get(k)} found {table.get(k)}"
                for k in differing[:10]
            ]
        represented = exp.get("represented")
        if represented:
            for metric, position in (("packets", 2), ("bytes", 1)):
                bound = sigmas * represented[f"{metric}_variance"] ** 0.5
                rows.append(
                    Row(
                        address,
                        f"{metric} vs sampled traffic (±{sigmas:g}σ)",
                        represented[metric],
                        totals[position],
                        tolerance=bound,
                    )
                )
    return rows, details


def render(rows: list[Row], details: dict[str, list[str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("exporter", "metric", "expected", "found", "difference", "verdict"):
        table.add_column(column, justify="left" if column in ("exporter", "metric", "verdict") else "right")
    for row in rows:
        difference = row.difference
        table.add_row(
            row.exporter,
            row.metric,
            _fmt(row.expected),
            _fmt(row.found),
            _fmt(difference) if not isinstance(difference, str) else difference,
            "[green]ok[/]" if row.ok else "[bold red]DIFFERS[/]",
        )
    console = Console(width=None if sys.stdout.isatty() else 140)  # a log file gets the table unwrapped
    console.print(table)
    for address, lines in details.items():
        if lines:
            console.print(
                f"[bold]{address}[/]: first 5-tuples that differ (src dst sport dport proto: "
                "(documents, bytes, packets))"
            )
            for line in lines:
                console.print(f"  {line}")


def _fmt(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    if isinstance(value, int | float):
        return f"{int(value):,}"
    return str(value)


def check(
    manifest_path: Path,
    es_url: str,
    index: str = "flowsink-flows-*",
    since: str | None = None,
    timeout_s: float = 120.0,
    quiet_s: float = 3.0,
    sigmas: float = 5.0,
    show: bool = True,
) -> tuple[bool, list[Row], dict[str, list[str]]]:
    """Wait for Elasticsearch to settle, compare, and return (all ok, rows, differing tuples per exporter)."""
    from elasticsearch import Elasticsearch

    manifest = load_manifest(manifest_path)
    if not manifest.get("complete"):
        raise ValueError(f"{manifest_path}: the generator has not finished (manifest not final)")
    exporters = list(manifest["exporters"])
    query = flow_query(exporters, since)
    es = Elasticsearch(es_url, request_timeout=60)
    try:
        wait_until_settled(es, index, query, manifest["totals"]["flows"], timeout_s, quiet_s, show=show)
        found = fetch_tuples(es, index, query)
    finally:
        es.close()
    rows, details = compare(manifest, found, sigmas)
    return all(r.ok for r in rows), rows, details


def affected_exporters(rows: list[Row]) -> list[str]:
    return sorted({r.exporter for r in rows if not r.ok})


EXAMPLES = """\
examples:
  # after: flowsink generate ipfix --exporters 3 --duration 30 --manifest /tmp/ipfix.json
  python scripts/check_accuracy.py --manifest /tmp/ipfix.json --es http://127.0.0.1:9200
  # a node whose index prefix is "lab", only documents from the last hour, give up after 60 s
  python scripts/check_accuracy.py --manifest m.json --es http://127.0.0.1:9200 --index 'lab-flows-*' \\
      --since now-1h --timeout 60

exit status: 0 every line within tolerance, 1 some line differs, 2 the check could not run
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument(
        "--manifest",
        type=Path,
        required=True,
        help="manifest written by flowsink generate / scripts/send_*.py (its .tuples.jsonl beside it "
        "lets the check name the 5-tuples that differ), e.g. /tmp/ipfix.json",
    )
    parser.add_argument(
        "--es", default="http://127.0.0.1:9200", help="Elasticsearch URL (default http://127.0.0.1:9200)"
    )
    parser.add_argument(
        "--index",
        default="flowsink-flows-*",
        help="index pattern of flow documents (default flowsink-flows-*; a node with index_prefix "
        "P writes P-flows-*)",
    )
    parser.add_argument(
        "--since",
        help="only documents with @timestamp at or after this (ISO time or date math, "
        "e.g. 2026-01-01T10:00:00Z or now-15m); default: all",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the document count to stop changing (default 120)",
    )
    parser.add_argument(
        "--quiet-period",
        type=float,
        default=3.0,
        help="the count must hold this many seconds to count as settled (default 3)",
    )
    parser.add_argument(
        "--sigmas",
        type=float,
        default=5.0,
        help="sFlow: standard deviations allowed between the sampled estimate and the traffic it "
        "was drawn from (default 5)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display while waiting")


def main(args: argparse.Namespace) -> int:
    try:
        ok, rows, details = check(
            args.manifest,
            args.es,
            args.index,
            args.since,
            args.timeout,
            args.quiet_period,
            args.sigmas,
            show=not args.no_progress,
        )
    except (OSError, ValueError, KeyError) as exc:
        print(f"check_accuracy: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # elasticsearch-py's transport errors: say what, never a traceback
        print(
            f"check_accuracy: error: cannot query Elasticsearch at {args.es}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 2
    render(rows, details, f"{args.manifest} against {args.es} {args.index}")
    if ok:
        print("verdict: OK, Elasticsearch holds exactly what was exported")
        return 0
    print("verdict: DIFFERS for exporters " + ", ".join(affected_exporters(rows)))
    return 1
