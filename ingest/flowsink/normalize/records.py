"""The record types the protocol decoders hand to the normalisers (the decoders build them, ``normalize`` reads
them): here, below both, so that neither imports the other's module for a type.

NetFlow's equivalent, ``ExportContext``, lives in ``normalize.netflow`` with the code that reads it.
"""

from __future__ import annotations

import socket
from typing import Any

_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


class Datagram:
    """The datagram header every sample of it shares, plus what the normaliser derives from it once."""

    __slots__ = (
        "agent",
        "arrival_ns",
        "enrichment",
        "exporter",
        "fields",
        "id_prefix",
        "sequence",
        "sub_agent",
        "tag",
        "timestamp",
        "uptime",
    )

    def __init__(
        self, exporter: str, agent: str, sub_agent: int, sequence: int, uptime: int, arrival_ns: int
    ) -> None:
        self.exporter = exporter
        self.agent = agent
        self.sub_agent = sub_agent
        self.sequence = sequence
        self.uptime = uptime
        self.arrival_ns = arrival_ns
        self.timestamp = ""
        self.id_prefix = ""
        self.tag = ""  # the agent's tag at the head of flow.id
        self.fields: dict[str, Any] = {}
        # the agent's flowsink.enrich.enricher.ExporterEnrichment, set by the decoder: None adds nothing
        self.enrichment: Any = None


class PacketInfo:
    """What could be read from one sampled header; attributes stay ``None`` where the bytes ran out.

    Defaults live on the class and parsers set only what they find: creating one costs no ``__init__``
    (this runs once per sampled packet).
    """

    FIELDS = (
        "dst_mac",
        "dst_port",
        "ethertype",
        "fragment_offset",
        "icmp_code",
        "icmp_type",
        "ip_dst",
        "ip_flags",
        "ip_id",
        "ip_src",
        "ip_total_length",
        "ip_version",
        "ipv6_extensions",
        "ipv6_flow_label",
        "mpls_labels",
        "protocol",
        "src_mac",
        "src_port",
        "tcp_flags",
        "tos",
        "truncated",
        "ttl",
        "udp_length",
        "vlan_priorities",
        "vlans",
    )
    src_mac: bytes | None = None
    dst_mac: bytes | None = None
    ethertype: int | None = None
    vlans: list[int] | tuple[()] = ()
    vlan_priorities: list[int] | tuple[()] = ()
    mpls_labels: list[int] | tuple[()] = ()
    ip_version: int | None = None
    ip_src: bytes | None = None
    ip_dst: bytes | None = None
    protocol: int | None = None
    tos: int | None = None
    ttl: int | None = None
    ip_total_length: int | None = None
    ip_id: int | None = None
    ip_flags: int | None = None
    fragment_offset: int | None = None
    ipv6_flow_label: int | None = None
    ipv6_extensions: list[int] | tuple[()] = ()
    src_port: int | None = None
    dst_port: int | None = None
    tcp_flags: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    udp_length: int | None = None
    truncated = False

    @property
    def src_ip(self) -> str | None:
        return _ip_text(self.ip_src)

    @property
    def dst_ip(self) -> str | None:
        return _ip_text(self.ip_dst)

    def as_dict(self) -> dict[str, object]:
        """Every attribute by name (addresses as text, MACs as ``aa:bb:..``): for tests and debugging."""
        out: dict[str, object] = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if name in ("src_mac", "dst_mac") and value is not None:
                value = mac_text(value)
            elif name in ("ip_src", "ip_dst"):
                value = _ip_text(value)
            out[name] = value
        return out


def _ip_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return _inet_ntop(_AF_INET if len(raw) == 4 else _AF_INET6, raw)


def mac_text(raw: bytes) -> str:
    """6 bytes -> ``aa:bb:cc:dd:ee:ff``."""
    return raw.hex(":")
