"""sFlow v5 decoder and sampled-header parser: datagrams built here field by field (XDR), frames built by scapy."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.decode.packet import parse_ethernet, parse_header
from flowsink.decode.sflow import SflowDecoder
from flowsink.normalize.common import community_id
from test_decode_fixtures import LOGSTASH_SFLOW

ARRIVAL_NS = 1_763_900_000_123_456_789
EXPORTER = "192.0.2.10"


# --- an XDR encoder for the tests: every structure written out from the sFlow v5 spec ---------------------------


def xdr_address(ip: str | None) -> bytes:
    if ip is None:
        return struct.pack("!I", 0)
    if ":" in ip:
        import ipaddress

        return struct.pack("!I", 2) + ipaddress.IPv6Address(ip).packed
    import ipaddress

    return struct.pack("!I", 1) + ipaddress.IPv4Address(ip).packed


def xdr_opaque(raw: bytes) -> bytes:
    return struct.pack("!I", len(raw)) + raw + b"\0" * (-len(raw) % 4)


def record(fmt: int, body: bytes, enterprise: int = 0) -> bytes:
    return struct.pack("!II", (enterprise << 12) | fmt, len(body)) + body


def raw_header(
    frame: bytes, header_protocol: int = 1, frame_length: int | None = None, stripped: int = 4
) -> bytes:
    length = len(frame) + stripped if frame_length is None else frame_length
    return record(1, struct.pack("!III", header_protocol, length, stripped) + xdr_opaque(frame))


def switch_record(src_vlan: int, src_pri: int, dst_vlan: int, dst_pri: int) -> bytes:
    return record(1001, struct.pack("!IIII", src_vlan, src_pri, dst_vlan, dst_pri))


def flow_sample(
    records: list[bytes],
    seq: int = 1,
    source: int = 3,
    rate: int = 100,
    pool: int = 1000,
    drops: int = 0,
    input_if: int = 3,
    output_if: int = 7,
    expanded: bool = False,
) -> bytes:
    if expanded:
        head = struct.pack(
            "!IIIIIIIIIII", seq, 0, source, rate, pool, drops, 0, input_if, 0, output_if, len(records)
        )
        return record(3, head + b"".join(records))
    head = struct.pack("!IIIIIIII", seq, source, rate, pool, drops, input_if, output_if, len(records))
    return record(1, head + b"".join(records))


def counter_sample(records: list[bytes], seq: int = 1, source: int = 3, expanded: bool = False) -> bytes:
    if expanded:
        return record(4, struct.pack("!IIII", seq, 0, source, len(records)) + b"".join(records))
    return record(2, struct.pack("!III", seq, source, len(records)) + b"".join(records))


def datagram(
    samples: list[bytes], agent: str | None = "10.0.0.1", sub_agent: int = 0, seq: int = 1, uptime: int = 5000
) -> bytes:
    return (
        struct.pack("!I", 5)
        + xdr_address(agent)
        + struct.pack("!IIII", sub_agent, seq, uptime, len(samples))
        + b"".join(samples)
    )


def generic_counters(if_index: int = 3, in_octets: int = 10**12, out_octets: int = 2 * 10**12) -> bytes:
    body = struct.pack(
        "!IIQIIQIIIIIIQIIIIII",
        if_index,
        6,
        10**10,
        1,
        3,
        in_octets,
        11,
        12,
        13,
        14,
        15,
        16,
        out_octets,
        21,
        22,
        23,
        24,
        25,
        1,
    )
    return record(1, body)


def tcp_frame() -> bytes:
    return bytes(
        Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb")
        / IP(src="10.1.2.3", dst="10.4.5.6", tos=0x20, ttl=61, id=777, flags="DF")
        / TCP(sport=40000, dport=443, flags="SA")
        / (b"x" * 100)
    )


def netflow_v5_flow_id(exporter: str, src: str, dst: str, proto: int, sport: int, dport: int) -> str:
    """flow.id the NetFlow v5 decoder gives this 5-tuple from this device: sFlow's must be the same."""
    import ipaddress

    record = struct.pack(
        "!4s4s4sHHIIIIHHxBBBHHBBxx",
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
        b"\0" * 4,
        1,
        2,
        10,
        1000,
        100,
        200,
        sport,
        dport,
        0,
        proto,
        0,
        0,
        0,
        0,
        0,
    )
    header = struct.pack("!HHIIIIBBH", 5, 1, 1000, 1_700_000_000, 0, 0, 0, 0, 0)
    (doc,) = FlowDecoder(DecoderSettings()).decode(header + record, exporter, ARRIVAL_NS).documents
    return doc["flow"]["id"]


def decode_one(payload: bytes, decoder: SflowDecoder | None = None, exporter: str = EXPORTER):
    result = (decoder or SflowDecoder(DecoderSettings())).decode(payload, exporter, ARRIVAL_NS)
    assert result.protocol == "sflow"
    return result


# --- flow samples ------------------------------------------------------------------------------------------------


def test_ethernet_ipv4_tcp_flow_sample_to_ecs():
    frame = tcp_frame()
    payload = datagram(
        [
            flow_sample(
                [raw_header(frame[:128], frame_length=1518), switch_record(10, 1, 20, 2)],
                rate=512,
                pool=99,
                drops=4,
                source=3,
                input_if=3,
                output_if=7,
            )
        ]
    )
    result = decode_one(payload)
    assert result.errors == []
    (doc,) = result.documents
    assert doc["event"]["action"] == "sflow_flow_sample"
    assert doc["@timestamp"] == "2025-11-23T12:13:20.123Z"
    assert doc["source"] == {"ip": "10.1.2.3", "port": 40000, "mac": "00-11-22-33-44-55"}
    assert doc["destination"] == {"ip": "10.4.5.6", "port": 443, "mac": "66-77-88-99-AA-BB"}
    network = doc["network"]
    assert (network["iana_number"], network["transport"], network["type"]) == ("6", "tcp", "ipv4")
    assert network["bytes"] == 1518 * 512
    assert network["packets"] == 512
    assert network["direction"] == "ingress"
    assert network["community_id"] == community_id("10.1.2.3", "10.4.5.6", 6, 40000, 443)
    assert doc["flow"]["sampling_rate"] == 512
    assert doc["flow"]["id"] == netflow_v5_flow_id("10.0.0.1", "10.1.2.3", "10.4.5.6", 6, 40000, 443)
    assert doc["observer"] == {
        "ip": "10.0.0.1",
        "ingress": {"interface": {"id": "3"}},
        "egress": {"interface": {"id": "7"}},
    }
    raw = doc["sflow"]
    assert raw["exporter_address"] == EXPORTER
    assert raw["agent_address"] == "10.0.0.1"
    assert (raw["frame_length"], raw["sampling_rate"], raw["sample_pool"], raw["drops"]) == (1518, 512, 99, 4)
    assert (raw["ip_tos"], raw["ip_ttl"], raw["ip_id"], raw["ip_flags"]) == (0x20, 61, 777, 2)
    assert raw["tcp_flags"] == 0x12
    assert (raw["src_vlan"], raw["src_priority"], raw["dst_vlan"], raw["dst_priority"]) == (10, 1, 20, 2)
    assert result.stats["records.sflow_flow_sample"] == 1


def test_renormalisation_can_be_switched_off_and_rate_zero_counts_once():
    frame = tcp_frame()
    payload = datagram([flow_sample([raw_header(frame, frame_length=200)], rate=1000)])
    (doc,) = decode_one(payload, SflowDecoder(DecoderSettings(renormalize=False))).documents
    assert (doc["network"]["bytes"], doc["network"]["packets"], doc["flow"]["sampling_rate"]) == (
        200,
        1,
        1000,
    )
    payload = datagram([flow_sample([raw_header(frame, frame_length=200)], rate=0)])
    (doc,) = decode_one(payload).documents
    assert (doc["network"]["bytes"], doc["network"]["packets"], doc["flow"]["sampling_rate"]) == (200, 1, 1)


def test_qinq_vlans_and_ipv6_extension_headers():
    frame = bytes(
        Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02")
        / Dot1AD(vlan=100, prio=5)
        / Dot1Q(vlan=200)
        / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0x28, fl=0xABCDE, hlim=33)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=1)
        / UDP(sport=5353, dport=53)
        / (b"q" * 40)
    )
    (doc,) = decode_one(datagram([flow_sample([raw_header(frame)])])).documents
    assert doc["network"]["vlan"] == {"id": "100"}
    assert doc["network"]["inner"] == {"vlan": {"id": "200"}}
    assert doc["sflow"]["vlans"] == [100, 200]
    assert doc["network"]["type"] == "ipv6"
    assert doc["network"]["iana_number"] == "17"
    assert (doc["source"]["port"], doc["destination"]["port"]) == (5353, 53)
    assert doc["sflow"]["ipv6_extension_headers"] == [0, 43, 60, 44]
    assert (doc["sflow"]["ip_tos"], doc["sflow"]["ipv6_flow_label"], doc["sflow"]["ip_ttl"]) == (
        0x28,
        0xABCDE,
        33,
    )


def test_non_first_fragments_carry_no_ports():
    v4 = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", frag=100, proto=17) / (b"\x12\x34\x56\x78" * 10))
    v6 = bytes(Ether() / IPv6(src="::1", dst="::2") / IPv6ExtHdrFragment(offset=10, nh=6) / (b"\x01" * 40))
    for frame, fragment_offset in ((v4, 100), (v6, 10)):
        info = parse_ethernet(frame)
        assert info.src_port is None
        assert info.fragment_offset == fragment_offset
        (doc,) = decode_one(datagram([flow_sample([raw_header(frame)])])).documents
        assert "port" not in doc["source"]
        assert doc["sflow"]["fragment_offset"] == fragment_offset


def test_icmp_and_icmpv6_type_and_code():
    frames = [
        (bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0)), 1, "icmp", 8),
        (bytes(Ether() / IPv6(src="fe80::1", dst="fe80::2") / ICMPv6EchoRequest()), 58, "ipv6-icmp", 128),
    ]
    for frame, proto, transport, icmp_type in frames:
        (doc,) = decode_one(datagram([flow_sample([raw_header(frame)])])).documents
        assert doc["network"]["iana_number"] == str(proto)
        assert doc["network"]["transport"] == transport
        assert (doc["sflow"]["icmp_type"], doc["sflow"]["icmp_code"]) == (icmp_type, 0)
        assert doc["network"]["community_id"] == community_id(
            doc["source"]["ip"], doc["destination"]["ip"], proto, icmp_type, 0
        )


def test_raw_ipv4_header_protocol_and_truncated_header():
    frame = tcp_frame()
    (doc,) = decode_one(datagram([flow_sample([raw_header(frame[14:], header_protocol=11)])])).documents
    assert (doc["source"]["ip"], doc["destination"]["port"]) == ("10.1.2.3", 443)
    assert "mac" not in doc["source"]
    # a header cut inside the TCP header: addresses known, ports too, flags not
    (doc,) = decode_one(datagram([flow_sample([raw_header(frame[:40])])])).documents
    assert doc["source"]["port"] == 40000
    assert doc["sflow"]["header_truncated"] is True
    assert "tcp_flags" not in doc["sflow"]
    info = parse_header(1, frame[:20])
    assert info.ip_src is None and info.truncated


def test_ipv4_and_ipv6_data_records_without_a_header():
    import ipaddress

    v4 = record(
        3,
        struct.pack(
            "!II4s4sIIII",
            1400,
            6,
            ipaddress.IPv4Address("192.0.2.1").packed,
            ipaddress.IPv4Address("198.51.100.2").packed,
            1234,
            80,
            0x18,
            4,
        ),
    )
    v6 = record(
        4,
        struct.pack(
            "!II16s16sIIII",
            90,
            17,
            ipaddress.IPv6Address("2001:db8::a").packed,
            ipaddress.IPv6Address("2001:db8::b").packed,
            5000,
            53,
            0,
            0,
        ),
    )
    docs = decode_one(datagram([flow_sample([v4], rate=10), flow_sample([v6], seq=2)])).documents
    assert (docs[0]["source"]["ip"], docs[0]["destination"]["port"], docs[0]["network"]["transport"]) == (
        "192.0.2.1",
        80,
        "tcp",
    )
    assert docs[0]["sflow"]["tcp_flags"] == 0x18
    assert docs[0]["sflow"]["ip_total_length"] == 1400
    assert (docs[1]["network"]["type"], docs[1]["source"]["port"]) == ("ipv6", 5000)


def test_extended_router_gateway_user_url_nat_records():
    router = record(1002, xdr_address("10.9.9.9") + struct.pack("!II", 24, 16))
    path = (
        struct.pack("!I", 2)
        + struct.pack("!II", 2, 3)
        + struct.pack("!III", 65001, 65002, 65003)
        + struct.pack("!II", 1, 1)
        + struct.pack("!I", 65010)
    )
    gateway = record(
        1003,
        xdr_address("2001:db8::9")
        + struct.pack("!III", 64512, 64600, 64601)
        + path
        + struct.pack("!III", 2, 0xFFFF0001, 0xFFFF0002)
        + struct.pack("!I", 100),
    )
    user = record(
        1004, struct.pack("!I", 106) + xdr_opaque(b"alice") + struct.pack("!I", 106) + xdr_opaque(b"bob")
    )
    url = record(1005, struct.pack("!I", 1) + xdr_opaque(b"/index.html") + xdr_opaque(b"example.org"))
    nat = record(1007, xdr_address("203.0.113.1") + xdr_address("203.0.113.2"))
    frame = tcp_frame()
    (doc,) = decode_one(
        datagram([flow_sample([raw_header(frame), router, gateway, user, url, nat])])
    ).documents
    raw = doc["sflow"]
    assert (raw["next_hop_address"], raw["src_mask_len"], raw["dst_mask_len"]) == ("10.9.9.9", 24, 16)
    assert raw["bgp_next_hop_address"] == "2001:db8::9"
    assert (raw["as"], raw["src_as"], raw["src_peer_as"]) == (64512, 64600, 64601)
    assert raw["dst_as_path"] == [65001, 65002, 65003, 65010]
    assert raw["communities"] == [0xFFFF0001, 0xFFFF0002]
    assert raw["local_pref"] == 100
    assert doc["source"]["as"] == {"number": 64600}
    assert doc["destination"]["as"] == {"number": 65010}
    assert (raw["src_user"], raw["dst_user"], raw["url"], raw["host"]) == (
        "alice",
        "bob",
        "/index.html",
        "example.org",
    )
    assert (raw["nat_src_ip"], raw["nat_dst_ip"]) == ("203.0.113.1", "203.0.113.2")


def test_expanded_sample_ipv6_agent_sub_agent_and_unknown_records_skipped():
    unknown = record(77, b"\xff" * 12, enterprise=4413)
    payload = datagram(
        [
            flow_sample(
                [unknown, raw_header(tcp_frame()), unknown],
                expanded=True,
                source=70000,
                input_if=70000,
                output_if=0x3FFFFFFF,
            ),
            record(9, b"\0" * 16, enterprise=9),
        ],
        agent="2001:db8::77",
        sub_agent=42,
    )
    result = decode_one(payload)
    assert result.errors == []
    (doc,) = result.documents
    assert doc["observer"]["ip"] == "2001:db8::77"
    assert doc["sflow"]["sub_agent_id"] == 42
    assert doc["sflow"]["expanded"] is True
    assert doc["observer"]["ingress"]["interface"]["id"] == "70000"
    assert "egress" not in doc["observer"]  # 0x3FFFFFFF: interface not known
    assert doc["source"]["port"] == 40000
    assert result.stats["sflow_unknown_records"] == 2
    assert result.stats["sflow_unknown_samples"] == 1


# --- counter samples --------------------------------------------------------------------------------------------


def test_counter_samples_generic_ethernet_vlan_processor_lag_port_name():
    ethernet = record(2, struct.pack("!13I", *range(1, 14)))
    vlan = record(5, struct.pack("!IQIIII", 300, 123456789012, 1, 2, 3, 4))
    processor = record(1001, struct.pack("!IIIQQ", 1500, 2000, 2500, 16 * 2**30, 8 * 2**30))
    lag = record(
        7,
        b"\x00\x01\x02\x03\x04\x05\0\0"
        + b"\x06\x07\x08\x09\x0a\x0b\0\0"
        + struct.pack("!I", 9)
        + bytes([0x3D, 0x3C, 0x3B, 0x3A])
        + struct.pack("!8I", *range(100, 108)),
    )
    port_name = record(1005, xdr_opaque(b"xe-0/0/1"))
    payload = datagram(
        [
            counter_sample([generic_counters(), ethernet, vlan, processor, port_name], seq=9),
            counter_sample([lag, record(999, b"abcd")], seq=4, source=8, expanded=True),
        ]
    )
    result = decode_one(payload)
    assert result.errors == []
    first, second = result.documents
    assert first["event"]["action"] == "sflow_counter_sample"
    assert first["event"]["kind"] == "metric"
    counters = first["sflow"]["counters"]
    assert counters["interface"]["if_in_octets"] == 10**12
    assert counters["interface"]["if_out_octets"] == 2 * 10**12
    assert counters["interface"]["if_speed"] == 10**10
    assert counters["interface"]["if_promiscuous_mode"] == 1
    assert (counters["interface"]["if_admin_status"], counters["interface"]["if_oper_status"]) == ("up", "up")
    assert counters["ethernet"]["alignment_errors"] == 1 and counters["ethernet"]["symbol_errors"] == 13
    assert counters["vlan"] == {
        "vlan_id": 300,
        "octets": 123456789012,
        "ucast_pkts": 1,
        "multicast_pkts": 2,
        "broadcast_pkts": 3,
        "discards": 4,
    }
    assert counters["processor"]["cpu_5s_percent"] == 1500
    assert counters["processor"]["free_memory"] == 8 * 2**30
    assert first["observer"]["ingress"]["interface"] == {"id": "3", "name": "xe-0/0/1"}
    lag_counters = second["sflow"]["counters"]["lag"]
    assert lag_counters["actor_system_id"] == "00:01:02:03:04:05"
    assert lag_counters["attached_agg_id"] == 9
    assert lag_counters["actor_admin_state"] == 0x3D
    assert lag_counters["marker_response_pdus_tx"] == 107
    assert second["sflow"]["expanded"] is True
    assert result.stats["records.sflow_counter_sample"] == 2
    assert result.stats["sflow_unknown_records"] == 1


# the host structures of https://sflow.org/sflow_host.txt (enterprise 0), written out field by field
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
HOST_ADAPTERS = record(
    2001,
    struct.pack("!I", 2)  # adapters
    + struct.pack("!II", 3, 2)
    + MAC_A
    + b"\0\0"
    + MAC_B
    + b"\0\0"  # ifIndex 3, two MACs (XDR pads 6 to 8)
    + struct.pack("!II", 0, 0),  # ifIndex unknown, no MAC
)
HOST_PARENT = record(2002, struct.pack("!II", 2, 7))  # container: physical entity 7
HOST_DISK_IO = record(2005, struct.pack("!QQiIQIIQI", 2**41, 2**40, 4512, 10, 2**33, 11, 12, 2**34, 13))
HOST_NET_IO = record(2006, struct.pack("!QIIIQIII", 2**35, 1, 2, 3, 2**36, 4, 5, 6))
MIB2_IP = record(2007, struct.pack("!19I", *range(100, 119)))
MIB2_ICMP = record(2008, struct.pack("!25I", *range(200, 225)))
MIB2_TCP = record(2009, struct.pack("!IIIiIIIIIIIIIII", 1, 200, 120000, -1, *range(300, 311)))
MIB2_UDP = record(2010, struct.pack("!7I", *range(400, 407)))
VIRT_NODE = record(2100, struct.pack("!IIQQI", 2400, 8, 2**35, 2**33, 3))
VIRT_CPU = record(2101, struct.pack("!III", 1, 123456, 2))
VIRT_MEMORY = record(2102, struct.pack("!QQ", 2**31, 2**32))
VIRT_DISK_IO = record(2103, struct.pack("!QQQIQIQI", 2**36, 2**35, 2**34, 7, 2**20, 8, 2**21, 9))
VIRT_NET_IO = record(2104, struct.pack("!QIIIQIII", 2**30, 11, 12, 13, 2**31, 14, 15, 16))


def host_counter_datagram() -> bytes:
    return datagram(
        [
            counter_sample(
                [HOST_ADAPTERS, HOST_PARENT, HOST_DISK_IO, HOST_NET_IO], seq=5, source=(2 << 24) | 1
            ),
            counter_sample([MIB2_IP, MIB2_ICMP, MIB2_TCP, MIB2_UDP], seq=6, source=(2 << 24) | 1),
            counter_sample(
                [VIRT_NODE, VIRT_CPU, VIRT_MEMORY, VIRT_DISK_IO, VIRT_NET_IO], seq=7, source=(3 << 24) | 9
            ),
        ]
    )


def test_host_counter_structures_are_decoded_into_counter_documents():
    result = decode_one(host_counter_datagram())
    assert result.errors == [] and result.stats.get("sflow_unknown_records", 0) == 0
    physical, mib2, virtual = (d["sflow"]["counters"] for d in result.documents)
    assert {d["event"]["action"] for d in result.documents} == {"sflow_counter_sample"}
    assert physical["host_adapters"] == [
        {"if_index": 3, "mac_addresses": ["02:00:00:00:00:01", "02:00:00:00:00:02"]},
        {"if_index": 0, "mac_addresses": []},
    ]
    assert physical["host_parent"] == {"container_type": 2, "container_index": 7}
    assert physical["host_disk_io"] == {
        "disk_total": 2**41, "disk_free": 2**40, "part_max_used": 4512, "reads": 10, "bytes_read": 2**33,
        "read_time": 11, "writes": 12, "bytes_written": 2**34, "write_time": 13,
    }  # fmt: skip
    assert physical["host_net_io"] == {
        "bytes_in": 2**35, "pkts_in": 1, "errs_in": 2, "drops_in": 3,
        "bytes_out": 2**36, "pkts_out": 4, "errs_out": 5, "drops_out": 6,
    }  # fmt: skip
    assert mib2["mib2_ip_group"]["ip_forwarding"] == 100 and mib2["mib2_ip_group"]["ip_frag_creates"] == 118
    assert len(mib2["mib2_ip_group"]) == 19
    assert mib2["mib2_icmp_group"]["icmp_in_msgs"] == 200
    assert mib2["mib2_icmp_group"]["icmp_out_addr_mask_reps"] == 224 and len(mib2["mib2_icmp_group"]) == 25
    assert mib2["mib2_tcp_group"]["tcp_max_conn"] == -1  # MIB-II: -1 when the limit is dynamic
    assert mib2["mib2_tcp_group"]["tcp_in_csum_errors"] == 310 and len(mib2["mib2_tcp_group"]) == 15
    assert mib2["mib2_udp_group"] == {
        "udp_in_datagrams": 400, "udp_no_ports": 401, "udp_in_errors": 402, "udp_out_datagrams": 403,
        "udp_rcvbuf_errors": 404, "udp_sndbuf_errors": 405, "udp_in_csum_errors": 406,
    }  # fmt: skip
    assert virtual["virt_node"] == {
        "mhz": 2400, "cpus": 8, "memory": 2**35, "memory_free": 2**33, "num_domains": 3,
    }  # fmt: skip
    assert virtual["virt_cpu"] == {"state": 1, "cpu_time": 123456, "nr_virt_cpu": 2}
    assert virtual["virt_memory"] == {"memory": 2**31, "max_memory": 2**32}
    assert virtual["virt_disk_io"] == {
        "capacity": 2**36, "allocation": 2**35, "available": 2**34, "rd_req": 7, "rd_bytes": 2**20,
        "wr_req": 8, "wr_bytes": 2**21, "errs": 9,
    }  # fmt: skip
    assert virtual["virt_net_io"]["bytes_out"] == 2**31 and virtual["virt_net_io"]["drops_out"] == 16
    assert result.stats["records.sflow_counter_sample"] == 3


def test_unknown_disk_percentage_is_left_out_and_short_host_records_are_skipped_alone():
    unknown = record(2005, struct.pack("!QQiIQIIQI", 1, 1, -1, 0, 0, 0, 0, 0, 0))
    short = record(2006, struct.pack("!QI", 1, 2))
    result = decode_one(datagram([counter_sample([unknown, short, HOST_PARENT])]))
    counters = result.documents[0]["sflow"]["counters"]
    assert "part_max_used" not in counters["host_disk_io"]  # -1: unknown, per the spec
    assert "host_net_io" not in counters and counters["host_parent"]["container_index"] == 7
    assert [reason for reason, _ in result.errors] == ["bad_record_length"]


def test_counter_formats_still_unknown_are_counted_by_format():
    # a real agent's HTTP counters (sflow.org's 2201, in two of its samples): a format flowsink does not decode
    result = decode_one((LOGSTASH_SFLOW / "sflow_counters_sample.dat").read_bytes())
    assert result.stats["sflow_unknown_counter_format.0:2201"] == 2
    vendor = record(3, struct.pack("!II", 1, 2), enterprise=4413)
    result = decode_one(datagram([counter_sample([generic_counters(), vendor, vendor])]))
    assert result.stats["sflow_unknown_counter_format.4413:3"] == 2
    assert result.stats["sflow_unknown_records"] == 2
    assert result.documents[0]["sflow"]["counters"]["interface"]["if_index"] == 3


def test_record_with_bad_inner_length_is_skipped_alone():
    short_generic = record(1, b"\0" * 40)  # a generic interface record must be 88 bytes
    payload = datagram([counter_sample([short_generic, record(1005, xdr_opaque(b"eth0"))])])
    result = decode_one(payload)
    assert [reason for reason, _ in result.errors] == ["bad_record_length"]
    (doc,) = result.documents
    assert doc["sflow"]["counters"] == {"port_name": "eth0"}


# --- identity, sequences, errors ---------------------------------------------------------------------------------


def test_ids_are_deterministic_and_distinct():
    payload = datagram(
        [flow_sample([raw_header(tcp_frame())], seq=1), flow_sample([raw_header(tcp_frame())], seq=2)]
    )
    first = [d["_id"] for d in decode_one(payload).documents]
    again = [d["_id"] for d in decode_one(payload).documents]
    other = [
        d["_id"] for d in decode_one(datagram([flow_sample([raw_header(tcp_frame())])], seq=2)).documents
    ]
    from_elsewhere = [d["_id"] for d in decode_one(payload, exporter="192.0.2.99").documents]
    assert first == again
    assert len(set(first)) == 2
    assert not set(first) & set(other)
    assert not set(first) & set(from_elsewhere)


def test_sequence_gaps_lost_samples_and_restarts():
    decoder = SflowDecoder(DecoderSettings(sequence_window=2))
    frame = raw_header(tcp_frame())
    stats = []
    for dg_seq, sample_seq in ((1, 1), (2, 2), (5, 6), (6, 7), (7, 8), (8, 9)):
        stats.append(
            decode_one(
                datagram([flow_sample([frame], seq=sample_seq)], seq=dg_seq, uptime=1000 * dg_seq), decoder
            ).stats
        )
    assert sum(s["lost_records"] for s in stats) == 3  # samples 3, 4, 5
    assert sum(s["sequence_gaps"] for s in stats) == 1
    assert sum(s["sflow_lost_datagrams"] for s in stats) == 2  # datagrams 3, 4
    restarted = decode_one(datagram([flow_sample([frame], seq=1)], seq=1, uptime=10), decoder).stats
    assert restarted["sequence_restarts"] == 1
    assert restarted["lost_records"] == 0


def test_agent_restart_starts_sample_sequences_over():
    decoder = SflowDecoder(DecoderSettings())  # default window: a jump back of 500 alone would look reordered
    frame = raw_header(tcp_frame())
    for number in range(500, 503):
        decode_one(
            datagram([flow_sample([frame], seq=number)], seq=number, uptime=10_000_000 + number), decoder
        )
    # the agent restarts (uptime back to 5 s): datagram and sample numbers start at 1 again, and samples 3
    # and 4 are lost; without the restart the new numbers would look like late copies of old ones
    stats = [
        decode_one(
            datagram([flow_sample([frame], seq=sample)], seq=number, uptime=5000 + number), decoder
        ).stats
        for number, sample in ((1, 1), (2, 2), (3, 5))
    ]
    assert stats[0]["sequence_restarts"] == 1
    assert decoder.flush_sequences().stats["lost_records"] == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\0\0\0\x05\0\0", "truncated"),
        (b"", "unknown_version"),
        (struct.pack("!II", 4, 1) + b"\0" * 24, "unknown_version"),
        (struct.pack("!II", 5, 7) + b"\0" * 24, "bad_address_type"),
        (datagram([flow_sample([raw_header(tcp_frame())])])[:-10], "truncated"),
        (
            struct.pack("!I", 5) + xdr_address("10.0.0.1") + struct.pack("!IIII", 0, 1, 1, 100000),
            "too_many_samples",
        ),
    ],
)
def test_bad_datagrams_are_rejected_with_a_reason_and_later_ones_decode(payload, reason):
    decoder = FlowDecoder(DecoderSettings())
    bad = decoder.decode(payload, EXPORTER, ARRIVAL_NS)
    assert reason in [r for r, _ in bad.errors]
    good = decoder.decode(datagram([flow_sample([raw_header(tcp_frame())])], seq=99), EXPORTER, ARRIVAL_NS)
    assert good.errors == []
    assert len(good.documents) == 1


def test_samples_before_a_broken_one_are_kept():
    good = flow_sample([raw_header(tcp_frame())])
    broken = struct.pack("!II", 1, 4000) + b"\0" * 16  # claims 4000 bytes
    result = decode_one(datagram([good, broken]))
    assert len(result.documents) == 1
    assert [r for r, _ in result.errors] == ["truncated"]
    assert result.stats["records.sflow_flow_sample"] == 1  # what is kept is counted


def test_facade_dispatches_sflow():
    result = FlowDecoder(DecoderSettings()).decode(
        datagram([flow_sample([raw_header(tcp_frame())])]), EXPORTER, 1
    )
    assert result.protocol == "sflow"
    assert result.documents[0]["event"]["action"] == "sflow_flow_sample"


def _fast_path_inputs() -> list[bytes]:
    import random
    from pathlib import Path

    rng = random.Random(5)
    frames = [
        tcp_frame(),
        bytes(
            Ether()
            / Dot1Q(vlan=77, prio=3)
            / IP(src="10.0.0.9", dst="10.0.0.10")
            / UDP(sport=5, dport=53)
            / b"q"
        ),
        bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2", fl=5) / TCP(sport=1, dport=2, flags="S")),
        bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=7, dport=8) / b"zz"),
        bytes(
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / TCP()
        ),  # general path
    ]
    payloads = []
    for number, frame in enumerate(frames):
        for records in (
            [raw_header(frame)],
            [raw_header(frame), switch_record(1, 2, 3, 4)],
            [switch_record(5, 6, 7, 8), raw_header(frame[:40])],
        ):
            payloads.append(
                datagram(
                    [
                        flow_sample(records, seq=number, rate=number * 50, source=3 + number % 2),
                        flow_sample(records, input_if=0x3FFFFFFF),
                    ],
                    seq=number,
                )
            )
    fixtures = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
    payloads += [p.read_bytes() for p in sorted(fixtures.glob("telegraf/sflow_*/*.bin"))]
    payloads += [p.read_bytes() for p in sorted(fixtures.glob("logstash-codec-sflow/*s*.dat"))]
    mutated = []
    for payload in payloads:
        for _ in range(40):
            data = bytearray(payload)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            mutated.append(bytes(data))
    return payloads + mutated


def test_fast_path_builds_exactly_what_the_general_path_builds(monkeypatch):
    from flowsink.normalize import sflow as normalize_sflow

    taken = []
    original = normalize_sflow.common_flow_document
    monkeypatch.setattr(
        normalize_sflow, "common_flow_document", lambda *args: taken.append(1) or original(*args)
    )
    fast = SflowDecoder(DecoderSettings())
    fast.extension = None  # the Python fast path; test_decode_fast_sflow.py compares the C one
    general = SflowDecoder(DecoderSettings())
    general.fast_path = False
    common = 0
    for payload in _fast_path_inputs():
        ours, reference = (
            fast.decode(payload, EXPORTER, ARRIVAL_NS),
            general.decode(payload, EXPORTER, ARRIVAL_NS),
        )
        assert ours.documents == reference.documents
        assert (ours.errors, ours.stats) == (reference.errors, reference.stats)
        common += len(ours.documents)
    assert common > 1000
    assert len(taken) > 300  # the fast path did build many of them
