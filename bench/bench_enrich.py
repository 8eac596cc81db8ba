"""Decode + enrich + bulk lines, with every enrichment on against none, one core, per protocol, in the same run.

The cost of the enrichment hook (issue 15's acceptance: with all enrichment on, at least 75% of the flows per
CPU-second of the same run without it). The work is bench/bench_decode.py's (``run_flowsink``: the pipeline's
decode to bulk lines), once with a decoder without enrichment and once with an ``enrich`` section that adds
everything there is today: the exporter's name, tags, labels, every ifIndex named with an alias and a speed,
and internal networks (locality, direction, related.ip). Runs alternate (off, on, off, on ...) so that the
machine's drift falls on both alike; figures are flows per CPU-second (``time.process_time``).

The NetFlow v9, IPFIX and sFlow rows repeat a real capture's datagram: the same addresses every time, the address
cache answers every lookup after the first. The NetFlow v5 row gives every flow a source address never seen
before: every source is a cache miss (the Python lookup), the worst case.

    python bench/bench_enrich.py            # full run
    python bench/bench_enrich.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import os
import sys

from bench_decode import EXPORTER, median_rate, run_flowsink, traffic_by_protocol
from flowsink.decode import FlowDecoder
from flowsink.enrich.enricher import build_enricher
from flowsink.enrich.settings import EnrichSettings
from flowsink.native import EXTENSION


def enrich_settings(observers: set[str]) -> EnrichSettings:
    """Everything enrichment adds today, for every exporter (or sFlow agent) of the traffic."""
    interfaces = {
        i: {"name": f"et-0/0/{i}", "alias": f"port {i}", "speed": 100_000_000_000} for i in range(4096)
    }
    exporter = {"name": "edge-1", "tags": ["bench"], "labels": {"site": "par1"}, "interfaces": interfaces}
    settings = EnrichSettings(
        exporters={address: exporter for address in observers},
        internal_networks=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"],
    )
    settings.validate()
    return settings


def observers(templates: list[bytes], datagrams: list[bytes]) -> set[str]:
    """The observer addresses of the traffic's documents (an sFlow agent is not the UDP sender)."""
    decoder = FlowDecoder()
    for payload in [*templates, *datagrams[:1]]:
        decoder.decode(payload, EXPORTER, 0)
    found = {EXPORTER}
    for payload in datagrams[:1]:
        found |= {document["observer"]["ip"] for document in decoder.decode(payload, EXPORTER, 0).documents}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer datagrams and repeats)")
    args = parser.parse_args(argv)
    datagrams = 300 if args.quick else 2000
    repeats = 3 if args.quick else 5
    if os.environ.get("FLOWSINK_BENCH_CPU") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(os.environ["FLOWSINK_BENCH_CPU"])})
    lines = [
        "## Enrichment (bench/bench_enrich.py)",
        "",
        f"Flows per CPU-second, {datagrams} datagrams per run, median of {repeats} runs, alternating: decode + "
        "ECS document + bulk lines (bench_decode's work) without enrichment, and with all of it (exporter name, "
        "tags, labels, 4096 named interfaces with alias and speed, internal networks: locality, direction, "
        f"related.ip). C extension {'built' if EXTENSION is not None else 'NOT built: pure Python'}.",
        "",
        "| protocol | traffic | off flows/s | on flows/s | on / off | address cache hits |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for protocol, (description, data) in traffic_by_protocol(datagrams).items():
        if data is None:
            lines.append(f"| {protocol} | decoder not available | - | - | - | - |")
            continue
        templates, payloads = data
        settings = enrich_settings(observers(templates, payloads))
        off_runs, on_runs = [], []
        hits = misses = 0
        for _ in range(repeats):
            off_runs.append(run_flowsink(templates, payloads))
            enricher = build_enricher(settings)  # each run starts with an empty cache, as after a restart
            on_runs.append(run_flowsink(templates, payloads, enricher))
            hits, misses = hits + enricher.addresses.hits, misses + enricher.addresses.misses
        off, _ = median_rate(off_runs)
        on, _ = median_rate(on_runs)
        hits = hits / max(1, hits + misses)
        if protocol == "netflow_v5":
            description += "; every source address new (a cache miss)"
        lines.append(f"| {protocol} | {description} | {off:,.0f} | {on:,.0f} | {on / off:.2f} | {hits:.1%} |")
    lines += [
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs visible; other work on the machine makes figures "
        "noisy (the ratio, from alternating runs, less so).",
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
