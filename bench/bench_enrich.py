"""Decode + enrich + bulk lines, with every enrichment on against none, one core, per protocol, in the same run.

The cost of enrichment (issue 15's acceptance: with all enrichment on, at least 75% of the flows per CPU-second of
the same run without it, for NetFlow v9, IPFIX and sFlow). The work is bench/bench_decode.py's (``run_flowsink``:
the pipeline's decode to bulk lines), once with a decoder without enrichment and once with an ``enrich`` section
that adds everything there is: the exporter's name, tags, labels, every ifIndex named with an alias and a speed
(SNMP's names land in the same per-exporter tables, at the same cost per flow), internal networks (locality,
direction, related.ip), GeoIP from the real GeoLite2 City database (2018, ``maxminddb-geolite2``) and AS from an
ASN database of 4,608 networks written with ``mmdb-writer``. Runs alternate (off, on, off, on ...) so that the
machine's drift falls on both alike; figures are flows per CPU-second (``time.process_time``).

Traffic (flowsink.generate's model and encoders), measured in steady state: each run first decodes a warm-up
part of the same traffic (untimed, as a node that has run a while), then the timed part:

- **realistic**: what a router exports: 2,000 internal hosts (10/8, 2001:db8:100::/48) talking to 20,000 public
  addresses (IPv4 and 20% IPv6), both picked Zipf-like (a few talk a lot), so addresses repeat as they do on a
  real link; and 1% of the flows go to a public address never seen before (new destinations, scanners), each a
  lookup in the databases;
- **worst case**: every flow's public address is new (uniform over the IPv4 and IPv6 space): every flow costs a
  lookup in the databases, the City database decoding a whole record each time.

    python bench/bench_enrich.py            # full run
    python bench/bench_enrich.py --quick    # a few seconds: smoke test only
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_decode import EXPORTER, rate, run_flowsink
from flowsink.enrich.enricher import build_enricher
from flowsink.enrich.settings import EnrichSettings
from flowsink.generate.ipfix import IpfixEncoder
from flowsink.generate.model import TrafficModel, TrafficSettings
from flowsink.generate.netflow_v9 import NetflowV9Encoder
from flowsink.generate.sflow import Sample, SflowEncoder
from flowsink.native import EXTENSION

AGENT = "192.0.2.10"  # the sFlow agent address the traffic carries
NOW_MS = 1_700_000_000_000


def asn_database() -> Path:
    """An ASN database of every IPv4 /12 and every /12 of 2000::/3, each its own AS and organization (built once
    and kept in the temporary directory)."""
    path = Path(tempfile.gettempdir()) / "flowsink-bench" / "bench-asn-v1.mmdb"
    if path.exists():
        return path
    import netaddr
    from mmdb_writer import MMDBWriter

    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    cidrs = [f"{a}.{b}.0.0/12" for a in range(256) for b in range(0, 256, 16)]
    cidrs += [str(n) for n in ipaddress.ip_network("2000::/3").subnets(new_prefix=12)]
    for number, cidr in enumerate(cidrs, start=1000):
        writer.insert_network(
            netaddr.IPSet([cidr]),
            {"autonomous_system_number": number, "autonomous_system_organization": f"Network {number} Inc."},
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    writer.to_db_file(str(temporary))
    os.replace(temporary, path)
    return path


def city_database() -> Path:
    from _maxminddb_geolite2 import geolite2_database

    return Path(geolite2_database())


def enrich_settings(observers: set[str], geoip: bool = True) -> EnrichSettings:
    """Everything enrichment adds, for every exporter (or sFlow agent) of the traffic."""
    interfaces = {
        i: {"name": f"et-0/0/{i}", "alias": f"port {i}", "speed": 100_000_000_000} for i in range(4096)
    }
    exporter = {"name": "edge-1", "tags": ["bench"], "labels": {"site": "par1"}, "interfaces": interfaces}
    settings = EnrichSettings(
        exporters={address: exporter for address in observers},
        internal_networks=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "2001:db8:100::/48"],
        geoip_databases=[str(city_database()), str(asn_database())] if geoip else [],
    )
    settings.validate()
    return settings


def _public_pool(rng: np.random.Generator, size: int) -> dict[int, list[tuple[str, bytes]]]:
    """``size`` public addresses per family: IPv4 outside the reserved ranges, IPv6 in allocated /12s."""
    v4: list[tuple[str, bytes]] = []
    while len(v4) < size:
        address = ipaddress.IPv4Address(int(rng.integers(1 << 24, 224 << 24)))
        if address.is_global:
            v4.append((address.compressed, address.packed))
    v6 = []
    for _ in range(size):
        base = int(rng.choice([0x2A00, 0x2600, 0x2400, 0x2800, 0x2C00])) << 112
        address = ipaddress.IPv6Address(
            base | int(rng.integers(0, 1 << 62)) << 50 | int(rng.integers(0, 1 << 50))
        )
        v6.append((address.compressed, address.packed))
    return {4: v4, 6: v6}


def traffic(kind: str, datagrams: int, seed: int = 7) -> dict[str, tuple[list[bytes], list[bytes]]]:
    """The generator's flows as NetFlow v9, IPFIX and sFlow datagrams: (the templates and the warm-up datagrams,
    the timed datagrams)."""
    model = TrafficModel(TrafficSettings(seed=seed, hosts=2000, servers=20_000, zipf_exponent=1.1))
    rng = np.random.default_rng(seed)
    model.servers = _public_pool(rng, 20_000)
    fresh_share = 0.01 if kind == "realistic" else 1.0
    encoders = {
        "netflow_v9": NetflowV9Encoder(1, NOW_MS - 3_600_000, options=False, template_refresh_ms=1 << 40),
        "ipfix": IpfixEncoder(1, options=False, template_refresh_ms=1 << 40),
        "sflow": SflowEncoder(AGENT, NOW_MS - 3_600_000, counter_interval_ms=0),
    }
    warm_up = datagrams // 2
    out = {}
    for protocol, encoder in encoders.items():
        payloads: list[bytes] = []
        while len(payloads) < warm_up + datagrams + 1:
            flows = model.flows(200, NOW_MS)
            for flow in flows:  # a share of the flows meet a public address never seen before
                if rng.random() < fresh_share:
                    ((text, raw),) = _public_pool(rng, 1)[flow.ip_version]
                    if ipaddress.ip_address(flow.dst).is_private:
                        flow.src, flow.src_raw = text, raw
                    else:
                        flow.dst, flow.dst_raw = text, raw
            while flows:
                if protocol == "sflow":
                    samples = [Sample(f, max(64, f.packet_size + 18), f.packet_size, 1) for f in flows]
                    payload, taken = encoder.pack(samples, NOW_MS)
                else:
                    payload, taken = encoder.pack(flows, NOW_MS)
                payloads.append(payload)
                flows = flows[taken:]
        # the first datagram holds the templates (v9, IPFIX); it and the warm-up part are decoded untimed
        out[protocol] = (payloads[: warm_up + 1], payloads[warm_up + 1 : warm_up + 1 + datagrams])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer datagrams and repeats)")
    parser.add_argument("--datagrams", type=int, help="timed datagrams per run (the warm-up is half as many)")
    args = parser.parse_args(argv)
    datagrams = args.datagrams or (200 if args.quick else 3000)
    repeats = 3 if args.quick else 7
    if os.environ.get("FLOWSINK_BENCH_CPU") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(os.environ["FLOWSINK_BENCH_CPU"])})
    settings = enrich_settings({EXPORTER, AGENT})
    lines = [
        "## Enrichment (bench/bench_enrich.py)",
        "",
        f"Flows per CPU-second, {datagrams} datagrams per run, median of {repeats} runs, alternating: decode + "
        "ECS document + bulk lines (bench_decode's work) without enrichment, and with all of it (exporter name, "
        "tags, labels, 4096 named interfaces with alias and speed, internal networks: locality, direction, "
        "related.ip; GeoIP from GeoLite2 City 2018 and AS from a 4,608-network ASN database), after a warm-up "
        f"of {datagrams // 2} datagrams of the same traffic. C extension {'built' if EXTENSION is not None else 'NOT built: pure Python'}.",
        "",
        "| traffic | protocol | off flows/s | on flows/s | on / off | address cache hits |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in ("realistic", "worst"):
        for protocol, (templates, payloads) in traffic(kind, datagrams).items():
            off_runs, on_runs = [], []
            hits = misses = 0
            for _ in range(repeats):
                off_runs.append(run_flowsink(templates, payloads))
                enricher = build_enricher(settings)
                on_runs.append(run_flowsink(templates, payloads, enricher))
                hits, misses = (
                    hits + enricher.addresses.hits,
                    misses + enricher.addresses.misses,
                )  # warm-up too
                enricher.close()
            off, on = rate(off_runs), rate(on_runs)
            share = hits / max(1, hits + misses)
            lines.append(f"| {kind} | {protocol} | {off:,.0f} | {on:,.0f} | {on / off:.2f} | {share:.1%} |")
    digest = hashlib.sha1(asn_database().read_bytes()).hexdigest()[:8]
    lines += [
        "",
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs visible, ASN database {digest}; other work on "
        "the machine makes the rates noisy (the ratio, from alternating runs, less so).",
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
