"""Ground truth of a generator run: what each exporter sent, and a digest of per-5-tuple totals.

The digest is defined so that a checker can recompute it from Elasticsearch with one composite aggregation:
for each exporter, the lines ``src dst sport dport proto flows bytes packets`` (addresses in canonical text form,
ICMP ports as 0 because collectors differ in where they put type and code), sorted, joined with newlines and
hashed with SHA-256. The full per-5-tuple table goes to a side file (``*.tuples.jsonl``) so that a checker can
name the tuples that differ, not only say that some do. Its lines come per exporter in ``tuple_order``, the order
in which Elasticsearch returns the tuples from a composite aggregation, so that a checker can compare the two as
streams (``accuracy.py``) whatever the size of the run; ``tuples_order`` in the manifest says so (side files of
manifests without it are in text order).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "flowsink-manifest/1"
# how the side file orders its tuples (``tuple_order``); manifests without this mark are sorted by text
TUPLES_ORDER = "elasticsearch/1"
ICMP_PROTOCOLS = (1, 58)
_IPV4_IN_IPV6 = b"\x00" * 10 + b"\xff\xff"

TupleKey = tuple[str, str, int, int, int]


def canonical_ip(text: str) -> str:
    return ipaddress.ip_address(text).compressed


def canonical_key(src: str, dst: str, src_port: int | None, dst_port: int | None, protocol: int) -> TupleKey:
    """The 5-tuple as the digest uses it: canonical addresses, ICMP ports and missing ports as 0."""
    if protocol in ICMP_PROTOCOLS:
        src_port = dst_port = 0
    return canonical_ip(src), canonical_ip(dst), int(src_port or 0), int(dst_port or 0), int(protocol)


def address_order(text: str | None) -> bytes:
    """An address as Elasticsearch's ``ip`` type sorts it: 16 bytes, IPv4 mapped into IPv6 (``::ffff:a.b.c.d``);
    a missing one ('' or None) first, as a composite aggregation's missing bucket."""
    if not text:
        return b""
    try:
        return _IPV4_IN_IPV6 + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return socket.inet_pton(socket.AF_INET6, text)


def tuple_order(key: TupleKey) -> tuple[bytes, bytes, str, int, int]:
    """The order in which a checker reads 5-tuples from Elasticsearch: source, destination (as ``ip`` sorts),
    protocol (``network.iana_number`` is a keyword: sorted as text), source port, destination port."""
    src, dst, sport, dport, proto = key
    return address_order(src), address_order(dst), str(proto), sport, dport


def tuple_digest(rows: Iterable[tuple[TupleKey, tuple[int, int, int]]]) -> str:
    """SHA-256 over the sorted ``src dst sport dport proto flows bytes packets`` lines."""
    lines = sorted(" ".join(map(str, (*key, *totals))) for key, totals in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass
class ExporterTruth:
    """Everything one simulated exporter sent."""

    address: str
    domain: int
    flows: int = 0
    bytes: int = 0
    packets: int = 0
    datagrams: int = 0
    malformed_datagrams: int = 0
    malformed_kinds: dict[str, int] = field(default_factory=dict)
    send_errors: int = 0
    options_records: int = 0
    counter_samples: int = 0
    # sFlow only: the raw sampled counts, and what the sampled traffic stands for
    sampled: dict[str, int] | None = None
    represented: dict[str, float] | None = None
    tuples: dict[TupleKey, list[int]] = field(default_factory=dict)

    def add_record(self, key: TupleKey, bytes_: int, packets: int) -> None:
        self.flows += 1
        self.bytes += bytes_
        self.packets += packets
        totals = self.tuples.get(key)
        if totals is None:
            self.tuples[key] = [1, bytes_, packets]
        else:
            totals[0] += 1
            totals[1] += bytes_
            totals[2] += packets

    def digest(self) -> str:
        return tuple_digest((key, tuple(v)) for key, v in self.tuples.items())

    def summary(self, with_digest: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address,
            "domain": self.domain,
            "flows": self.flows,
            "bytes": self.bytes,
            "packets": self.packets,
            "datagrams": self.datagrams,
            "malformed_datagrams": self.malformed_datagrams,
            "malformed_kinds": dict(sorted(self.malformed_kinds.items())),
            "send_errors": self.send_errors,
            "options_records": self.options_records,
            "counter_samples": self.counter_samples,
            "tuples": len(self.tuples),
        }
        if self.sampled is not None:
            out["sampled"] = dict(self.sampled)
            out["represented"] = dict(self.represented or {})
        if with_digest:
            out["digest"] = self.digest()
        return out


class Manifest:
    """A JSON manifest rewritten atomically while the run goes on, final (with digests and tuples) at the end."""

    def __init__(self, path: Path | None, meta: dict[str, Any], exporters: list[ExporterTruth]):
        self.path = path
        self.meta = meta
        self.exporters = exporters
        self.started = time.time()

    @property
    def tuples_path(self) -> Path | None:
        if self.path is None:
            return None
        return self.path.with_name(self.path.name.removesuffix(".json") + ".tuples.jsonl")

    def document(self, final: bool) -> dict[str, Any]:
        per_exporter = {e.address: e.summary(with_digest=final) for e in self.exporters}
        keys = (
            "flows",
            "bytes",
            "packets",
            "datagrams",
            "malformed_datagrams",
            "send_errors",
            "options_records",
            "counter_samples",
        )
        totals = {k: sum(e[k] for e in per_exporter.values()) for k in keys}
        doc: dict[str, Any] = {
            "format": FORMAT,
            **self.meta,
            "complete": final,
            "started_at": _iso(self.started),
            "updated_at": _iso(time.time()),
            "totals": totals,
            "exporters": per_exporter,
        }
        if final:
            doc["digest"] = hashlib.sha256(
                "\n".join(f"{a} {e['digest']}" for a, e in sorted(per_exporter.items())).encode()
            ).hexdigest()
            doc["tuples_file"] = self.tuples_path.name if self.tuples_path else None
            doc["tuples_order"] = TUPLES_ORDER
        return doc

    def write(self, final: bool = False) -> None:
        if self.path is None:
            return
        if final and self.tuples_path is not None:
            _atomic_write(
                self.tuples_path,
                "".join(
                    json.dumps([e.address, *key, *totals]) + "\n"
                    for e in self.exporters
                    for key, totals in sorted(e.tuples.items(), key=_by_tuple_order)
                ),
            )
        _atomic_write(self.path, json.dumps(self.document(final), indent=2) + "\n")


def _by_tuple_order(item: tuple[TupleKey, Any]) -> tuple[bytes, bytes, str, int, int]:
    return tuple_order(item[0])


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest, with its per-exporter tuple tables (``exporters[a]["table"]``) when the side file exists."""
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a flowsink manifest (format {doc.get('format')!r})")
    for exporter in doc["exporters"].values():
        exporter["table"] = {}
    if doc.get("tuples_file"):
        side = Path(path).with_name(doc["tuples_file"])
        if side.exists():
            for line in side.read_text().splitlines():
                address, src, dst, sport, dport, proto, flows, bytes_, packets = json.loads(line)
                doc["exporters"][address]["table"][(src, dst, sport, dport, proto)] = (flows, bytes_, packets)
    return doc
