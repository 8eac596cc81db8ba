"""What each flow costs Elasticsearch: flowsink's documents and templates, each lever on them, and Filebeat's.

The same flows for every contender, in one run, against one Elasticsearch node of the benchmark's own (started
with ``scripts/elasticsearch.sh`` under a private name and port, stopped and wiped at the end; ``--es-url`` uses
another single-node cluster instead): NetFlow v9 datagrams from the project's traffic model (``flowsink
generate``'s: Zipf-ranked hosts, Pareto flow sizes, the usual port mix, 20% IPv6), decoded by flowsink into its
documents, and by Filebeat 7.17's netflow input into its own (cached in ``bench/.work``).

Each contender indexes its documents into an index of its own, created with its settings and mappings, sending
pre-built bulk bodies from 2 threads (flowsink's ``bulk_concurrency``), 5,000 documents per request unless the
contender says otherwise. Measured per contender and run:

- flows/s: documents / wall time from the first timed request to the end of a refresh (the first 2% of the
  documents, which add the fields to the new index's mapping, go before the clock starts: a daily index does
  that once a day);
- Elasticsearch CPU-seconds per 100k flows: ``process.cpu.total_in_millis`` of the node (nodes stats API) from
  just before the timed requests until the refresh is done and no merge runs any more;
- bytes on disk per flow: the primary store after a force-merge to one segment and a flush;
- bulk bytes per flow: request bodies as sent (gzip-compressed where the contender compresses).

Runs are interleaved (run 1 of every contender, then run 2 ...); medians are reported. flowsink sends ``create``
with its deterministic ids (what it ships: replays answer 409), Filebeat ``index`` with ids chosen by
Elasticsearch (what its Elasticsearch output does). Every lever row is the baseline (flowsink's templates with
every lever off: the templates as they were before the levers were measured) with one lever applied.

    python bench/bench_es_cost.py                   # 100k flows per contender, 3 runs
    python bench/bench_es_cost.py --quick           # 20k flows, 1 run
    python bench/bench_es_cost.py --only baseline --only filebeat   # some contenders
"""

from __future__ import annotations

import argparse
import copy
import gzip
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import urllib3
from elasticsearch import Elasticsearch
from elasticsearch.exceptions import GeneralAvailabilityWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
from flowsink.decode import FlowDecoder
from flowsink.sinks.elasticsearch.index_templates import (
    TemplateSettings,
    install_templates,
    remove_templates,
    source_only_fields,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ES_SCRIPT = REPO / "scripts" / "elasticsearch.sh"
EXPORTER = "127.0.0.1"  # where the datagrams come from, for flowsink and Filebeat alike (observer.ip)
START_MS = (
    1_795_000_000_000  # 2026-11-18: the flows' time (one day: every contender's documents in one index)
)
FLOWS_PER_SECOND = 500  # of exporter time: 100k flows span 200 s, as one busy router's export

# What the lean profile keeps in _source only: the raw netflow.*/sflow.* fields whose value the ECS part also
# holds (the same value, or one derived from it alone), and flow.id; its decoders could leave them out
LEAN_SOURCE_ONLY = source_only_fields("lean")
# As elasticsearch/ecs-flow.json maps them: one value per flow that no dashboard, alert or API aggregates on,
# searchable (a user may look a flow up by its id) without doc values; the exporter's uptime in _source only
NOT_AGGREGATED = ["flow.id", "network.community_id"]
NOT_QUERIED = ["netflow.exporter.uptime_millis"]
BREAKDOWN = (
    "baseline",
    "default",
    "lean",
    "filebeat",
)  # contenders whose bytes on disk are broken down by field
# Right-sized numeric types: ECS says long for all of these, but their values never need more
SMALLER_NUMBERS = {
    "source.port": "integer",
    "destination.port": "integer",
    "netflow.source_transport_port": "integer",
    "netflow.destination_transport_port": "integer",
    "netflow.protocol_identifier": "short",
    "netflow.ip_class_of_service": "short",
    "netflow.tcp_control_bits": "integer",
    "netflow.ingress_interface": "long",
    "netflow.egress_interface": "long",
    "flow.sampling_rate": "integer",
}


warnings.filterwarnings("ignore", category=GeneralAvailabilityWarning)  # _disk_usage is a technical preview


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- traffic and documents


def traffic(flows: int, seed: int) -> list[bytes]:
    """NetFlow v9 datagrams (templates in the first one and every 10 s of exporter time) holding ``flows``."""
    cache = peers.WORK / f"escost-v9-{flows}-{seed}.bin"
    if cache.exists():
        return _read_payloads(cache)
    from flowsink.generate.model import TrafficModel, TrafficSettings
    from flowsink.generate.netflow_v9 import NetflowV9Encoder

    model = TrafficModel(TrafficSettings(seed=seed))
    encoder = NetflowV9Encoder(source_id=1, boot_ms=START_MS - 86_400_000, options=False)
    datagrams: list[bytes] = []
    made, second = 0, 0
    while made < flows:
        now = START_MS + second * 1000
        batch = model.flows(min(FLOWS_PER_SECOND, flows - made), now)
        while batch:
            payload, taken = encoder.pack(batch, now)
            datagrams.append(payload)
            batch = batch[taken:]
            made += taken
        second += 1
    peers.WORK.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"".join(len(p).to_bytes(2, "big") + p for p in datagrams))
    return datagrams


def _read_payloads(path: Path) -> list[bytes]:
    raw, out, at = path.read_bytes(), [], 0
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 2], "big")
        out.append(raw[at + 2 : at + 2 + length])
        at += 2 + length
    return out


def flowsink_documents(datagrams: list[bytes]) -> list[dict[str, Any]]:
    """flowsink's documents of the datagrams (``_id`` included), as its decoders make them."""
    decoder = FlowDecoder()
    documents: list[dict[str, Any]] = []
    for payload in datagrams:
        documents += decoder.decode(payload, EXPORTER, START_MS * 1_000_000).documents
    return documents


def filebeat_documents(datagrams: list[bytes], flows: int, key: str) -> list[dict[str, Any]] | None:
    """Filebeat's documents of the same datagrams (its file output, ``@metadata`` removed), or None."""
    cache = peers.WORK / f"escost-filebeat-{peers.BEATS_VERSION}-{key}.ndjson"
    if not cache.exists():
        if peers.filebeat() is None:
            return None
        import bench_decode

        kept: list[bytes] = []

        def keep(workdir: Path) -> None:
            kept[:] = [path.read_bytes() for path in sorted((workdir / "out").glob("flows*"))]

        contender = next(c for c in bench_decode.WHOLE_PROCESS if c.name.startswith("Filebeat"))
        each = bench_decode.flows_per_datagram(datagrams)
        found = bench_decode.run_whole_process(contender, "netflow_v9", datagrams, each, 0, 15_000, keep)
        if found is None or found[0] != flows:
            log(f"Filebeat wrote {found and found[0]} of {flows} flows: its documents are left out")
            return None
        cache.write_bytes(b"".join(kept))
    documents = []
    for line in cache.read_bytes().splitlines():
        document = orjson.loads(line)
        document.pop("@metadata", None)
        documents.append(document)
    return documents


def filebeat_index_body() -> dict[str, Any] | None:
    """Filebeat's own index template (``filebeat export template``), as settings + mappings, or None.

    A few types of its mapping come from modules the plain server distribution lacks; they become their nearest
    core type (wildcard and constant_keyword -> keyword, match_only_text -> text, scaled_float -> float). None
    of them is a field of a netflow document, so the cost per flow does not move. Its ILM settings are dropped
    (no ILM here, and no part of the cost).
    """
    cache = peers.WORK / f"escost-filebeat-{peers.BEATS_VERSION}-template.json"
    if not cache.exists():
        binary = peers.filebeat()
        if binary is None:
            return None
        home = peers.WORK / "filebeat-export"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "filebeat.yml"
        config.write_text("setup.ilm.enabled: false\nfilebeat.inputs: []\noutput.file.path: /dev/null\n")
        config.chmod(0o600)
        done = subprocess.run(
            [str(binary), "export", "template", "-c", str(config), "--path.home", str(home)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            log(f"filebeat export template failed: {done.stderr.strip()[-400:]}")
            return None
        cache.write_text(done.stdout)
    exported = orjson.loads(cache.read_text())
    template = exported.get("template", exported)  # composable (7.17 exports one) or legacy
    settings = template.get("settings", {})
    settings.get("index", {}).pop("lifecycle", None)
    for key in [k for k in settings if k.startswith("index.lifecycle")]:
        settings.pop(key)
    mappings = template["mappings"]
    _core_types(mappings)
    return {"settings": settings, "mappings": mappings}


# x-pack mappers -> the core type they index like (the server distribution has only the core ones)
_CORE_TYPES = {
    "wildcard": "keyword",
    "constant_keyword": "keyword",
    "match_only_text": "text",
    "scaled_float": "float",  # a module (mapper-extras) the server distribution lacks
}


def _core_types(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and node["type"] in _CORE_TYPES:
            node["type"] = _CORE_TYPES[node["type"]]
            node.pop("value", None)  # constant_keyword's
            node.pop("scaling_factor", None)
        for value in node.values():
            _core_types(value)
    elif isinstance(node, list):
        for item in node:
            _core_types(item)


# ---------------------------------------------------------------- contenders


Body = dict[str, Any]  # {"settings": ..., "mappings": ...} of an index


@dataclass
class Contender:
    name: str
    lever: str  # what differs, for the table
    source: str = "flowsink"  # whose documents: flowsink or filebeat
    body: str = "baseline"  # starting index body: baseline, default, lean (the installer's) or filebeat
    change_body: Callable[[Body], None] | None = None
    change_document: Callable[[dict[str, Any]], None] | None = None
    bulk_docs: int = 5000
    compress: bool = False
    create_with_ids: bool = True
    flows_per_s: list[float] = field(default_factory=list)
    cpu_per_100k: list[float] = field(default_factory=list)
    disk_per_flow: list[float] = field(default_factory=list)
    bulk_per_flow: list[float] = field(default_factory=list)
    fields: dict[str, float] = field(default_factory=dict)  # bytes per flow on disk, by field (first run)


def _settings(body: Body) -> dict[str, Any]:
    return body.setdefault("settings", {}).setdefault("index", {})


def _field(body: Body, dotted: str) -> dict[str, Any]:
    """The mapping of a dotted field, created as an object path when missing."""
    node = body.setdefault("mappings", {})
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault("properties", {}).setdefault(part, {})
    return node.setdefault("properties", {}).setdefault(leaf, {})


def _leaf_type(body: Body, dotted: str, default: str) -> str:
    return _field(body, dotted).get("type", default)


_lean_mappings: dict[str, Any] = {}  # the lean profile's mappings as installed on this cluster (main sets it)


def source_only(body: Body) -> None:
    """The lean profile's mappings alone: its fields neither indexed nor with doc values, only in _source."""
    _merge(body.setdefault("mappings", {}).setdefault("properties", {}), copy.deepcopy(_lean_mappings))


def lean_source_only_mappings(lean: Body) -> dict[str, Any]:
    """The mappings of the fields the lean profile keeps in _source only, from its body as installed (types
    resolved for the cluster: unsigned_long where it exists)."""
    picked: dict[str, Any] = {}
    for name in LEAN_SOURCE_ONLY:
        *parents, leaf = name.split(".")
        source, into = lean["mappings"], picked
        for part in parents:
            source = source["properties"][part]
            into = into.setdefault(part, {"properties": {}})["properties"]
        into[leaf] = source["properties"][leaf]
    return picked


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for name, mapping in extra.items():
        if "properties" in mapping and "properties" in into.get(name, {}):
            _merge(into[name]["properties"], mapping["properties"])
        else:
            into[name] = mapping


def not_written(document: dict[str, Any]) -> None:
    """What a decoder that leaves out the fields the lean profile keeps in _source only would send."""
    for name in LEAN_SOURCE_ONLY:
        *parents, leaf = name.split(".")
        node: Any = document
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)


def fewer_doc_values(body: Body) -> None:
    for name in NOT_AGGREGATED:
        _field(body, name)["doc_values"] = False
    for name in NOT_QUERIED:
        _field(body, name).update(index=False, doc_values=False)


def smaller_numbers(body: Body) -> None:
    for name, kind in SMALLER_NUMBERS.items():
        mapping = _field(body, name)
        mapping["type"] = kind
        if name.startswith("netflow."):
            mapping["ignore_malformed"] = True


def best_compression(body: Body) -> None:
    _settings(body)["codec"] = "best_compression"


def sort_by_time(body: Body) -> None:
    _settings(body)["sort"] = {"field": "@timestamp", "order": "desc"}


def refresh(interval: str) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        _settings(body)["refresh_interval"] = interval

    return change


def synthetic_source(body: Body) -> None:
    _settings(body).setdefault("mapping", {})["source"] = {"mode": "synthetic"}


def logsdb(body: Body) -> None:
    _settings(body)["mode"] = "logsdb"


def plain_index(body: Body) -> None:
    """What the installer renders for the lean profile where LogsDB would keep a stored _source."""
    _settings(body).pop("mode", None)


def contenders() -> list[Contender]:
    return [
        Contender("baseline", "flowsink's documents, its templates with no lever (as before issue 16)"),
        Contender("source-only", "lean's fields (raw ECS duplicates, flow.id) in _source only", change_body=source_only),
        Contender("not-written", "lean's fields not written at all", change_document=not_written),
        Contender("doc-values", "flow.id, community_id without doc values; uptime _source only", change_body=fewer_doc_values),
        Contender("numbers", "right-sized numeric types (ports integer ...)", change_body=smaller_numbers),
        Contender("best-compression", "index.codec: best_compression", change_body=best_compression),
        Contender("sorted", "index sorted by @timestamp", change_body=sort_by_time),
        Contender("refresh-1s", "refresh_interval 1s (baseline 5s)", change_body=refresh("1s")),
        Contender("refresh-30s", "refresh_interval 30s", change_body=refresh("30s")),
        Contender("synthetic-source", "synthetic _source", change_body=synthetic_source),
        Contender("logsdb", "index.mode: logsdb (synthetic _source, sorted, best_compression)", change_body=logsdb),
        Contender("bulk-1000", "1,000 documents per bulk request (baseline 5,000)", bulk_docs=1000),
        Contender("bulk-20000", "20,000 documents per bulk request", bulk_docs=20000),
        Contender("gzip", "HTTP compression of bulk requests (gzip level 1)", compress=True),
        Contender("auto-ids", "index with automatic ids, not create + deterministic ids", create_with_ids=False),
        Contender("default", "shipped: document_profile full (the default)", body="default"),
        Contender("lean-templates", "shipped: document_profile lean, documents as written today", body="lean"),
        Contender("lean", "shipped: document_profile lean, its fields not written", body="lean", change_document=not_written),
        Contender(
            "lean-stored",
            "lean where LogsDB has no synthetic _source (plain index), its fields not written",
            body="lean",
            change_body=plain_index,
            change_document=not_written,
        ),
        Contender(
            "filebeat",
            "Filebeat 7.17's documents and its own template, same requests",
            source="filebeat",
            body="filebeat",
            create_with_ids=False,
        ),
        Contender(
            "filebeat-50",
            "the same, 50 documents per request (Filebeat's bulk_max_size)",
            source="filebeat",
            body="filebeat",
            create_with_ids=False,
            bulk_docs=50,
        ),
    ]  # fmt: skip


# ---------------------------------------------------------------- the node


def _free_es_port() -> int:
    """A free HTTP port whose transport port (+100, as scripts/elasticsearch.sh sets it) is free too."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 100 < 65536:
            try:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + 100))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair for a private Elasticsearch")


class PrivateNode:
    """A single Elasticsearch node of this benchmark's own: nothing else indexes into it."""

    def __init__(self) -> None:
        self.name = f"bench-escost-{uuid.uuid4().hex[:6]}"
        self.port = _free_es_port()
        self.env = dict(os.environ, ES_NAME=self.name, ES_PORT=str(self.port))

    def start(self) -> str:
        done = subprocess.run(
            ["bash", str(ES_SCRIPT), "start"], env=self.env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot start a private Elasticsearch: {done.stderr[-1500:]}")
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        subprocess.run(["bash", str(ES_SCRIPT), "stop"], env=self.env, capture_output=True, timeout=180)
        run_dir = Path(os.environ.get("FLOWSINK_RUN_DIR", REPO / ".run"))
        shutil.rmtree(run_dir / f"es-{self.name}", ignore_errors=True)


def cpu_seconds(client: Elasticsearch) -> float:
    nodes = client.nodes.stats(node_id="_local", metric="process")["nodes"]
    return next(iter(nodes.values()))["process"]["cpu"]["total_in_millis"] / 1000


# ---------------------------------------------------------------- bodies and requests


def installed_body(client: Elasticsearch, profile: str | None) -> Body:
    """Settings + mappings the installer's templates give a flows index (``profile`` None: the shipped
    default), read back with the simulate API after installing them under a private prefix."""
    prefix = f"escost{uuid.uuid4().hex[:8]}"
    settings = TemplateSettings(name_prefix=prefix)
    if profile is not None:
        settings = replace(settings, document_profile=profile)
    install_templates(client, settings)
    try:
        found = client.indices.simulate_index_template(name=f"{prefix}-flows-2026.11.18")["template"]
    finally:
        remove_templates(client, settings)
    body = {"settings": found["settings"], "mappings": found["mappings"]}
    _settings(body).pop("default_pipeline", None)
    return body


LEVER_SETTINGS = ("codec", "sort", "mode")


def without_levers(body: Body) -> Body:
    """The shipped default with every lever of this benchmark off: the baseline the lever rows change."""
    body = copy.deepcopy(body)
    index = _settings(body)
    for key in LEVER_SETTINGS:
        index.pop(key, None)
    index.get("mapping", {}).pop("source", None)
    index["refresh_interval"] = "5s"
    mappings = body["mappings"]
    for name in [*NOT_AGGREGATED, *NOT_QUERIED, *SMALLER_NUMBERS]:
        node: dict[str, Any] | None = mappings
        for part in name.split("."):
            node = (node or {}).get("properties", {}).get(part)
        if node is None:
            continue
        node.pop("doc_values", None)
        node.pop("index", None)
        if name in SMALLER_NUMBERS:
            node["type"] = "long"
    return body


def bulk_bodies(
    documents: list[dict[str, Any]], contender: Contender, index: str
) -> Iterator[tuple[bytes, int]]:
    """(request body, documents in it) for the contender's requests, built before the clock starts."""
    lines: list[bytes] = []
    for number, original in enumerate(documents, 1):
        document = dict(original)
        doc_id = document.pop("_id", None)
        if contender.change_document is not None:
            document = copy.deepcopy(document)
            contender.change_document(document)
        if contender.create_with_ids and doc_id is not None:
            action = {"create": {"_index": index, "_id": doc_id}}
        else:
            action = {"index": {"_index": index}}
        lines.append(orjson.dumps(action) + b"\n" + orjson.dumps(document) + b"\n")
        if len(lines) == contender.bulk_docs or number == len(documents):
            body = b"".join(lines)
            yield (gzip.compress(body, compresslevel=1) if contender.compress else body), len(lines)
            lines = []


def send_all(url: str, requests: list[tuple[bytes, int]], compress: bool, threads: int = 2) -> None:
    pool = urllib3.PoolManager(maxsize=threads, retries=False, timeout=urllib3.Timeout(total=300))
    headers = {"Content-Type": "application/x-ndjson"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    queue = list(reversed(requests))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if not queue or errors:
                    return
                body, _ = queue.pop()
            answer = pool.request(
                "POST", f"{url}/_bulk?filter_path=errors,items.*.error", body=body, headers=headers
            )
            if answer.status >= 300 or orjson.loads(answer.data).get("errors"):
                with lock:
                    errors.append(f"{answer.status}: {answer.data[:600]!r}")

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    pool.clear()
    if errors:
        raise RuntimeError(f"bulk request failed: {errors[0]}")


def wait_for_merges(client: Elasticsearch, index: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = client.indices.stats(index=index, metric="merge")["_all"]["primaries"]["merges"]
        if stats["current"] == 0:
            return
        time.sleep(0.2)


def measure(
    client: Elasticsearch,
    url: str,
    contender: Contender,
    body: Body,
    documents: list[dict[str, Any]],
    run: int,
    breakdown: bool = False,
) -> None:
    """One run of one contender; ``breakdown`` also keeps the bytes per flow of its largest fields."""
    index = f"escost-{contender.name}-r{run}".lower()
    client.options(ignore_status=404).indices.delete(index=index)
    client.indices.create(index=index, settings=body["settings"], mappings=body["mappings"])
    try:
        # The first documents add the fields to the mapping, once per (daily) index: sent before the clock
        # starts, so that the figures are those of an index in its steady state.
        primer = max(1, len(documents) // 50)
        first = list(bulk_bodies(documents[:primer], contender, index))
        requests = list(bulk_bodies(documents[primer:], contender, index))
        sent = sum(len(request) for request, _ in first + requests)
        send_all(url, first, contender.compress)
        timed = len(documents) - primer
        time.sleep(1.0)
        cpu_before, started = cpu_seconds(client), time.monotonic()
        send_all(url, requests, contender.compress)
        client.indices.refresh(index=index)
        elapsed = time.monotonic() - started
        wait_for_merges(client, index)
        cpu = cpu_seconds(client) - cpu_before
        count = client.count(index=index)["count"]
        if count != len(documents):
            raise RuntimeError(f"{contender.name}: {count} documents in {index}, expected {len(documents)}")
        client.options(request_timeout=1800).indices.forcemerge(index=index, max_num_segments=1)
        client.indices.flush(index=index)
        store = client.indices.stats(index=index, metric="store")["_all"]["primaries"]["store"][
            "size_in_bytes"
        ]
        if breakdown:
            usage = client.options(request_timeout=1800).indices.disk_usage(
                index=index, run_expensive_tasks=True
            )
            contender.fields = {
                name: found["total_in_bytes"] / len(documents)
                for name, found in usage[index]["fields"].items()
            }
    finally:
        client.options(ignore_status=404).indices.delete(index=index)
    flows = len(documents)
    contender.flows_per_s.append(timed / elapsed)
    contender.cpu_per_100k.append(cpu / timed * 100_000)
    contender.disk_per_flow.append(store / flows)
    contender.bulk_per_flow.append(sent / flows)
    log(
        f"  {contender.name}: {timed / elapsed:,.0f} flows/s, {cpu / timed * 100_000:.2f} ES CPU-s per 100k, "
        f"{store / flows:.0f} B/flow on disk, {sent / flows:.0f} B/flow sent"
    )


# ---------------------------------------------------------------- report


def report(
    measured: list[Contender], flows: int, runs: int, es_version: str, notes: list[str], private: bool
) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    by_name = {c.name: c for c in measured}
    filebeat = by_name.get("filebeat")
    filebeat_efficiency = 100_000 / med(filebeat.cpu_per_100k) if filebeat and filebeat.cpu_per_100k else None
    lines = [
        "## Elasticsearch cost per flow (bench/bench_es_cost.py)",
        "",
        f"{flows:,} NetFlow v9 flows (the traffic model of `flowsink generate`) per contender and run, median of"
        f" {runs} interleaved run(s); Elasticsearch {es_version}, "
        + ("a single node of the benchmark's own" if private else "the given cluster")
        + ", 1 shard, no replica. Requests pre-built, sent from 2 threads, 5,000 documents each unless the row"
        " says otherwise; the first 2% of the documents (new fields into the mapping) before the clock starts. ES CPU: the"
        " node's process CPU from the timed requests until refreshed and merged."
        " Disk: primary store after a force-merge to one segment. flowsink sends `create` with its ids,"
        " Filebeat `index` with automatic ids. Lever rows: the baseline with that one lever.",
        "",
        "| contender | lever | flows/s | ES CPU-s per 100k flows | flows per ES CPU-s | vs Filebeat | bytes on disk"
        " per flow | bulk bytes per flow |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in measured:
        if not c.cpu_per_100k:
            lines.append(f"| {c.name} | {c.lever} | - | - | - | - | - | - |")
            continue
        efficiency = 100_000 / med(c.cpu_per_100k)
        versus = f"{efficiency / filebeat_efficiency:.2f}x" if filebeat_efficiency else "-"
        lines.append(
            f"| {c.name} | {c.lever} | {med(c.flows_per_s):,.0f} | {med(c.cpu_per_100k):.2f} | {efficiency:,.0f} |"
            f" {versus} | {med(c.disk_per_flow):.0f} | {med(c.bulk_per_flow):.0f} |"
        )
    goals = []
    for name in ("default", "lean"):
        c = by_name.get(name)
        if c and c.cpu_per_100k and filebeat_efficiency:
            efficiency = 100_000 / med(c.cpu_per_100k)
            goals.append(
                f"- {name}: {efficiency / filebeat_efficiency:.2f}x Filebeat's flows per ES CPU-second (goal"
                f" >= 2x), {med(c.disk_per_flow):.0f} bytes per flow on disk (goal <= 120)."
            )
    if goals:
        lines += ["", *goals]
    broken = [c for c in measured if c.fields]
    if broken:
        lines += [
            "",
            "Where the bytes on disk go (first run, `_disk_usage`): bytes per flow of the largest fields.",
            "",
            "| contender | largest fields, bytes per flow |",
            "|---|---|",
        ]
        for c in broken:
            top = sorted(c.fields.items(), key=lambda item: -item[1])[:8]
            lines.append(f"| {c.name} | " + ", ".join(f"`{name}` {size:.0f}" for name, size in top) + " |")
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k flows, 1 run")
    parser.add_argument("--flows", type=int, help="flows per contender (default 100k, 20k with --quick)")
    parser.add_argument("--runs", type=int, help="interleaved runs (default 3, 1 with --quick)")
    parser.add_argument("--only", action="append", default=[], help="contenders whose name contains this")
    parser.add_argument("--es-url", help="use this single-node cluster instead of a private node")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    flows = args.flows or (20_000 if args.quick else 100_000)
    runs = args.runs or (1 if args.quick else 3)
    chosen = [c for c in contenders() if not args.only or any(word in c.name for word in args.only)]
    if not chosen:
        log("no contender matched")
        return 1

    log(f"traffic: {flows:,} NetFlow v9 flows")
    datagrams = traffic(flows, args.seed)
    sources: dict[str, list[dict[str, Any]] | None] = {"flowsink": flowsink_documents(datagrams)}
    notes: list[str] = []
    if any(c.source == "filebeat" for c in chosen):
        sources["filebeat"] = filebeat_documents(datagrams, flows, f"{flows}-{args.seed}")
        if sources["filebeat"] is None:
            notes.append("Filebeat not built or its run failed (Go needed): its rows are empty.")

    node = None if args.es_url else PrivateNode()
    url = args.es_url or node.start()
    client = Elasticsearch(url, request_timeout=600)
    try:
        version = next(iter(client.nodes.info(node_id="_local")["nodes"].values()))["version"]
        default = installed_body(client, None)
        bodies: dict[str, Body | None] = {"default": default, "baseline": without_levers(default)}
        bodies["lean"] = installed_body(client, "lean")
        _lean_mappings.update(lean_source_only_mappings(bodies["lean"]))
        if any(c.body == "filebeat" for c in chosen):
            bodies["filebeat"] = filebeat_index_body()
        runnable = []
        for c in chosen:
            body, documents = bodies.get(c.body), sources.get(c.source)
            if body is None or documents is None:
                continue
            body = copy.deepcopy(body)
            if c.change_body is not None:
                c.change_body(body)
            runnable.append((c, body, documents))
        # Warm-up: the first documents a fresh JVM indexes cost more (JIT compilation), in the plain and in the
        # LogsDB code paths; no contender should pay for it. Not reported.
        in_logsdb = copy.deepcopy(bodies["baseline"])
        logsdb(in_logsdb)
        for warm_up in (bodies["baseline"], in_logsdb):
            measure(client, url, Contender("warm-up", ""), warm_up, sources["flowsink"], 0)
        for run in range(1, runs + 1):
            log(f"run {run}/{runs}")
            turn = (run - 1) % len(runnable)  # each run starts elsewhere: no contender always follows another
            for c, body, documents in runnable[turn:] + runnable[:turn]:
                measure(client, url, c, body, documents, run, breakdown=run == 1 and c.name in BREAKDOWN)
    finally:
        client.close()
        if node is not None:
            node.stop()
    print(report(chosen, flows, runs, version, notes, node is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
