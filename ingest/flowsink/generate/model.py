"""A deterministic traffic model: the flows a synthetic exporter reports.

Shapes follow what campus and data-centre captures show: a few hosts talk much more than the rest (Zipf over a
host pool), most flows are a handful of packets while a few carry most of the bytes (Pareto packet counts,
lognormal packet sizes), and services follow the usual port mix (HTTPS first, then HTTP, DNS, ...).
Everything is drawn from one ``numpy.random.Generator`` seeded by the caller, so a seed replays the same traffic.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58

# service ports and their share of flows, per transport
TCP_SERVICES = {
    443: 0.50,
    80: 0.17,
    22: 0.05,
    25: 0.03,
    993: 0.03,
    3306: 0.04,
    5432: 0.03,
    8080: 0.06,
    8443: 0.04,
    9200: 0.05,
}
UDP_SERVICES = {53: 0.45, 443: 0.20, 123: 0.10, 161: 0.05, 514: 0.05, 5353: 0.05, 4789: 0.05, 51820: 0.05}
# ICMP (type, code) pairs: echo request/reply, unreachable (port), time exceeded
ICMP_MESSAGES = [(8, 0), (0, 0), (3, 3), (11, 0)]
ICMPV6_MESSAGES = [(128, 0), (129, 0), (1, 4), (3, 0)]

APP_NAMES = [
    "https",
    "http",
    "ssh",
    "smtp",
    "imaps",
    "mysql",
    "postgres",
    "http-alt",
    "https-alt",
    "elastic",
    "dns",
    "quic",
    "ntp",
    "snmp",
    "syslog",
    "mdns",
    "vxlan",
    "wireguard",
    "icmp",
    "unknown",
]
APP_BY_PORT = {
    443: "https",
    80: "http",
    22: "ssh",
    25: "smtp",
    993: "imaps",
    3306: "mysql",
    5432: "postgres",
    8080: "http-alt",
    8443: "https-alt",
    9200: "elastic",
    53: "dns",
    123: "ntp",
    161: "snmp",
    514: "syslog",
    5353: "mdns",
    4789: "vxlan",
    51820: "wireguard",
}


@dataclass(slots=True)
class Flow:
    """One flow as an exporter reports it (byte and packet counts at layer 3, times in Unix milliseconds)."""

    src: str
    dst: str
    src_raw: bytes
    dst_raw: bytes
    src_port: int
    dst_port: int
    protocol: int
    packets: int
    bytes: int
    start_ms: int
    end_ms: int
    tcp_flags: int = 0
    tos: int = 0
    in_if: int = 1
    out_if: int = 2
    app_name: str = "unknown"

    @property
    def ip_version(self) -> int:
        return 4 if len(self.src_raw) == 4 else 6

    @property
    def key(self) -> tuple[str, str, int, int, int]:
        """The 5-tuple as the manifest digest has it (see ``manifest.canonical_key``; addresses are already in
        canonical text form, so no parsing here)."""
        if self.protocol in (ICMP, ICMPV6):
            return self.src, self.dst, 0, 0, self.protocol
        return self.src, self.dst, self.src_port, self.dst_port, self.protocol

    @property
    def packet_size(self) -> int:
        """Mean layer-3 packet size (every packet of a generated flow has the same size, give or take a byte)."""
        return self.bytes // self.packets


@dataclass
class TrafficSettings:
    """Knobs of the model; the defaults give a plausible enterprise mix."""

    seed: int = 1
    ipv6_share: float = 0.2
    protocol_mix: dict[str, float] = field(default_factory=lambda: {"tcp": 0.75, "udp": 0.22, "icmp": 0.03})
    hosts: int = 2000  # client pool (Zipf-ranked: the first few are the top talkers)
    servers: int = 300
    zipf_exponent: float = 1.3
    pareto_shape: float = (
        1.2  # packets per flow: 1 + Pareto(shape); < 2 gives infinite variance, like real traffic
    )
    max_packets: int = 200_000  # keeps v5's 32-bit octet counters from wrapping
    max_duration_ms: int = 60_000


def parse_protocol_mix(text: str) -> dict[str, float]:
    """``"tcp=0.7,udp=0.25,icmp=0.05"`` -> shares that sum to 1."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in ("tcp", "udp", "icmp"):
            raise ValueError(f"unknown protocol {name!r} in protocol mix (use tcp, udp, icmp)")
        shares[name] = float(value)
    total = sum(shares.values())
    if total <= 0 or any(v < 0 for v in shares.values()):
        raise ValueError(f"protocol mix {text!r} needs non-negative shares with a positive sum")
    return {k: v / total for k, v in shares.items()}


def _address_pool(rng: np.random.Generator, size: int, version: int, base: str) -> list[tuple[str, bytes]]:
    network = ipaddress.ip_network(base)
    offsets = rng.choice(min(network.num_addresses - 2, 1 << 24), size=size, replace=False) + 1
    pool = []
    for offset in offsets:
        address = network.network_address + int(offset)
        pool.append(
            (
                address.compressed,
                socket.inet_pton(socket.AF_INET if version == 4 else socket.AF_INET6, address.compressed),
            )
        )
    return pool


def _zipf_weights(size: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    return weights / weights.sum()


class _Choice:
    """Weighted choice by inverse CDF: ``Generator.choice(p=...)`` rebuilds the CDF on every call, which costs
    more than the draw itself for the large batches sFlow's population needs."""

    def __init__(self, values: np.ndarray | list, weights: np.ndarray | list):
        self.values = np.asarray(values)
        cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
        self.cdf = cdf / cdf[-1]

    def __call__(self, rng: np.random.Generator, size: int) -> np.ndarray:
        index = np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), len(self.values) - 1)
        return self.values[index]


class TrafficModel:
    """Draws batches of flows; the same settings and seed always give the same flows in the same order."""

    def __init__(self, settings: TrafficSettings, rng: np.random.Generator | None = None) -> None:
        self.settings = settings
        self.rng = rng if rng is not None else np.random.default_rng(settings.seed)
        s = settings
        self.clients = {
            4: _address_pool(self.rng, s.hosts, 4, "10.0.0.0/8"),
            6: _address_pool(self.rng, s.hosts, 6, "2001:db8:100::/48"),
        }
        self.servers = {
            4: _address_pool(self.rng, s.servers, 4, "198.18.0.0/15"),
            6: _address_pool(self.rng, s.servers, 6, "2001:db8:200::/48"),
        }
        self.pick_client = _Choice(np.arange(s.hosts), _zipf_weights(s.hosts, s.zipf_exponent))
        self.pick_server = _Choice(np.arange(s.servers), _zipf_weights(s.servers, s.zipf_exponent))
        self.protocol_names = list(s.protocol_mix)
        self.pick_kind = _Choice(np.arange(len(self.protocol_names)), list(s.protocol_mix.values()))
        self.pick_tcp_port = _Choice(list(TCP_SERVICES), list(TCP_SERVICES.values()))
        self.pick_udp_port = _Choice(list(UDP_SERVICES), list(UDP_SERVICES.values()))
        self.pick_flags = _Choice([0x1B, 0x1A, 0x12, 0x02, 0x19, 0x04], [0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
        self.pick_tos = _Choice([0, 0x20, 0xB8], [0.6, 0.2, 0.2])

    def flows(self, count: int, now_ms: int) -> list[Flow]:
        """``count`` flows that ended during the second before ``now_ms``."""
        draw = self.draw(count, now_ms)
        return self.materialise(draw, range(count))

    def draw(self, count: int, now_ms: int, complete: bool = True) -> dict[str, np.ndarray]:
        """The random parts of ``count`` flows as arrays (cheap; Flow objects are built only when needed).

        ``complete=False`` draws only what sizes a flow (packets, packet size, transport, IP version): sFlow's
        population needs no more for the flows that yield no sample; ``complete`` adds the rest for the others.
        """
        rng, s = self.rng, self.settings
        packets = np.minimum(np.floor(1 + rng.pareto(s.pareto_shape, size=count)), s.max_packets).astype(
            np.int64
        )
        draw = {
            "now": np.int64(now_ms),
            "packets": packets,
            "size": np.clip(rng.lognormal(np.log(420), 0.9, size=count), 40, 1500).astype(np.int64),
            "version": np.where(rng.random(count) < s.ipv6_share, 6, 4),
            "kind": self.pick_kind(rng, count),
        }
        return self.complete(draw) if complete else draw

    def complete(self, draw: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Draw the remaining fields of a partial draw (of only ``rows`` of it, when given: the result then holds
        just those rows, in that order)."""
        if rows is not None:
            draw = {k: (v[rows] if v.ndim else v) for k, v in draw.items()}
        rng, s = self.rng, self.settings
        count = len(draw["packets"])
        draw.update(
            {
                "client": self.pick_client(rng, count),
                "server": self.pick_server(rng, count),
                "outbound": rng.random(count) < 0.6,  # client -> server, else the answer
                "ephemeral": rng.integers(32768, 61000, size=count),
                "tcp_port": self.pick_tcp_port(rng, count),
                "udp_port": self.pick_udp_port(rng, count),
                "icmp": rng.integers(0, len(ICMP_MESSAGES), size=count),
                "end": int(draw["now"]) - rng.integers(0, 1000, size=count),
                "duration": np.minimum(draw["packets"] * rng.integers(1, 40, size=count), s.max_duration_ms),
                "flags": self.pick_flags(rng, count),
                "tos": self.pick_tos(rng, count),
                "in_if": rng.integers(1, 9, size=count),
                "out_if": rng.integers(9, 17, size=count),
            }
        )
        return draw

    def materialise(self, draw: dict[str, np.ndarray], indices: Iterable[int]) -> list[Flow]:
        """Flow objects for the chosen rows of a draw."""
        batch: list[Flow] = []
        for i in indices:
            version = int(draw["version"][i])
            client = self.clients[version][draw["client"][i]]
            server = self.servers[version][draw["server"][i]]
            kind = self.protocol_names[draw["kind"][i]]
            flag = 0
            if kind == "tcp":
                protocol, service, flag = TCP, int(draw["tcp_port"][i]), int(draw["flags"][i])
            elif kind == "udp":
                protocol, service = UDP, int(draw["udp_port"][i])
            else:
                protocol = ICMP if version == 4 else ICMPV6
                messages = ICMP_MESSAGES if version == 4 else ICMPV6_MESSAGES
                icmp_type, icmp_code = messages[draw["icmp"][i]]
                service = icmp_type << 8 | icmp_code  # exporters carry ICMP type/code in the destination port
            if kind == "icmp":
                src, dst, sport, dport = client, server, 0, service
            elif draw["outbound"][i]:
                src, dst, sport, dport = client, server, int(draw["ephemeral"][i]), service
            else:
                src, dst, sport, dport = server, client, service, int(draw["ephemeral"][i])
            n = int(draw["packets"][i])
            end = int(draw["end"][i])
            batch.append(
                Flow(
                    src=src[0],
                    dst=dst[0],
                    src_raw=src[1],
                    dst_raw=dst[1],
                    src_port=sport,
                    dst_port=dport,
                    protocol=protocol,
                    packets=n,
                    bytes=n * int(draw["size"][i]),
                    start_ms=end - int(draw["duration"][i]),
                    end_ms=end,
                    tcp_flags=flag,
                    tos=int(draw["tos"][i]),
                    in_if=int(draw["in_if"][i]),
                    out_if=int(draw["out_if"][i]),
                    app_name="icmp" if kind == "icmp" else APP_BY_PORT.get(service, "unknown"),
                )
            )
        return batch
