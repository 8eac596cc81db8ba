"""``scripts/check_accuracy.py`` at scale: wall time and peak memory of the check, and of the previous
implementation (every 5-tuple of both sides in memory, one composite aggregation with ``sum`` sub-aggregations
paged over the whole data set), on the same data set in the same run.

The data set: N flows drawn from the generators' traffic model (Zipf hosts, the usual port mix, 20% IPv6, 3%
ICMP) over three exporters, indexed straight into Elasticsearch (``flowsink.generate.direct``: the fields the
check reads of a node's flow documents) through flowsink's index templates under a private prefix, with the
manifest they match. Sending them through UDP and a node would take an hour for 10M flows; the check reads the
same documents either way. The indices and templates are deleted at the end, also when the run is interrupted.

Each check runs in a process of its own: wall time, its CPU time (the rest is Elasticsearch, on the same machine),
its peak resident memory. Prints a markdown section; exits 0 when every check ran and said OK.

    python bench/bench_accuracy.py --quick              # 200k flows
    python bench/bench_accuracy.py                      # 1M flows
    python bench/bench_accuracy.py --flows 10000000     # the previous implementation is skipped above 2M
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowsink.generate.direct import index_flows
from flowsink.generate.manifest import canonical_key, load_manifest
from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates, remove_templates
from run import ensure_elasticsearch

REPO = Path(__file__).resolve().parent.parent
PREVIOUS_MAX_FLOWS = 2_000_000  # the previous implementation's time grows with tuples x documents


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def previous_check(manifest_path: Path, es_url: str, index: str) -> bool:
    """The check as it was before it streamed: the manifest's tuple table and one of Elasticsearch's in memory,
    read with one composite aggregation (``sum`` sub-aggregations) paged over every flow document, compared."""
    manifest = load_manifest(manifest_path)
    exporters = list(manifest["exporters"])
    query = {"bool": {"filter": [{"terms": {"observer.ip": exporters}}]}}
    fields = [("observer", "observer.ip"), ("src", "source.ip"), ("dst", "destination.ip"),
              ("sport", "source.port"), ("dport", "destination.port"), ("proto", "network.iana_number")]  # fmt: skip
    sources = [{n: {"terms": {"field": f, "missing_bucket": n in ("sport", "dport")}}} for n, f in fields]
    sums = {"bytes": {"sum": {"field": "network.bytes"}}, "packets": {"sum": {"field": "network.packets"}}}
    found: dict[str, dict[Any, tuple[int, int, int]]] = {}
    es = Elasticsearch(es_url, request_timeout=600)
    composite: dict[str, Any] = {"size": 5000, "sources": sources}
    while True:
        page = es.search(index=index, size=0, query=query, aggs={"t": {"composite": composite, "aggs": sums}})
        page = page["aggregations"]["t"]
        for bucket in page["buckets"]:
            k = bucket["key"]
            key = canonical_key(k["src"], k["dst"], k["sport"], k["dport"], int(k["proto"]))
            table = found.setdefault(k["observer"], {})
            previous = table.get(key, (0, 0, 0))
            table[key] = (
                previous[0] + bucket["doc_count"],
                previous[1] + round(bucket["bytes"]["value"]),
                previous[2] + round(bucket["packets"]["value"]),
            )
        if not page["buckets"] or not page.get("after_key"):
            break
        composite["after"] = page["after_key"]
    es.close()
    return all(exp["table"] == found.get(address, {}) for address, exp in manifest["exporters"].items())


def measured(command: list[str]) -> tuple[float, int, float, int, str]:
    """(wall seconds, peak resident memory in KiB, CPU seconds, exit status, last output line) of a command.

    The peak is the process's own high-water mark (``VmHWM``), read while it runs: the ``ru_maxrss`` that
    ``wait4`` reports for a child counts its parent's resident memory at the fork (Linux carries the address
    space's high-water mark over the ``exec``), hundreds of megabytes here after building a data set."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read() if process.stdout else ""))
    reader.start()
    peak = 0
    while process.poll() is None:
        try:
            status_lines = Path(f"/proc/{process.pid}/status").read_text().splitlines()
            peak = max([peak] + [int(line.split()[1]) for line in status_lines if line.startswith("VmHWM:")])
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    reader.join()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = "".join(output).strip().splitlines()
    return seconds, peak, cpu, process.returncode, lines[-1] if lines else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200k flows instead of 1M")
    parser.add_argument("--flows", type=int, help="flows in the data set (default 1M, 200k with --quick)")
    parser.add_argument(
        "--previous",
        nargs=3,
        metavar=("MANIFEST", "ES_URL", "INDEX"),
        help="run the previous implementation on MANIFEST (what the benchmark does in a process of its own)",
    )
    args = parser.parse_args()
    if args.previous:
        return 0 if previous_check(Path(args.previous[0]), args.previous[1], args.previous[2]) else 1
    flows = args.flows or (200_000 if args.quick else 1_000_000)
    url, version = ensure_elasticsearch()
    es = Elasticsearch(url, request_timeout=600, serializer=OrjsonSerializer())
    prefix = f"bench-accuracy-{uuid.uuid4().hex[:8]}"
    templates = TemplateSettings(name_prefix=prefix, replicas=0, refresh_interval="-1", geoip=False)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    try:
        install_templates(es, templates)
        index = f"{prefix}-flows-{time.strftime('%Y.%m.%d', time.gmtime())}"
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as scratch:
            manifest = Path(scratch) / "flows.json"
            log(f"indexing {flows:,} flows into {index} ...")
            started = time.monotonic()
            tuples = index_flows(
                es,
                index,
                flows,
                manifest,
                progress=lambda made: log(f"  {made:,} of {flows:,} flows indexed"),
            )
            log(f"  data set ready in {time.monotonic() - started:.0f} s: {tuples:,} distinct 5-tuples")
            side = manifest.with_name("flows.tuples.jsonl")
            results = []
            contenders = [
                ("check_accuracy.py (streaming, per-exporter totals first)",
                 [sys.executable, "scripts/check_accuracy.py", "--manifest", str(manifest), "--es", url,
                  "--index", index, "--no-progress", "--quiet-period", "1"]),
            ]  # fmt: skip
            if flows <= PREVIOUS_MAX_FLOWS:
                contenders.append(
                    ("previous implementation (all tuples in memory, one paged composite)",
                     [sys.executable, "bench/bench_accuracy.py", "--previous", str(manifest), url, index]),
                )  # fmt: skip
            for name, command in contenders:
                log(f"running {name} ...")
                seconds, rss_kib, cpu, status, last = measured(command)
                log(f"  {seconds:.1f} s, {rss_kib / 1024:.0f} MiB, {cpu:.1f} s CPU, exit {status}: {last}")
                results.append((name, seconds, rss_kib, cpu, status))
            manifest_mib = (manifest.stat().st_size + side.stat().st_size) / 2**20
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
        remove_templates(es, templates)
        es.close()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"## Accuracy check at scale (`bench/bench_accuracy.py`{' --flows ' + str(flows) if args.flows else ''})"
    )
    print()
    print(
        f"{flows:,} flows ({tuples:,} distinct 5-tuples, 3 exporters; manifest and side file {manifest_mib:.0f} "
        f"MiB) indexed directly into Elasticsearch {version}; each check in a process of its own, "
        f"load average at the end {load}."
    )
    print()
    print("| implementation | wall time | its CPU time | peak memory (RSS) | verdict |")
    print("|---|---:|---:|---:|---|")
    for name, seconds, rss_kib, cpu, status in results:
        verdict = "OK" if status == 0 else f"exit {status}"
        print(f"| {name} | {seconds:.1f} s | {cpu:.1f} s | {rss_kib / 1024:.0f} MiB | {verdict} |")
    if flows > PREVIOUS_MAX_FLOWS:
        print(
            f"| previous implementation | not run: above {PREVIOUS_MAX_FLOWS:,} flows it pages one composite "
            "aggregation over every document per page (hours at 10M) | | | |"
        )
    print()
    return 0 if all(status == 0 for *_, status in results) else 1


if __name__ == "__main__":
    sys.exit(main())
