"""Every shared fixture decodes through ``FlowDecoder``; sFlow agrees field by field with Telegraf's decode.

Fixtures come from ../shared/fixtures (see its SOURCES.md). NetFlow v9/IPFIX data files need their template
file first, from the same exporter: files are grouped by device (the name up to ``_tpl``/``_data``...) and each
group gets its own exporter address, templates first.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.decode.packet import parse_ethernet, parse_header, parse_tcp, parse_udp

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
LOGSTASH_NETFLOW = FIXTURES / "logstash-codec-netflow"
LOGSTASH_SFLOW = FIXTURES / "logstash-codec-sflow"
TELEGRAF = FIXTURES / "telegraf"
ARRIVAL_NS = 1_700_000_000_000_000_000

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")

# Data sets whose template is in no fixture file (tshark agrees: "no template found"): they must be held and
# then counted as expired, never dropped silently.
EXPECTED_EXPIRED = {
    "ipfix_test_netscaler": 1,  # data set 280
    "netflow9_test_iptnetflow_reduced_size_encoding": 6,  # data sets 259 and 262
}


def _device(name: str) -> str:
    return re.split(r"_(?:tpl|opttpl|data|tpls|tplopt|tpldata)", Path(name).stem)[0]


def _groups() -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = defaultdict(list)
    if LOGSTASH_NETFLOW.is_dir():
        for path in sorted(LOGSTASH_NETFLOW.glob("*.dat")):
            groups[_device(path.name)].append(path)
    for files in groups.values():
        # template-only files first, then everything else in name order
        files.sort(key=lambda p: ("tpl" not in p.name or "data" in p.name, p.name))
    return dict(groups)


GROUPS = _groups()


@pytest.mark.parametrize("device", sorted(GROUPS))
def test_logstash_netflow_fixtures_decode(device: str):
    decoder = FlowDecoder(DecoderSettings())
    for number, path in enumerate(GROUPS[device]):
        result = decoder.decode(path.read_bytes(), f"198.51.100.{len(device) % 200}", ARRIVAL_NS + number)
        reasons = [reason for reason, _ in result.errors]
        assert "decoder_error" not in reasons, result.errors
        assert result.protocol in ("netflow_v5", "netflow_v9", "ipfix")
        if "invalid" in path.name:
            continue
        assert reasons == [], f"{path.name}: {result.errors}"
        if "data" in path.name or result.protocol == "netflow_v5":
            assert result.documents, f"{path.name} yielded no document"
        for doc in result.documents:
            assert doc["event"]["action"] in ("netflow_flow", "ipfix_flow", "netflow_options")
            assert doc["_id"]
    expired = decoder.expire(ARRIVAL_NS + 10**15)
    assert expired.stats.get("expired", 0) == EXPECTED_EXPIRED.get(device, 0)


@pytest.mark.parametrize("name", ["netflow5_test_invalid01.dat", "netflow5_test_invalid02.dat"])
def test_invalid_netflow_fixtures_are_rejected_with_a_reason(name: str):
    decoder = FlowDecoder(DecoderSettings())
    result = decoder.decode((LOGSTASH_NETFLOW / name).read_bytes(), "198.51.100.1", ARRIVAL_NS)
    assert result.errors and result.documents == []
    after = decoder.decode((LOGSTASH_NETFLOW / "netflow5.dat").read_bytes(), "198.51.100.1", ARRIVAL_NS)
    assert after.errors == [] and after.documents


def _telegraf_cases() -> list[str]:
    return sorted(p.name for p in TELEGRAF.iterdir() if p.is_dir()) if TELEGRAF.is_dir() else []


@pytest.mark.parametrize("case", _telegraf_cases())
def test_telegraf_cases_decode(case: str):
    decoder = FlowDecoder(DecoderSettings())
    documents = []
    for number, path in enumerate(sorted((TELEGRAF / case).glob("*.bin"))):
        result = decoder.decode(path.read_bytes(), "127.0.0.1", ARRIVAL_NS + number)
        assert result.errors == [], f"{path.name}: {result.errors}"
        documents.extend(result.documents)
    assert documents


# --- sFlow datagrams and fragments of logstash-codec-sflow -----------------------------------------------------


def test_logstash_sflow_datagrams():
    expected = {  # (flow samples, counter samples) per datagram, as tshark -V counts them
        "sflow_1_counters_sample.dat": (0, 1),
        "sflow_counters_sample.dat": (0, 12),
        "sflow_flow_sample.dat": (1, 0),
        "sflow_flow_sample_eth_vlan.dat": (1, 0),
        "sflow_with_lag_counters.dat": (5, 2),
    }
    decoder = FlowDecoder(DecoderSettings())
    for name, (flows, counters) in expected.items():
        result = decoder.decode((LOGSTASH_SFLOW / name).read_bytes(), "127.0.0.1", ARRIVAL_NS)
        assert result.errors == [], name
        assert result.stats["records.sflow_flow_sample"] == flows, name
        assert result.stats["records.sflow_counter_sample"] == counters, name
    (doc,) = decoder.decode(
        (LOGSTASH_SFLOW / "sflow_flow_sample_eth_vlan.dat").read_bytes(), "127.0.0.1", 0
    ).documents
    assert doc["network"]["vlan"]["id"] == "2422"
    assert (
        doc["source"]["ip"],
        doc["source"]["port"],
        doc["destination"]["ip"],
        doc["destination"]["port"],
    ) == ("10.243.2.11", 63150, "10.243.13.15", 443)


def test_logstash_sflow_fragments_through_the_header_parser():
    """The codec's header fragments are no datagrams: they go through decode/packet.py (values as its spec)."""
    eth_udp = parse_ethernet((LOGSTASH_SFLOW / "sflow_ethernet_ipv4_udp_header.dat").read_bytes())
    assert (eth_udp.dst_mac.hex(":"), eth_udp.src_mac.hex(":")) == ("00:23:e9:78:16:c6", "58:f3:9c:81:4b:81")
    assert (eth_udp.src_ip, eth_udp.dst_ip, eth_udp.protocol) == ("10.243.13.18", "10.243.27.9", 17)
    assert (eth_udp.src_port, eth_udp.dst_port, eth_udp.udp_length) == (20665, 514, 147)
    vlan_tcp = parse_ethernet((LOGSTASH_SFLOW / "sflow_ethernet_vlan_ipv4_tcp_header.dat").read_bytes())
    assert vlan_tcp.vlans == [2422]
    assert (vlan_tcp.src_ip, vlan_tcp.dst_ip, vlan_tcp.src_port, vlan_tcp.dst_port) == (
        "10.243.2.11",
        "10.243.13.15",
        63150,
        443,
    )
    assert vlan_tcp.tcp_flags == 0x10
    ipv4_tcp = parse_header(11, (LOGSTASH_SFLOW / "sflow_ipv4_tcp_header.dat").read_bytes())
    assert (ipv4_tcp.src_ip, ipv4_tcp.dst_ip, ipv4_tcp.ttl, ipv4_tcp.ip_total_length) == (
        "10.243.27.17",
        "10.243.0.45",
        62,
        476,
    )
    assert (ipv4_tcp.src_port, ipv4_tcp.dst_port, ipv4_tcp.tcp_flags) == (5672, 59451, 0x18)
    tcp = parse_tcp((LOGSTASH_SFLOW / "sflow_tcp.dat").read_bytes())
    assert (tcp.src_port, tcp.dst_port, tcp.tcp_flags) == (5672, 59451, 0x18)
    udp = parse_udp((LOGSTASH_SFLOW / "sflow_udp.dat").read_bytes())
    assert (udp.src_port, udp.dst_port, udp.udp_length) == (20665, 514, 147)


def test_logstash_sflow_fragments_agree_with_scapy():
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    for name in ("sflow_ethernet_ipv4_udp_header.dat", "sflow_ethernet_vlan_ipv4_tcp_header.dat"):
        raw = (LOGSTASH_SFLOW / name).read_bytes()
        ours, theirs = parse_ethernet(raw), Ether(raw)
        assert ours.src_ip == theirs[IP].src and ours.dst_ip == theirs[IP].dst
        assert ours.ttl == theirs[IP].ttl and ours.ip_id == theirs[IP].id
        l4 = theirs[TCP] if TCP in theirs else theirs[UDP]
        assert (ours.src_port, ours.dst_port) == (l4.sport, l4.dport)
        if Dot1Q in theirs:
            assert ours.vlans == [theirs[Dot1Q].vlan]


# --- Telegraf's sFlow decode, field by field ---------------------------------------------------------------------


def parse_line_protocol(text: str) -> list[dict[str, Any]]:
    """Influx line protocol -> one dict of fields per line (tags and timestamp left out)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        _head, _, rest = line.partition(" ")
        fields_text = rest.rsplit(" ", 1)[0]
        fields: dict[str, Any] = {}
        for item in re.findall(r'([^=,]+)=("(?:[^"\\]|\\.)*"|[^,]*)', fields_text):
            key, value = item
            if value.startswith('"'):
                fields[key] = value[1:-1]
            elif value.endswith(("u", "i")):
                fields[key] = int(value[:-1])
            else:
                fields[key] = float(value)
        rows.append(fields)
    return rows


def _mac(ecs_mac: str) -> str:
    return ecs_mac.replace("-", ":").lower()


def _fragment_flags(doc: dict[str, Any]) -> str:
    flags = doc["sflow"].get("ip_flags", 0)
    return "......" + ("D" if flags & 2 else ".") + ("M" if flags & 1 else ".")


# Telegraf field -> how to read the same value from our document. Telegraf's in_snmp on flow samples is the data
# source (source_id_index), not the sample's input interface: tshark -V shows input 101 where Telegraf says 60 on
# sflow_issue_15918's second sample, so we compare it with source_id_index and check inputs against tshark.
FLOW_FIELDS = {
    "agent_ip": lambda d: d["observer"]["ip"],
    "agent_subid": lambda d: d["sflow"]["sub_agent_id"],
    "seq_number": lambda d: d["sflow"]["sample_sequence"],
    "sys_uptime": lambda d: d["sflow"]["uptime_millis"],
    "in_snmp": lambda d: d["sflow"]["source_id_index"],
    "out_snmp": lambda d: d["sflow"]["output_interface"],
    "direction": lambda d: d["network"]["direction"],
    "src": lambda d: d["source"]["ip"],
    "dst": lambda d: d["destination"]["ip"],
    "src_port": lambda d: d["source"]["port"],
    "dst_port": lambda d: d["destination"]["port"],
    "sampling_interval": lambda d: d["flow"]["sampling_rate"],
    "in_total_packets": lambda d: d["sflow"]["sample_pool"],
    "sampling_drops": lambda d: d["sflow"]["drops"],
    "l2_bytes": lambda d: d["sflow"]["frame_length"],
    "l2_protocol": lambda d: "ETHERNET-ISO8023" if d["sflow"]["header_protocol"] == 1 else None,
    "datalink_frame_type": lambda d: {"ipv4": "IPv4", "ipv6": "IPv6"}[d["network"]["type"]],
    "ip_version": lambda d: {"ipv4": "IPv4", "ipv6": "IPv6"}[d["network"]["type"]],
    "in_src_mac": lambda d: _mac(d["source"]["mac"]),
    "out_dst_mac": lambda d: _mac(d["destination"]["mac"]),
    "vlan_src": lambda d: d["sflow"]["src_vlan"],
    "vlan_dst": lambda d: d["sflow"]["dst_vlan"],
    "vlan_src_priority": lambda d: d["sflow"]["src_priority"],
    "vlan_dst_priority": lambda d: d["sflow"]["dst_priority"],
    "ttl": lambda d: d["sflow"]["ip_ttl"],
    "src_tos": lambda d: d["sflow"]["ip_tos"],
    "ipv4_id": lambda d: d["sflow"]["ip_id"],
    "ipv4_inet_header_len": lambda d: (
        5
    ),  # every fixture header has no IPv4 options (ports found at offset 20)
    "ipv4_total_len": lambda d: d["sflow"]["ip_total_length"],
    "ipv6_total_len": lambda d: d["sflow"]["ip_total_length"] - 40,  # Telegraf: the payload length
    "ip_total_len": lambda d: d["sflow"]["ip_total_length"] - (20 if d["network"]["type"] == "ipv4" else 40),
    "fragment_offset": lambda d: d["sflow"].get("fragment_offset", 0),
    "fragment_flags": _fragment_flags,
    # Telegraf names the protocol of the IPv6 fixed header's Next Header; we walk extension headers to the
    # transport (hop-by-hop "hopopt" -> ICMPv6 for MLD reports)
    "protocol": lambda d: (
        "hopopt" if d["sflow"].get("ipv6_extension_headers", [None])[0] == 0 else d["network"]["transport"]
    ),
}

COUNTER_FIELDS = {
    "agent_ip": lambda d: d["observer"]["ip"],
    "agent_subid": lambda d: d["sflow"]["sub_agent_id"],
    "seq_number": lambda d: d["sflow"]["sample_sequence"],
    "sys_uptime": lambda d: d["sflow"]["uptime_millis"],
    "ip_version": lambda d: "IPv4" if "." in d["observer"]["ip"] else "IPv6",
    "in_snmp": lambda d: d["sflow"]["counters"]["interface"]["if_index"],
    "interface": lambda d: d["sflow"]["counters"]["interface"]["if_index"],
    "interface_type": lambda d: d["sflow"]["counters"]["interface"]["if_type"],
    "speed": lambda d: d["sflow"]["counters"]["interface"]["if_speed"],
    "status": lambda d: d["sflow"]["counters"]["interface"]["if_oper_status"],
    "promiscuous": lambda d: d["sflow"]["counters"]["interface"]["if_promiscuous_mode"],
    "type": lambda d: "IEEE 802.3" if d["sflow"]["counters"]["interface"]["if_type"] in (1, 6) else None,
    "port_name": lambda d: d["sflow"]["counters"]["port_name"],
}
_IF = {
    "in_bytes": "if_in_octets",
    "in_unicast_packets_total": "if_in_ucast_pkts",
    "in_mcast_packets_total": "if_in_multicast_pkts",
    "in_broadcast_packets_total": "if_in_broadcast_pkts",
    "in_dropped_packets": "if_in_discards",
    "in_errors": "if_in_errors",
    "in_unknown_protocol": "if_in_unknown_protos",
    "out_bytes": "if_out_octets",
    "out_unicast_packets_total": "if_out_ucast_pkts",
    "out_mcast_packets_total": "if_out_multicast_pkts",
    "out_broadcast_packets_total": "if_out_broadcast_pkts",
    "out_dropped_packets": "if_out_discards",
    "out_errors": "if_out_errors",
}
_ETHERNET = {
    "errors_alignment": "alignment_errors",
    "errors_fcs": "fcs_errors",
    "collision_frames_single": "single_collision_frames",
    "collision_frames_multi": "multiple_collision_frames",
    "errors_sqetest": "sqe_test_errors",
    "deferred": "deferred_transmissions",
    "collisions_late": "late_collisions",
    "collisions_excessive": "excessive_collisions",
    "errors_internal_mac_tx": "internal_mac_transmit_errors",
    "errors_carrier_sense": "carrier_sense_errors",
    "errors_frame_too_long": "frame_too_longs",
    "errors_internal_mac_rx": "internal_mac_receive_errors",
    "errors_symbols": "symbol_errors",
}
for _theirs, _ours in _IF.items():
    COUNTER_FIELDS[_theirs] = lambda d, key=_ours: d["sflow"]["counters"]["interface"][key]
for _theirs, _ours in _ETHERNET.items():
    COUNTER_FIELDS[_theirs] = lambda d, key=_ours: d["sflow"]["counters"]["ethernet"][key]

DROP_FIELDS = {
    "agent_ip": lambda d: d["observer"]["ip"],
    "agent_subid": lambda d: d["sflow"]["sub_agent_id"],
    "seq_number": lambda d: d["sflow"]["sample_sequence"],
    "sys_uptime": lambda d: d["sflow"]["uptime_millis"],
    "ip_version": lambda d: "IPv4",
    "direction": lambda d: d["network"]["direction"],
    "in_snmp": lambda d: d["sflow"]["input_interface"],
    "out_snmp": lambda d: d["sflow"]["output_interface"],
    "out_queue": lambda d: d["sflow"]["egress_queue"],
    "reason": lambda d: d["sflow"]["drop_reason"],
    "sampling_drops": lambda d: d["sflow"]["drops"],
}

ACTION_FIELDS = {
    "sflow_flow_sample": FLOW_FIELDS,
    "sflow_counter_sample": COUNTER_FIELDS,
    "sflow_discarded_packet": DROP_FIELDS,
}


@pytest.mark.parametrize(
    "case", ["sflow_v5_example", "sflow_issue_15375", "sflow_issue_15918", "sflow_issue_18876"]
)
def test_sflow_agrees_with_telegraf_field_by_field(case: str):
    expected = parse_line_protocol((TELEGRAF / case / "expected.out").read_text())
    decoder = FlowDecoder(DecoderSettings())
    docs = []
    for path in sorted((TELEGRAF / case).glob("*.bin")):
        result = decoder.decode(path.read_bytes(), "127.0.0.1", ARRIVAL_NS)
        assert result.errors == []
        docs.extend(result.documents)
    assert len(docs) == len(expected)
    compared = 0
    for doc, theirs in zip(docs, expected, strict=True):
        readers = ACTION_FIELDS[doc["event"]["action"]]
        unmapped = set(theirs) - set(readers)
        assert not unmapped, f"Telegraf fields with no counterpart: {sorted(unmapped)}"
        for key, value in theirs.items():
            assert readers[key](doc) == value, (
                f"{case}: {key}: Telegraf {value!r}, ours {readers[key](doc)!r}"
            )
            compared += 1
    assert compared >= len(expected) * 10


def test_sflow_ipv6_hop_by_hop_resolves_to_icmpv6():
    """Where we deliberately differ from Telegraf: MLD behind a hop-by-hop header is ICMPv6 (tshark agrees)."""
    docs = (
        FlowDecoder()
        .decode((TELEGRAF / "sflow_issue_15918" / "message.bin").read_bytes(), "127.0.0.1", 0)
        .documents
    )
    mld = [d for d in docs if d.get("destination", {}).get("ip") == "ff02::16"]
    assert len(mld) == 1
    assert mld[0]["network"]["iana_number"] == "58"
    assert mld[0]["sflow"]["ipv6_extension_headers"] == [0]
    assert mld[0]["sflow"]["icmp_type"] == 143  # MLDv2 report
