"""Synthetic ECS flow documents, shaped like the decoders' output, for the sink's tests and benchmark.

Deterministic for a given seed, so every contender of a benchmark indexes the same documents and a test can
index the same batch twice (a replay) and expect 409s.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from flowsink.normalize.common import community_id

_DAY = datetime(2026, 11, 23, tzinfo=UTC)
_PROTOCOLS = ((6, "tcp"), (6, "tcp"), (6, "tcp"), (17, "udp"), (17, "udp"), (1, "icmp"))
_SERVER_PORTS = (443, 80, 53, 22, 123, 8080, 3306, 5432)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deterministic_id(exporter: str, sequence: int, position: int) -> str:
    """20 characters, like Elasticsearch's own ids; the same (exporter, datagram, record) always gives the same."""
    digest = hashlib.blake2b(f"{exporter}|9|0|{sequence}|{position}".encode(), digest_size=15).digest()
    return base64.urlsafe_b64encode(digest).decode()


def flow_documents(
    count: int, index_prefix: str = "flowsink", seed: int = 1, with_ids: bool = True, start: int = 0
) -> Iterator[dict[str, Any]]:
    """``count`` NetFlow v9-like flow documents (~1 KB of JSON each) for ``<index_prefix>-flows-2026.11.23``."""
    rng = random.Random(seed * 1_000_003 + start)
    index = f"{index_prefix}-flows-{_DAY:%Y.%m.%d}"
    exporters = [f"192.0.2.{n}" for n in range(1, 9)]
    for n in range(start, start + count):
        exporter = exporters[n % len(exporters)]
        proto, transport = rng.choice(_PROTOCOLS)
        src_ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        dst_ip = f"203.0.113.{rng.randrange(1, 255)}"
        src_port = rng.randrange(1024, 65536) if proto != 1 else 8
        dst_port = rng.choice(_SERVER_PORTS) if proto != 1 else 0
        packets = rng.randrange(1, 5000)
        octets = packets * rng.randrange(40, 1500)
        end = _DAY + timedelta(milliseconds=rng.randrange(86_400_000))
        duration_ms = rng.randrange(0, 120_000)
        begin = end - timedelta(milliseconds=duration_ms)
        doc: dict[str, Any] = {
            "_index": index,
            "@timestamp": _iso(end),
            "event": {
                "kind": "event",
                "category": ["network"],
                "type": ["connection"],
                "action": "netflow_flow",
                "start": _iso(begin),
                "end": _iso(end),
                "duration": duration_ms * 1_000_000,
            },
            "source": {"ip": src_ip, "port": src_port, "bytes": octets, "packets": packets},
            "destination": {"ip": dst_ip, "port": dst_port},
            "network": {
                "iana_number": str(proto),
                "transport": transport,
                "type": "ipv4",
                "bytes": octets,
                "packets": packets,
                "direction": "unknown",
                "community_id": community_id(src_ip, dst_ip, proto, src_port, dst_port),
            },
            "observer": {
                "ip": exporter,
                "ingress": {"interface": {"id": str(rng.randrange(1, 48))}},
                "egress": {"interface": {"id": str(rng.randrange(1, 48))}},
            },
            "flow": {"sampling_rate": 1},
            "netflow": {
                "octet_delta_count": octets,
                "packet_delta_count": packets,
                "source_ipv4_address": src_ip,
                "destination_ipv4_address": dst_ip,
                "source_transport_port": src_port,
                "destination_transport_port": dst_port,
                "protocol_identifier": proto,
                "tcp_control_bits": rng.randrange(64) if proto == 6 else 0,
                "ingress_interface": rng.randrange(1, 48),
                "egress_interface": rng.randrange(1, 48),
                "flow_start_milliseconds": _iso(begin),
                "flow_end_milliseconds": _iso(end),
                "exporter": {
                    "address": f"{exporter}:2055",
                    "version": 9,
                    "source_id": 0,
                    "uptime_millis": 1_000_000 + n,
                    "timestamp": _iso(end),
                },
            },
        }
        if with_ids:
            doc["_id"] = deterministic_id(exporter, n // 30, n % 30)
        yield doc
