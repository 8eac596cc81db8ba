"""Bulk indexing throughput: flowsink's sink against elasticsearch-py's bulk helpers on the same documents.

Contenders, each indexing the same stream of ECS flow documents (about 1 KB of JSON each, deterministic ids,
flowsink's index templates) into a fresh index that is deleted after the run:

- ``streaming_bulk`` and ``parallel_bulk`` of elasticsearch-py with their default settings (500 actions per
  request; 4 threads for ``parallel_bulk``) on a default client, ``create`` with the documents' ids;
- ``parallel_bulk`` on a client with elasticsearch-py's orjson serializer (to tell serialisation from the rest);
- flowsink's ``ElasticsearchSink`` with its defaults (``create``, 5000 documents per request, 2 in flight);
- the sink with ``index`` and automatic ids: the price of deterministic ids (create must look the id up).

Runs are interleaved (run 1 of every contender, then run 2 ...) so that load from other work on the machine
falls on all of them alike. Prints a markdown section; exits 0.

    python bench/bench_sink.py             # 1M documents, 3 runs each
    python bench/bench_sink.py --quick     # 100k documents, 3 runs each
"""

from __future__ import annotations

import argparse
import itertools
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch, helpers
from elasticsearch.serializer import OrjsonSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowsink.generate.documents import deterministic_id, flow_documents
from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates, remove_templates
from flowsink.sinks.elasticsearch.sink import ElasticsearchSink
from run import ensure_elasticsearch

POOL = 20_000  # distinct documents, cycled with fresh ids: generating 1M afresh per run would dominate
DEAD_LETTERS = Path(__file__).resolve().parent / ".work" / "sink-dead-letter.jsonl"  # stays empty
FEED = 50_000  # documents per sink.index() call, as a pipeline worker hands over a large queue batch


@dataclass
class Contender:
    name: str
    run: Callable[[Iterator[dict[str, Any]]], None]
    with_ids: bool = True
    op_type: str | None = "create"  # put into each action for the helpers; None for the sink (its setting)
    docs_per_s: list[float] = field(default_factory=list)
    cpu_per_100k: list[float] = field(default_factory=list)


def document_stream(
    pool: list[dict], ids: list[str], count: int, index: str, contender: Contender
) -> Iterator[dict]:
    for n in range(count):
        doc = dict(pool[n % len(pool)])
        doc["_index"] = index
        if contender.with_ids:
            doc["_id"] = ids[n]
        else:
            doc.pop("_id", None)
        if contender.op_type is not None:
            doc["_op_type"] = contender.op_type
        yield doc


def _batches(stream: Iterator[dict], size: int) -> Iterator[list[dict]]:
    while batch := list(itertools.islice(stream, size)):
        yield batch


def make_contenders(url: str) -> tuple[list[Contender], list[Any]]:
    default_client = Elasticsearch(url, request_timeout=120)
    orjson_client = Elasticsearch(url, request_timeout=120, serializer=OrjsonSerializer())
    sink_create = ElasticsearchSink(url=[url], op_type="create", dead_letter_path=DEAD_LETTERS)
    sink_index = ElasticsearchSink(url=[url], op_type="index", dead_letter_path=DEAD_LETTERS)

    def streaming(stream: Iterator[dict]) -> None:
        for ok, item in helpers.streaming_bulk(default_client, stream):
            assert ok, item

    def parallel(client: Elasticsearch) -> Callable[[Iterator[dict]], None]:
        def run(stream: Iterator[dict]) -> None:
            for ok, item in helpers.parallel_bulk(client, stream):
                assert ok, item

        return run

    def sink_run(sink: ElasticsearchSink) -> Callable[[Iterator[dict]], None]:
        def run(stream: Iterator[dict]) -> None:
            for batch in _batches(stream, FEED):
                outcome = sink.index(batch)
                assert outcome.written == len(batch), outcome

        return run

    contenders = [
        Contender("elasticsearch-py streaming_bulk (defaults)", streaming),
        Contender("elasticsearch-py parallel_bulk (defaults)", parallel(default_client)),
        Contender("elasticsearch-py parallel_bulk, orjson serializer", parallel(orjson_client)),
        Contender(
            "flowsink sink, create + deterministic ids (defaults)", sink_run(sink_create), op_type=None
        ),
        Contender("flowsink sink, index + automatic ids", sink_run(sink_index), with_ids=False, op_type=None),
    ]
    return contenders, [default_client, orjson_client, sink_create, sink_index]


def measure(
    client: Elasticsearch, contender: Contender, stream: Iterator[dict], index: str, count: int
) -> None:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    contender.run(stream)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    client.indices.refresh(index=index)
    indexed = client.count(index=index)["count"]
    if indexed != count:
        raise RuntimeError(f"{contender.name}: {indexed} documents in {index}, expected {count}")
    contender.docs_per_s.append(count / wall)
    contender.cpu_per_100k.append(cpu / count * 100_000)
    print(
        f"  {contender.name}: {count} docs in {wall:.1f} s = {count / wall:,.0f} docs/s",
        file=sys.stderr,
        flush=True,
    )


def report(contenders: list[Contender], count: int, runs: int, doc_bytes: float, es_version: str) -> str:
    by_name = {c.name: statistics.median(c.docs_per_s) for c in contenders}
    peer = by_name["elasticsearch-py parallel_bulk (defaults)"]
    sink = by_name["flowsink sink, create + deterministic ids (defaults)"]
    auto = by_name["flowsink sink, index + automatic ids"]
    lines = [
        "## Bulk indexing: flowsink sink vs elasticsearch-py helpers",
        "",
        f"{count:,} ECS flow documents ({doc_bytes:.0f} bytes of JSON each on average) per run, {runs} runs per"
        f" contender, interleaved; Elasticsearch {es_version}, single node on the same machine; a fresh index per"
        " run with flowsink's templates. Client CPU is this process's CPU time (all threads).",
        "",
        "| contender | median docs/s | runs (docs/s) | client CPU s per 100k docs | vs parallel_bulk |",
        "|---|---:|---|---:|---:|",
    ]
    for c in contenders:
        runs_text = ", ".join(f"{r:,.0f}" for r in c.docs_per_s)
        lines.append(
            f"| {c.name} | {by_name[c.name]:,.0f} | {runs_text} | {statistics.median(c.cpu_per_100k):.2f} |"
            f" {by_name[c.name] / peer:.2f}x |"
        )
    lines += [
        "",
        f"- **sink / parallel_bulk (defaults) = {sink / peer:.2f}x** (median docs/s, same documents, same run).",
        f"- Deterministic ids with `create` cost: index + auto ids runs at {auto / sink:.2f}x the docs/s of"
        " create + deterministic ids (create must look each id up; it is what makes replays after a crash"
        " land as 409 duplicates instead of copies).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k documents per run")
    parser.add_argument("--docs", type=int, help="documents per run (default 1M, 100k with --quick)")
    parser.add_argument("--runs", type=int, default=3, help="runs per contender")
    args = parser.parse_args()
    count = args.docs or (100_000 if args.quick else 1_000_000)

    # SIGTERM ends the run through the finally below, so no bench index or template is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url, es_version = ensure_elasticsearch()
    client = Elasticsearch(url, request_timeout=120)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = TemplateSettings(name_prefix=prefix)
    install_templates(client, settings)
    print(f"generating {POOL:,} documents and {count:,} ids", file=sys.stderr, flush=True)
    pool = list(flow_documents(POOL, prefix))
    ids = [deterministic_id("198.51.100.1", n // 30, n % 30) for n in range(count)]
    doc_bytes = statistics.fmean(
        len(orjson.dumps({k: v for k, v in d.items() if k[0] != "_"})) for d in pool[:2000]
    )
    contenders, closables = make_contenders(url)
    try:
        for run in range(1, args.runs + 1):
            print(f"run {run}/{args.runs}", file=sys.stderr, flush=True)
            for number, contender in enumerate(contenders):
                index = f"{prefix}-flows-r{run}c{number}-2026.11.23"
                try:
                    measure(
                        client, contender, document_stream(pool, ids, count, index, contender), index, count
                    )
                finally:
                    client.options(ignore_status=404).indices.delete(index=index)
    finally:
        for closable in closables:
            closable.close()
        client.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
        remove_templates(client, settings)
        client.close()
    print(report(contenders, count, args.runs, doc_bytes, es_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
