"""Our decode against independent decoders: tshark (Wireshark's cflow and sflow dissectors) on pcaps built from
the fixture payloads, and the ``netflow`` PyPI package where it parses the file.

Compared per datagram as multisets of (source, destination, ports, protocol, bytes, packets) — tshark's and the
package's own field names, our ECS documents.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from flowsink.decode import DecoderSettings, FlowDecoder
from test_decode_fixtures import GROUPS, LOGSTASH_SFLOW, TELEGRAF
from test_decode_sflow import (
    counter_sample,
    datagram,
    flow_sample,
    generic_counters,
    raw_header,
    switch_record,
    tcp_frame,
)

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
ARRIVAL_NS = 1_700_000_000_000_000_000
PORTS = {"netflow_v5": 2055, "netflow_v9": 2055, "ipfix": 4739, "sflow": 6343}


def write_pcap(path: Path, datagrams: list[tuple[str, int, bytes]]) -> None:
    """(source address, destination port, payload) -> a pcap of Ethernet/IPv4/UDP frames."""
    frames = [
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=src, dst="192.0.2.250")
        / UDP(sport=40000, dport=port)
        / payload
        for src, port, payload in datagrams
    ]
    wrpcap(str(path), frames)


def tshark_layers(path: Path) -> list[dict[str, Any]]:
    """tshark's JSON for each frame's layers, duplicate keys merged into lists."""
    done = subprocess.run(
        [
            TSHARK,
            "-r",
            str(path),
            "-T",
            "json",
            "--no-duplicate-keys",
            "-d",
            "udp.port==2055,cflow",
            "-d",
            "udp.port==4739,cflow",
            "-d",
            "udp.port==6343,sflow",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [frame["_source"]["layers"] for frame in json.loads(done.stdout)]


def _nodes(tree: Any):
    """Every dict in a tshark JSON tree (lists from merged duplicate keys walked too)."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def _first(node: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in node:
            value = node[key]
            return value[0] if isinstance(value, list) else value
    return None


def _find(tree: Any, *keys: str) -> Any:
    """The first value of any of ``keys`` anywhere below ``tree``."""
    for node in _nodes(tree):
        value = _first(node, *keys)
        if value is not None:
            return value
    return None


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


# --- NetFlow v5/v9 and IPFIX --------------------------------------------------------------------------------------


def tshark_flow_tuples(cflow: dict[str, Any]) -> Counter[tuple]:
    tuples: Counter[tuple] = Counter()
    for node in _nodes(cflow):
        src = _first(node, "cflow.srcaddr", "cflow.srcaddrv6")
        octets = _first(node, "cflow.octets", "cflow.octets64")
        packets = _first(node, "cflow.packets", "cflow.packets64")
        row = (
            src,
            _first(node, "cflow.dstaddr", "cflow.dstaddrv6"),
            _first(node, "cflow.srcport"),
            _first(node, "cflow.dstport"),
            _first(node, "cflow.protocol"),
            octets,
            packets,
        )
        if None not in row:
            tuples[(_ip(row[0]), _ip(row[1]), *(int(v, 0) for v in row[2:]))] += 1
    return tuples


def our_flow_tuples(documents: list[dict[str, Any]]) -> Counter[tuple]:
    tuples: Counter[tuple] = Counter()
    for doc in documents:
        raw = doc.get("netflow", {})
        row = (
            doc.get("source", {}).get("ip"),
            doc.get("destination", {}).get("ip"),
            doc.get("source", {}).get("port"),
            doc.get("destination", {}).get("port"),
            raw.get("protocol_identifier"),
            raw.get("octet_delta_count"),
            raw.get("packet_delta_count"),
        )
        if None not in row:
            tuples[(_ip(row[0]), _ip(row[1]), *(int(v) for v in row[2:]))] += 1
    return tuples


def _netflow_datagrams() -> list[tuple[str, int, bytes]]:
    """Every NetFlow/IPFIX fixture, templates first, each device group from its own exporter address.

    The ``*_invalid*`` files are left out: tshark reads them leniently (a v5 count of 55582 in a 30-record
    datagram), we reject them on purpose (test_decode_fixtures checks that).
    """
    out = []
    for number, device in enumerate(sorted(GROUPS)):
        for path in GROUPS[device]:
            if "invalid" in path.name:
                continue
            payload = path.read_bytes()
            version = int.from_bytes(payload[:2], "big")
            out.append(
                (f"10.77.{number // 250}.{number % 250 + 1}", 4739 if version == 10 else 2055, payload)
            )
    return out


@needs_tshark
def test_netflow_and_ipfix_agree_with_tshark(tmp_path: Path):
    datagrams = _netflow_datagrams()
    pcap = tmp_path / "netflow.pcap"
    write_pcap(pcap, datagrams)
    frames = tshark_layers(pcap)
    assert len(frames) == len(datagrams)
    decoder = FlowDecoder(DecoderSettings())
    compared = 0
    mismatches = []
    for number, ((src, _port, payload), layers) in enumerate(zip(datagrams, frames, strict=True)):
        ours = our_flow_tuples(decoder.decode(payload, src, ARRIVAL_NS + number).documents)
        theirs = tshark_flow_tuples(layers.get("cflow", {}))
        if "_ws.malformed" in layers:
            # tshark stopped inside the datagram (an H3C vendor field it misreads): what it got must match
            theirs_seen = theirs - ours
            if theirs_seen:
                mismatches.append((number, sorted(theirs_seen)[:3], []))
        elif theirs != ours:
            mismatches.append((number, sorted(theirs - ours)[:3], sorted(ours - theirs)[:3]))
        compared += sum(theirs.values())
    assert mismatches == []
    assert compared >= 300  # the fixtures hold several hundred records with a full 5-tuple and counters


def _package_tuples(packet: Any) -> Counter[tuple]:
    tuples: Counter[tuple] = Counter()
    for flow in packet.flows:
        data = flow.data
        src = data.get(
            "IPV4_SRC_ADDR",
            data.get("IPV6_SRC_ADDR", data.get("sourceIPv4Address", data.get("sourceIPv6Address"))),
        )
        dst = data.get(
            "IPV4_DST_ADDR",
            data.get("IPV6_DST_ADDR", data.get("destinationIPv4Address", data.get("destinationIPv6Address"))),
        )
        row = (
            src,
            dst,
            data.get("SRC_PORT", data.get("L4_SRC_PORT", data.get("sourceTransportPort"))),
            data.get("DST_PORT", data.get("L4_DST_PORT", data.get("destinationTransportPort"))),
            data.get("PROTO", data.get("PROTOCOL", data.get("protocolIdentifier"))),
            data.get("IN_OCTETS", data.get("IN_BYTES", data.get("octetDeltaCount"))),
            data.get("IN_PACKETS", data.get("IN_PKTS", data.get("packetDeltaCount"))),
        )
        if None in row:
            continue
        tuples[
            (
                _ip(ipaddress.ip_address(row[0]).compressed if isinstance(row[0], int) else row[0]),
                _ip(ipaddress.ip_address(row[1]).compressed if isinstance(row[1], int) else row[1]),
                *(int(v) for v in row[2:]),
            )
        ] += 1
    return tuples


def test_netflow_and_ipfix_agree_with_the_netflow_package():
    netflow = pytest.importorskip("netflow")
    compared = unsupported = 0
    mismatches = []
    for device in sorted(GROUPS):
        decoder = FlowDecoder(DecoderSettings())
        templates: dict[str, dict] = {"netflow": {}, "ipfix": {}}
        for number, path in enumerate(GROUPS[device]):
            payload = path.read_bytes()
            ours = our_flow_tuples(decoder.decode(payload, "10.66.0.1", ARRIVAL_NS + number).documents)
            try:
                theirs = _package_tuples(netflow.parse_packet(payload, templates))
            except Exception:  # the package gives up on some vendors' files: compare only what it parses
                unsupported += 1
                continue
            if theirs and theirs != ours:
                mismatches.append((path.name, sorted(theirs - ours)[:3], sorted(ours - theirs)[:3]))
            compared += sum(theirs.values())
    assert mismatches == []
    assert compared >= 200


# --- sFlow ---------------------------------------------------------------------------------------------------------


def tshark_sflow_rows(sflow: dict[str, Any]) -> tuple[Counter[tuple], Counter[tuple]]:
    flows: Counter[tuple] = Counter()
    counters: Counter[tuple] = Counter()
    for node in _nodes(sflow):
        if "sflow.flow_sample.sampling_rate" in node:
            header = next((n for n in _nodes(node) if "ip.src" in n or "ipv6.src" in n), None)
            l4 = next((n for n in _nodes(node) if "tcp.srcport" in n or "udp.srcport" in n), None)
            if header is None:
                continue
            src = _first(header, "ip.src", "ipv6.src")
            dst = _first(header, "ip.dst", "ipv6.dst")
            ports = (
                (int(_first(l4, "tcp.srcport", "udp.srcport")), int(_first(l4, "tcp.dstport", "udp.dstport")))
                if l4
                else (None, None)
            )
            frame_length = int(_find(node, "sflow_245.header.frame_length"))
            input_interface = _find(
                node, "sflow.flow_sample.input_interface", "sflow.flow_sample.input_interface_value"
            )
            flows[
                (
                    _ip(src),
                    _ip(dst),
                    *ports,
                    int(_first(node, "sflow.flow_sample.sampling_rate")),
                    frame_length,
                    int(input_interface),
                )
            ] += 1
        if "sflow_245.ifinoct" in node:
            counters[
                (
                    int(node["sflow_245.ifindex"]),
                    int(node["sflow_245.ifinoct"]),
                    int(node["sflow_245.ifoutoct"]),
                    int(node["sflow_245.ifinpkt"]),
                )
            ] += 1
    return flows, counters


def our_sflow_rows(documents: list[dict[str, Any]]) -> tuple[Counter[tuple], Counter[tuple]]:
    flows: Counter[tuple] = Counter()
    counters: Counter[tuple] = Counter()
    for doc in documents:
        raw = doc["sflow"]
        if doc["event"]["action"] == "sflow_flow_sample" and "ip" in doc.get("source", {}):
            flows[
                (
                    doc["source"]["ip"],
                    doc["destination"]["ip"],
                    doc["source"].get("port"),
                    doc["destination"].get("port"),
                    raw["sampling_rate"],
                    raw["frame_length"],
                    raw.get("input_interface", 0x3FFFFFFF),
                )
            ] += 1  # tshark shows "unknown" as the value
        interface = raw.get("counters", {}).get("interface")
        if interface:
            counters[
                (
                    interface["if_index"],
                    interface["if_in_octets"],
                    interface["if_out_octets"],
                    interface["if_in_ucast_pkts"],
                )
            ] += 1
    return flows, counters


def _has_unknown_record(tree: Any) -> bool:
    """tshark 4.0 skips an unknown record's header but not its body, misreading the records after it (on
    sflow_v5_example's port-name record 1005; Telegraf decodes the generic counters after it as we do)."""
    return any(key.startswith("Unknown sample format") for node in _nodes(tree) for key in node)


def _sflow_datagrams() -> list[tuple[str, int, bytes]]:
    payloads = [path.read_bytes() for path in sorted(LOGSTASH_SFLOW.glob("*sample*.dat"))]
    payloads += [(LOGSTASH_SFLOW / "sflow_with_lag_counters.dat").read_bytes()]
    payloads += [path.read_bytes() for path in sorted(TELEGRAF.glob("sflow_*/*.bin"))]
    frame = tcp_frame()
    payloads.append(
        datagram(
            [
                flow_sample(
                    [raw_header(frame, frame_length=1500), switch_record(1, 0, 2, 0)],
                    seq=5,
                    rate=4096,
                    input_if=12,
                    output_if=13,
                ),
                flow_sample(
                    [raw_header(frame[:54])], seq=6, rate=1, expanded=True, input_if=70000, output_if=3
                ),
                counter_sample([generic_counters(if_index=12, in_octets=2**40 + 5, out_octets=77)], seq=3),
            ],
            agent="2001:db8::5",
            sub_agent=3,
            seq=77,
        )
    )
    return [("10.88.0.1", 6343, payload) for payload in payloads]


@needs_tshark
def test_sflow_agrees_with_tshark(tmp_path: Path):
    datagrams = _sflow_datagrams()
    pcap = tmp_path / "sflow.pcap"
    write_pcap(pcap, datagrams)
    frames = tshark_layers(pcap)
    decoder = FlowDecoder(DecoderSettings())
    flows_compared = counters_compared = 0
    for number, ((src, _port, payload), layers) in enumerate(zip(datagrams, frames, strict=True)):
        result = decoder.decode(payload, src, ARRIVAL_NS + number)
        assert result.errors == []
        our_flows, our_counters = our_sflow_rows(result.documents)
        their_flows, their_counters = tshark_sflow_rows(layers.get("sflow", {}))
        assert our_flows == their_flows, number
        if not _has_unknown_record(layers.get("sflow", {})):
            assert our_counters == their_counters, number
        flows_compared += sum(their_flows.values())
        counters_compared += sum(their_counters.values())
    assert flows_compared >= 12
    assert counters_compared >= 10
