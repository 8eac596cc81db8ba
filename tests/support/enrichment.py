"""Enrichment configured for the byte-identity tests: exporters, interfaces and internal networks that match the
addresses of the fixtures and of the generated datagrams, with odd texts (quotes, non-ASCII) in what is added.

- ``192.0.2.1``: the exporter of every fixture file; ifIndex 87 is named by the ASR 9000 fixture's options
  records (TenGigE0_1_0_1): its configured name must win; 110 (TenGigE0_6_1_0) configures only an alias, so the
  exporter's name stays; 0-4 are the fixtures' most common ifIndex;
- ``10.0.1.80``: an sFlow agent of the fixtures (configured by its agent address, not the datagram's sender);
- ``192.168.119.184``: an sFlow agent whose counter sample names ifIndex 3 ``eno1`` (the configured name wins);
- ``198.51.100.1``: a generated NetFlow v5 exporter, with every 16th ifIndex configured (the records' ifIndex
  are random);
- ``10.0.0.1`` and ``::1``: agents of the generated sFlow datagrams;
- ``203.0.113.9``: the exporter of the odd-value NetFlow cases (tests/test_decode_bulk_netflow.py).

GeoIP and AS come from support.geoip's City and ASN databases ("all" and "geoip-only": the latter alone, so that
per-address additions without internal networks are compared too).
"""

from __future__ import annotations

from typing import Any

from flowsink.enrich.enricher import Enricher, build_enricher
from flowsink.enrich.settings import EnrichSettings

INTERNAL_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "2001:db8::/32", "2001:44b8::/32"]


def exporters() -> dict[str, Any]:
    return {
        "192.0.2.1": {
            "name": 'fixture "exporter" é',
            "tags": ["fixtures", 'quote"d\\', "ünïcode"],
            "labels": {"site": "lab", "rack": 7, "ratio": 0.5},
            "interfaces": {
                87: {"name": "uplink-1", "alias": "configured over TenGigE0_1_0_1", "speed": 10_000_000_000},
                110: {"alias": "alias only: the exporter's name stays"},
                0: {"name": "zero"},
                1: {"speed": 1_000_000_000},
                2: {"name": "é-ünïcode\t", "alias": 'a"b\\c'},
                "3": {"name": "three", "alias": "", "speed": 0},
                4: {"alias": "four"},
            },
        },
        "10.0.1.80": {
            "name": "sflow-agent",
            "tags": ["agent"],
            "interfaces": {i: {"name": f"port{i}"} for i in range(64)},
        },
        "192.168.119.184": {"interfaces": {3: {"name": "configured-eno1", "speed": 1_000_000_000}}},
        "198.51.100.1": {
            "name": "v5-a",
            "labels": {"role": "edge"},
            "interfaces": {i: {"name": f"if{i}", "alias": f"alias {i}"} for i in range(0, 65536, 16)},
        },
        "10.0.0.1": {
            "name": "generated-agent",
            "interfaces": {i: {"name": f"sw{i}", "speed": 100_000_000 * i} for i in range(0, 64, 3)},
        },
        "::1": {"tags": ["v6-agent"]},
        # test_decode_bulk_netflow's exporter: its cases' interfaces (some named by options records)
        "203.0.113.9": {
            "name": "odd-values",
            "interfaces": {
                i: {"name": f"cfg-{i}"} if i % 2 else {"alias": f"a{i}", "speed": i} for i in range(1, 20)
            },
        },
    }


def settings(networks: bool = True, configured_exporters: bool = True, geoip: bool = True) -> EnrichSettings:
    from support.geoip import asn_database, city_database

    built = EnrichSettings(
        exporters=exporters() if configured_exporters else {},
        internal_networks=list(INTERNAL_NETWORKS) if networks else [],
        geoip_databases=[str(city_database()), str(asn_database())] if geoip else [],
    )
    built.validate()
    return built


# name -> the enricher of the tests that compare C and Python with enrichment on
MODES = {
    "all": lambda: build_enricher(settings()),
    "exporters-only": lambda: build_enricher(settings(networks=False, geoip=False)),
    "networks-only": lambda: build_enricher(settings(configured_exporters=False, geoip=False)),
    "geoip-only": lambda: build_enricher(settings(networks=False, configured_exporters=False)),
}


def enricher(mode: str | None) -> Enricher | None:
    return None if mode in (None, "none") else MODES[mode]()
