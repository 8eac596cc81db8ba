"""Compare what reached Elasticsearch with a generator's manifest: per exporter flows, bytes and packets first,
then every 5-tuple, in tables with a verdict per line.

Per-exporter totals come from one ``terms`` aggregation, so a mismatch shows within seconds. The 5-tuple pass
then streams: the manifest's side file lists each exporter's tuples in the order Elasticsearch sorts them
(``manifest.tuple_order``), and a composite aggregation over (``source.ip``, ``destination.ip``,
``network.iana_number``, ``source.port``, ``destination.port``, ``network.bytes``, ``network.packets``) returns
the documents' tuples in that same order, page by page; the two streams are merge-compared, so memory holds a
few pages whatever the size of the run. Bytes and packets are composite sources rather than ``sum``
sub-aggregations: a sub-aggregation made each bucket cost twice as much, and summing the (mostly single-document)
buckets' values in Python is exact where a ``sum`` is a double.

A composite aggregation visits every document its query matches for each page, so paging over a whole data set
costs pages x documents. The pass therefore splits each exporter into slices of about ``SLICE_TUPLES`` tuples by
ranges of ``source.ip`` (a source with more tuples than that gets slices of ``destination.ip`` ranges of its
own), planned from the manifest, and asks for each slice separately, two at a time, the next ones while the
current one is compared. Slices cover every address, so documents the manifest does not know are found too.

Tolerances: unsampled export (NetFlow, IPFIX) must match to the unit. sFlow documents carry renormalised counts
(frame length x N, N packets per sample); the generator knows exactly which samples it sent, so those must match
to the unit too. What the samples *estimate* (the traffic they were drawn from) is compared separately with a
statistical bound: the 1-in-N estimator is unbiased with variance sum(x^2) (N - 1) over the sampled population's
packets (x = packet size, 1 for packets); the check allows ``sigmas`` standard deviations.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from flowsink.generate.manifest import (
    FORMAT,
    ICMP_PROTOCOLS,
    TUPLES_ORDER,
    TupleKey,
    tuple_order,
)

FLOW_ACTIONS = ["netflow_flow", "ipfix_flow", "sflow_flow_sample"]
# composite sources, short names: the answer repeats them in every bucket
SOURCES = (
    ("s", "source.ip"),
    ("d", "destination.ip"),
    ("p", "network.iana_number"),
    ("sp", "source.port"),
    ("dp", "destination.port"),
    ("b", "network.bytes"),
    ("n", "network.packets"),
)
# buckets per composite page (Elasticsearch allows 65,536): a page's answer is about 1 MB of JSON, parsed in a
# fetching thread; larger pages saved no time and raised the peak memory
PAGE_SIZE = 10_000
SLICE_TUPLES = 20_000  # manifest tuples per slice: two pages each, most of the time
IN_FLIGHT = 2  # slices asked for at once: Elasticsearch pages one while the other is compared
DIFFERING_SHOWN = 10  # differing tuples named per exporter
SORT_CHUNK = 500_000  # lines sorted in memory at a time by the external sorts
_FILTER_PATH = "aggregations.t.after_key,aggregations.t.buckets.key,aggregations.t.buckets.doc_count"

Totals = tuple[int, int, int]  # documents (flows), bytes, packets


@dataclass
class Row:
    """One line of a verdict table."""

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


# ---------------------------------------------------------------- the query


def resolve_since(since: str | None, now_s: float) -> str | None:
    """``--since`` with ``now`` pinned to ``now_s``: Elasticsearch evaluates date math at every request, so
    ``now-15m`` would slide while the check waits and the count would never hold still. Anchored date math
    (``<time>||-15m``) keeps Elasticsearch's own arithmetic and rounding, evaluated against one instant."""
    if not since or not since.startswith("now"):
        return since
    anchor = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_s)) + f".{int(now_s * 1000) % 1000:03d}Z"
    rest = since[3:].strip()
    return f"{anchor}||{rest}" if rest else anchor


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


def exporter_totals(es: Any, index: str, query: dict[str, Any], exporters: list[str]) -> dict[str, Totals]:
    """exporter -> (documents, bytes, packets), in one request (sums are doubles: exact below 2^53)."""
    response = es.search(
        index=index,
        size=0,
        query=query,
        ignore_unavailable=True,
        allow_no_indices=True,
        aggs={
            "e": {
                "terms": {"field": "observer.ip", "size": max(len(exporters), 1)},
                "aggs": {
                    "b": {"sum": {"field": "network.bytes"}},
                    "n": {"sum": {"field": "network.packets"}},
                },
            }
        },
    )
    buckets = ((response.get("aggregations") or {}).get("e") or {}).get("buckets", [])
    return {b["key"]: (b["doc_count"], round(b["b"]["value"]), round(b["n"]["value"])) for b in buckets}


# ---------------------------------------------------------------- slices


@dataclass(frozen=True)
class Slice:
    """A part of one exporter's documents, by ``source.ip`` range, or one source by ``destination.ip`` range.

    Bounds are addresses; ``None`` is open (a slice open below also holds documents without the address).
    ``low_inclusive`` False starts just after ``low`` (after a source sliced on its own).
    """

    exporter: str
    low: str | None = None
    low_inclusive: bool = True
    high: str | None = None  # exclusive
    source: str | None = None  # set: the slice holds only this source, low/high bound destination.ip

    def filters(self) -> list[dict[str, Any]]:
        field = "source.ip" if self.source is None else "destination.ip"
        filters: list[dict[str, Any]] = [{"term": {"observer.ip": self.exporter}}]
        if self.source is not None:
            filters.append({"term": {"source.ip": self.source}})
        bounds: dict[str, str] = {}
        if self.low is not None:
            bounds["gte" if self.low_inclusive else "gt"] = self.low
        if self.high is not None:
            bounds["lt"] = self.high
        if bounds and self.low is None:  # the first slice also holds documents without the address
            filters.append(
                {
                    "bool": {
                        "should": [
                            {"range": {field: bounds}},
                            {"bool": {"must_not": {"exists": {"field": field}}}},
                        ],
                        "minimum_should_match": 1,
                    }
                }
            )
        elif bounds:
            filters.append({"range": {field: bounds}})
        return filters


def plan_slices(
    exporter: str, sources: Iterable[tuple[str, int, list[str]]], target: int = SLICE_TUPLES
) -> Iterator[Slice]:
    """Slices of one exporter from its sources in order: (address, tuples, destination.ip cut points every
    ``target`` tuples of it). Consecutive sources share a slice up to ``target`` tuples; a source with more gets
    slices of its own, cut at its destination cut points."""
    low: str | None = None
    low_inclusive = True
    held = 0
    for address, tuples, cuts in sources:
        if tuples > target:
            yield Slice(exporter, low, low_inclusive, address)  # what comes before it (maybe nothing)
            edges: list[str | None] = [None, *cuts, None]
            for start, end in itertools.pairwise(edges):
                yield Slice(exporter, start, True, end, source=address)
            low, low_inclusive, held = address, False, 0
        elif held and held + tuples > target:
            yield Slice(exporter, low, low_inclusive, address)
            low, low_inclusive, held = address, True, tuples
        else:
            held += tuples
    yield Slice(exporter, low, low_inclusive, None)


def manifest_sources(lines: Iterable[bytes], target: int = SLICE_TUPLES) -> Iterator[tuple[str, list[Any]]]:
    """(exporter, [(source, tuples, destination cut points), ...]) from side-file lines in tuple order.

    Reads only the two addresses of each line (they hold no quote): parsing every line twice as JSON would
    cost more than the comparison itself."""
    for exporter, group in itertools.groupby(lines, key=_line_exporter):
        sources: list[Any] = []
        current: list[Any] | None = None
        since_cut = 0
        last_destination = None
        for line in group:
            parts = line.split(b'"', 6)
            source, destination = parts[3].decode(), parts[5].decode()
            if current is None or current[0] != source:
                current = [source, 0, []]
                sources.append(current)
                since_cut, last_destination = 0, None
            if destination != last_destination and since_cut >= target:
                current[2].append(destination)
                since_cut = 0
            last_destination = destination
            current[1] += 1
            since_cut += 1
        yield exporter, [(s, n, cuts if n > target else []) for s, n, cuts in sources]


def _line_exporter(line: bytes) -> str:
    return line.split(b'"', 2)[1].decode()


def elasticsearch_sources(es: Any, index: str, query: dict[str, Any], exporter: str) -> list[Any]:
    """(source, documents, no cut points) for each source of one exporter, from Elasticsearch (a manifest without
    its side file: the slices are planned from what the cluster holds)."""
    sources: list[Any] = []
    query = {"bool": {"filter": [*query["bool"]["filter"], {"term": {"observer.ip": exporter}}]}}
    composite: dict[str, Any] = {
        "size": PAGE_SIZE,
        "sources": [{"s": {"terms": {"field": "source.ip", "missing_bucket": True}}}],
    }
    while True:
        response = es.search(
            index=index,
            size=0,
            query=query,
            aggs={"t": {"composite": composite}},
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        page = (response.get("aggregations") or {}).get("t") or {}
        buckets = page.get("buckets", [])
        # documents without a source go to the first slice, which is open below
        sources += [(b["key"]["s"], b["doc_count"], []) for b in buckets if b["key"]["s"]]
        if not page.get("after_key") or len(buckets) < PAGE_SIZE:
            return sources
        composite["after"] = page["after_key"]


# ---------------------------------------------------------------- Elasticsearch's side of the stream


# src, dst, proto, sport, dport, bytes, packets (as the composite gives them: None when missing), documents
Bucket = tuple[Any, Any, Any, Any, Any, Any, Any, int]


def fetch_slice(es: Any, index: str, query: dict[str, Any], piece: Slice) -> list[Bucket]:
    """Every bucket of one slice, page by page, in composite order."""
    filters = [*query["bool"]["filter"], *piece.filters()]
    composite: dict[str, Any] = {
        "size": PAGE_SIZE,
        "sources": [{name: {"terms": {"field": field, "missing_bucket": True}}} for name, field in SOURCES],
    }
    buckets: list[Bucket] = []
    while True:
        response = es.search(
            index=index,
            size=0,
            query={"bool": {"filter": filters}},
            aggs={"t": {"composite": composite}},
            ignore_unavailable=True,
            allow_no_indices=True,
            filter_path=_FILTER_PATH,
        )
        page = (response.get("aggregations") or {}).get("t") or {}
        found = page.get("buckets", [])
        buckets += [
            (k["s"], k["d"], k["p"], k["sp"], k["dp"], k["b"], k["n"], b["doc_count"])
            for b in found
            for k in (b["key"],)
        ]
        after = page.get("after_key")
        if len(found) < PAGE_SIZE or not after:
            return buckets
        composite["after"] = after


def fetched(
    es: Any, index: str, query: dict[str, Any], slices: Iterable[Slice], in_flight: int = IN_FLIGHT
) -> Iterator[tuple[Slice, list[Bucket]]]:
    """Each slice with its buckets, in order, ``in_flight`` slices asked for ahead."""
    with ThreadPoolExecutor(in_flight) as pool:
        pending: list[tuple[Slice, Future[list[Bucket]]]] = []
        plan = iter(slices)
        for piece in itertools.islice(plan, in_flight):
            pending.append((piece, pool.submit(fetch_slice, es, index, query, piece)))
        while pending:
            piece, future = pending.pop(0)
            for following in itertools.islice(plan, 1):
                pending.append((following, pool.submit(fetch_slice, es, index, query, following)))
            yield piece, future.result()


def canonical_tuples(buckets: Iterable[Bucket]) -> Iterator[tuple[TupleKey, Totals]]:
    """Composite buckets (sorted by the raw values) -> (canonical 5-tuple, (documents, bytes, packets)) in
    ``tuple_order``, each tuple once.

    A tuple spans several buckets (one per bytes and packets value), adjacent since bytes and packets are the last
    sources. Canonical ports differ from the raw ones in two places, both at the start of a (source,
    destination, protocol) run: ICMP's type and code become ports 0, and a missing source port (sorted first)
    becomes 0, beside the real 0s that follow it. Those rows (canonical source port 0) are gathered per run and
    put in order; there are at most as many as destination ports.
    """
    pending: TupleKey | None = None
    totals = [0, 0, 0]
    zero_run: tuple[str, str, int] | None = None  # (src, dst, proto) of the gathered source-port-0 rows
    zero: dict[int, list[int]] = {}

    def flush_zero() -> Iterator[tuple[TupleKey, Totals]]:
        assert zero_run is not None
        for dport in sorted(zero):
            yield (zero_run[0], zero_run[1], 0, dport, zero_run[2]), tuple(zero[dport])  # type: ignore[misc]
        zero.clear()

    for src, dst, proto, sport, dport, bytes_, packets, documents in buckets:
        src = src or ""
        dst = dst or ""
        protocol = int(proto) if proto is not None else -1
        if protocol in ICMP_PROTOCOLS:
            sport = dport = 0
        sport = int(sport or 0)
        dport = int(dport or 0)
        bytes_ = int(bytes_ or 0) * documents
        packets = int(packets or 0) * documents
        if sport == 0:
            run = (src, dst, protocol)
            if run != zero_run:
                if pending is not None:
                    yield pending, tuple(totals)  # type: ignore[misc]
                    pending = None
                if zero:
                    yield from flush_zero()
                zero_run = run
            acc = zero.get(dport)
            if acc is None:
                zero[dport] = [documents, bytes_, packets]
            else:
                acc[0] += documents
                acc[1] += bytes_
                acc[2] += packets
            continue
        if zero:
            yield from flush_zero()
        zero_run = None
        key = (src, dst, sport, dport, protocol)
        if key == pending:
            totals[0] += documents
            totals[1] += bytes_
            totals[2] += packets
            continue
        if pending is not None:
            yield pending, tuple(totals)  # type: ignore[misc]
        pending, totals = key, [documents, bytes_, packets]
    if zero:
        yield from flush_zero()
    if pending is not None:
        yield pending, tuple(totals)  # type: ignore[misc]


# ---------------------------------------------------------------- the merge


class OutOfOrder(ValueError):
    """A stream that should be in ``tuple_order`` is not: the comparison cannot go on."""


@dataclass
class TupleComparison:
    """One exporter's 5-tuple pass: how many differ, the first ones in words, and what was seen."""

    differing: int = 0
    expected_tuples: int = 0
    found_tuples: int = 0
    shown: list[str] | None = None
    found_totals: tuple[int, int, int] = (0, 0, 0)

    def note(self, key: TupleKey, expected: Totals | None, found: Totals | None) -> None:
        self.differing += 1
        if self.shown is None:
            self.shown = []
        if len(self.shown) < DIFFERING_SHOWN:
            self.shown.append(f"{' '.join(map(str, key))}: expected {expected} found {found}")


def compare_tuples(
    expected: Iterable[tuple[TupleKey, Totals]], found: Iterable[tuple[TupleKey, Totals]]
) -> TupleComparison:
    """Merge-compare two streams of (5-tuple, totals) in ``tuple_order``; raises ``OutOfOrder`` when either is
    not (an order key is computed only where the streams disagree: matching keys prove the order)."""
    result = TupleComparison(shown=[])
    found_sums = [0, 0, 0]
    left, right = iter(expected), iter(found)
    a = next(left, None)
    b = next(right, None)
    last_a = last_b = None  # order keys of the last tuple taken from each side where they disagreed
    while a is not None or b is not None:
        if a is not None and b is not None and a[0] == b[0]:
            result.expected_tuples += 1
            result.found_tuples += 1
            _add(found_sums, b[1])
            if a[1] != b[1]:
                result.note(a[0], a[1], b[1])
            a, b = next(left, None), next(right, None)
            continue
        order_a = tuple_order(a[0]) if a is not None else None
        order_b = tuple_order(b[0]) if b is not None else None
        if b is None or (order_a is not None and order_a < order_b):  # type: ignore[operator]
            if last_a is not None and order_a <= last_a:  # type: ignore[operator]
                raise OutOfOrder(f"manifest tuples out of order at {a[0]}")  # type: ignore[index]
            last_a = order_a
            result.expected_tuples += 1
            result.note(a[0], a[1], None)  # type: ignore[index]
            a = next(left, None)
        else:
            if last_b is not None and order_b <= last_b:  # type: ignore[operator]
                raise OutOfOrder(f"Elasticsearch returned 5-tuples out of order at {b[0]}")
            last_b = order_b
            result.found_tuples += 1
            _add(found_sums, b[1])
            result.note(b[0], None, b[1])
            b = next(right, None)
    result.found_totals = (found_sums[0], found_sums[1], found_sums[2])
    return result


def _add(sums: list[int], totals: Totals) -> None:
    sums[0] += totals[0]
    sums[1] += totals[1]
    sums[2] += totals[2]


def side_file_tuples(lines: Iterable[bytes]) -> Iterator[tuple[TupleKey, Totals]]:
    for line in lines:
        _exporter, src, dst, sport, dport, proto, flows, bytes_, packets = orjson.loads(line)
        yield (src, dst, sport, dport, proto), (flows, bytes_, packets)


# ---------------------------------------------------------------- external sorts (bounded memory)


def external_sort(lines: Iterable[str], directory: str) -> Iterator[str]:
    """``lines`` (each ending in a newline) in sorted order, sorted ``SORT_CHUNK`` at a time in memory and merged
    from temporary files."""
    runs: list[IO[str]] = []
    try:
        while chunk := list(itertools.islice(lines, SORT_CHUNK)):
            chunk.sort()
            run = tempfile.TemporaryFile("w+", dir=directory)  # noqa: SIM115 - closed below
            run.writelines(chunk)
            run.seek(0)
            runs.append(run)
        yield from heapq.merge(*runs)
    finally:
        for run in runs:
            run.close()


def order_text(exporter: str, key: TupleKey) -> str:
    """A text whose sort order is (exporter, ``tuple_order``): for re-sorting a side file written in text
    order by an older flowsink. Fixed-width hex for the addresses ('-' padding sorts a missing one first),
    the protocol text ended by a character below every digit, ports in five digits."""
    src, dst, proto_text, sport, dport = tuple_order(key)
    return f"{exporter}\x00{src.hex().rjust(32, '-')}{dst.hex().rjust(32, '-')}{proto_text}\x00{sport:05d}{dport:05d}"


def sorted_side_file(path: Path, directory: str) -> Iterator[bytes]:
    """The lines of a side file written in another order, in (exporter, tuple order), in bounded memory."""

    def keyed() -> Iterator[str]:
        with open(path, "rb") as handle:
            for line in handle:
                exporter, src, dst, sport, dport, proto, *_ = orjson.loads(line)
                yield order_text(exporter, (src, dst, sport, dport, proto)) + "\t" + line.decode()

    for line in external_sort(keyed(), directory):
        yield line.split("\t", 1)[1].encode()


def stream_digest(tuples: Iterable[tuple[TupleKey, Totals]], directory: str) -> str:
    """The manifest's digest of a stream of tuples (its definition sorts the lines as text)."""
    digest = hashlib.sha256()
    first = True
    lines = (" ".join(map(str, (*key, *totals))) + "\n" for key, totals in tuples)
    for line in external_sort(lines, directory):
        if not first:
            digest.update(b"\n")
        digest.update(line[:-1].encode())
        first = False
    return digest.hexdigest()


# ---------------------------------------------------------------- the check


@dataclass
class Outcome:
    """Everything a check found: the totals table, the 5-tuple table, differing tuples per exporter."""

    totals: list[Row]
    tuples: list[Row]
    details: dict[str, list[str]]

    @property
    def rows(self) -> list[Row]:
        return self.totals + self.tuples

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)


def totals_rows(manifest: dict[str, Any], found: dict[str, Totals], sigmas: float) -> list[Row]:
    rows: list[Row] = []
    for address, exp in manifest["exporters"].items():
        documents, bytes_, packets = found.get(address, (0, 0, 0))
        rows += [
            Row(address, "flows", exp["flows"], documents),
            Row(address, "bytes", exp["bytes"], bytes_),
            Row(address, "packets", exp["packets"], packets),
        ]
        represented = exp.get("represented")
        if represented:
            for metric, value in (("packets", packets), ("bytes", bytes_)):
                bound = sigmas * represented[f"{metric}_variance"] ** 0.5
                rows.append(
                    Row(
                        address,
                        f"{metric} vs sampled traffic (±{sigmas:g}σ)",
                        represented[metric],
                        value,
                        bound,
                    )
                )
    return rows


def check(
    manifest_path: Path,
    es_url: str,
    index: str = "flowsink-flows-*",
    since: str | None = None,
    timeout_s: float = 120.0,
    quiet_s: float = 3.0,
    sigmas: float = 5.0,
    show: bool = True,
    on_totals: Callable[[list[Row]], None] | None = None,
) -> tuple[bool, list[Row], dict[str, list[str]]]:
    """Wait for Elasticsearch to settle, compare, and return (all ok, rows, differing tuples per exporter).

    ``on_totals`` gets the per-exporter totals rows as soon as they are known, before the 5-tuple pass."""
    outcome = run_check(manifest_path, es_url, index, since, timeout_s, quiet_s, sigmas, show, on_totals)
    return outcome.ok, outcome.rows, outcome.details


def run_check(
    manifest_path: Path,
    es_url: str,
    index: str,
    since: str | None,
    timeout_s: float,
    quiet_s: float,
    sigmas: float,
    show: bool,
    on_totals: Callable[[list[Row]], None] | None,
) -> Outcome:
    from elasticsearch import Elasticsearch
    from elasticsearch.serializer import OrjsonSerializer

    since = resolve_since(since, time.time())
    manifest = orjson.loads(Path(manifest_path).read_bytes())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path}: not a flowsink manifest (format {manifest.get('format')!r})")
    if not manifest.get("complete"):
        raise ValueError(f"{manifest_path}: the generator has not finished (manifest not final)")
    exporters = list(manifest["exporters"])
    query = flow_query(exporters, since)
    side = Path(manifest_path).with_name(manifest["tuples_file"]) if manifest.get("tuples_file") else None
    es = Elasticsearch(es_url, request_timeout=300, serializer=OrjsonSerializer())
    try:
        wait_until_settled(es, index, query, manifest["totals"]["flows"], timeout_s, quiet_s, show=show)
        totals = totals_rows(manifest, exporter_totals(es, index, query, exporters), sigmas)
        if on_totals is not None:
            on_totals(totals)
        with tempfile.TemporaryDirectory(prefix="check-accuracy-") as scratch:
            if side is not None and side.exists():
                tuples, details = _tuple_pass(es, index, query, manifest, side, scratch, show)
            else:
                tuples, details = _digest_pass(es, index, query, manifest, scratch), {}
    finally:
        es.close()
    return Outcome(totals, tuples, details)


def _ordered_side_file(manifest: dict[str, Any], side: Path, scratch: str) -> Path:
    """The side file in (exporter, tuple order): itself, or (written by an older flowsink, in text order) a
    sorted copy in ``scratch``."""
    if manifest.get("tuples_order") == TUPLES_ORDER:
        return side
    ordered = Path(scratch) / "tuples.jsonl"
    with open(ordered, "wb") as out:
        out.writelines(sorted_side_file(side, scratch))
    return ordered


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle


def _tuple_pass(
    es: Any, index: str, query: dict[str, Any], manifest: dict[str, Any], side: Path, scratch: str, show: bool
) -> tuple[list[Row], dict[str, list[str]]]:
    """Every exporter's 5-tuples, the side file's against Elasticsearch's, merge-compared as they stream."""
    ordered = _ordered_side_file(manifest, side, scratch)
    plan = list(manifest_sources(_lines(ordered)))
    order = [exporter for exporter, _ in plan]
    order += [exporter for exporter in manifest["exporters"] if exporter not in order]
    planned = dict(plan)
    slices = {exporter: list(plan_slices(exporter, planned.get(exporter, []))) for exporter in order}
    stream = fetched(es, index, query, (piece for exporter in order for piece in slices[exporter]))
    groups = itertools.groupby(_lines(ordered), key=_line_exporter)
    rows: list[Row] = []
    details: dict[str, list[str]] = {}
    with _Progress(show, sum(e.get("tuples", 0) for e in manifest["exporters"].values())) as progress:
        for exporter in order:
            expected: Iterable[bytes] = next(groups)[1] if exporter in planned else ()
            found = canonical_tuples(
                bucket for _, buckets in itertools.islice(stream, len(slices[exporter])) for bucket in buckets
            )
            result = compare_tuples(progress.counted(side_file_tuples(expected)), found)
            if exporter in manifest["exporters"]:
                rows += [
                    Row(exporter, "5-tuples", result.expected_tuples, result.found_tuples),
                    Row(exporter, "5-tuples differing", 0, result.differing),
                ]
                details[exporter] = result.shown or []
    return rows, details


def _digest_pass(
    es: Any, index: str, query: dict[str, Any], manifest: dict[str, Any], scratch: str
) -> list[Row]:
    """Without the side file only the manifest's digests can be compared: recomputed from every tuple of
    Elasticsearch, streamed through an external sort."""
    rows = []
    for exporter, exp in manifest["exporters"].items():
        slices = plan_slices(exporter, elasticsearch_sources(es, index, query, exporter))
        found = canonical_tuples(
            bucket for _, buckets in fetched(es, index, query, slices) for bucket in buckets
        )
        digest = stream_digest(found, scratch)
        rows.append(Row(exporter, "5-tuple digest", exp["digest"][:12], digest[:12]))
    return rows


class _Progress:
    """A progress display of the 5-tuple pass (tuples of the manifest compared)."""

    def __init__(self, show: bool, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.display = Progress(
            TextColumn("comparing 5-tuples"),
            BarColumn(),
            TextColumn("{task.completed:,} / {task.total:,}"),
            TimeElapsedColumn(),
            disable=not show,
            transient=True,
        )
        self.task = self.display.add_task("tuples", total=max(total, 1))

    def __enter__(self) -> _Progress:
        self.display.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.display.__exit__(None, None, None)

    def counted(self, items: Iterable[Any], every: int = 10_000) -> Iterator[Any]:
        for n, item in enumerate(items, 1):
            if n % every == 0:
                self.display.advance(self.task, every)
            yield item


def render(rows: list[Row], title: str, details: dict[str, list[str]] | None = None) -> None:
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
    for address, lines in (details or {}).items():
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
        help="only documents with @timestamp at or after this (ISO time or date math, e.g. "
        "2026-01-01T10:00:00Z or now-15m; 'now' is the moment the check starts); default: all",
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
    title = f"{args.manifest} against {args.es} {args.index}"
    try:
        outcome = run_check(
            args.manifest,
            args.es,
            args.index,
            args.since,
            args.timeout,
            args.quiet_period,
            args.sigmas,
            not args.no_progress,
            on_totals=lambda rows: render(rows, f"{title}: per-exporter totals"),
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
    render(outcome.tuples, f"{title}: 5-tuples", outcome.details)
    if outcome.ok:
        print("verdict: OK, Elasticsearch holds exactly what was exported")
        return 0
    print("verdict: DIFFERS for exporters " + ", ".join(affected_exporters(outcome.rows)))
    return 1
