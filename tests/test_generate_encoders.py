"""The generators' encoders against independent decoders: the netflow PyPI package (v5, v9, IPFIX) and tshark
(IPFIX with variable-length and enterprise fields, sFlow v5), plus flowsink's own decoders."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from netflow.ipfix import IPFIXExportPacket
from netflow.v5 import V5ExportPacket
from netflow.v9 import V9ExportPacket

from flowsink.generate.ipfix import IpfixEncoder, site_tag, tenant_id, varlen
from flowsink.generate.manifest import canonical_key
from flowsink.generate.model import TrafficModel, TrafficSettings, parse_protocol_mix
from flowsink.generate.netflow_v5 import NetflowV5Encoder
from flowsink.generate.netflow_v9 import INTERFACES, NetflowV9Encoder, interface_name
from flowsink.generate.pcap import Datagram, write_pcap
from flowsink.generate.sender import malformed_datagram
from flowsink.generate.sflow import PacketSampler, SflowEncoder

NOW_MS = 1_790_000_000_000
BOOT_MS = NOW_MS - 3_600_000
MIX = {"tcp": 0.6, "udp": 0.3, "icmp": 0.1}


def model(seed: int = 7, ipv6_share: float = 0.3) -> TrafficModel:
    return TrafficModel(TrafficSettings(seed=seed, ipv6_share=ipv6_share, protocol_mix=MIX))


def encode_all(encoder, records, now_ms: int = NOW_MS) -> list[bytes]:
    payloads, done = [], 0
    while done < len(records):
        payload, taken = encoder.pack(records[done:], now_ms)
        payloads.append(payload)
        done += taken
    return payloads


def ip_of(value) -> str:
    return str(ipaddress.ip_address(value))


def test_model_is_deterministic_and_heavy_tailed():
    first, second = model(seed=3).flows(5000, NOW_MS), model(seed=3).flows(5000, NOW_MS)
    assert [(f.src, f.dst, f.src_port, f.bytes) for f in first] == [
        (f.src, f.dst, f.src_port, f.bytes) for f in second
    ]
    packets = np.array([f.packets for f in first])
    bytes_ = np.sort(np.array([f.bytes for f in first]))[::-1]
    assert np.median(packets) <= 2  # many small flows
    assert bytes_[: len(bytes_) // 100].sum() > 0.25 * bytes_.sum()  # the top 1% carry a large share
    talkers: dict[str, int] = {}
    for f in first:
        talkers[f.src] = talkers.get(f.src, 0) + 1
    top = sorted(talkers.values(), reverse=True)
    assert top[0] > 20 * np.median(top)  # a few top talkers
    ports = [f.dst_port for f in first if f.protocol == 6] + [f.src_port for f in first if f.protocol == 6]
    assert ports.count(443) > ports.count(22) > 0  # HTTPS dominates, SSH is there


def test_protocol_mix_parsing():
    assert parse_protocol_mix("tcp=3,udp=1") == {"tcp": 0.75, "udp": 0.25}
    with pytest.raises(ValueError):
        parse_protocol_mix("sctp=1")


def test_v5_round_trip_through_netflow_package():
    flows = model(ipv6_share=0).flows(100, NOW_MS)
    encoder = NetflowV5Encoder(engine_id=9, boot_ms=BOOT_MS)
    payloads = encode_all(encoder, flows)
    assert len(payloads) == 4  # 30 + 30 + 30 + 10
    decoded, sequences = [], []
    for payload in payloads:
        packet = V5ExportPacket(payload)
        sequences.append(packet.header.sequence)
        assert packet.header.engine_id == 9
        decoded += [r.data for r in packet.flows]
    assert sequences == [0, 30, 60, 90]
    for flow, rec in zip(flows, decoded, strict=True):
        assert (ip_of(rec["IPV4_SRC_ADDR"]), ip_of(rec["IPV4_DST_ADDR"])) == (flow.src, flow.dst)
        assert (rec["SRC_PORT"], rec["DST_PORT"], rec["PROTO"]) == (
            flow.src_port,
            flow.dst_port,
            flow.protocol,
        )
        assert (rec["IN_OCTETS"], rec["IN_PACKETS"]) == (flow.bytes, flow.packets)
        assert (
            rec["FIRST_SWITCHED"] == flow.start_ms - BOOT_MS and rec["LAST_SWITCHED"] == flow.end_ms - BOOT_MS
        )


def test_v9_round_trip_through_netflow_package_with_options():
    flows = model().flows(200, NOW_MS)
    encoder = NetflowV9Encoder(source_id=42, boot_ms=BOOT_MS, sampling_interval=4)
    payloads = encode_all(encoder, flows)
    templates: dict = {}
    decoded, options = [], []
    for number, payload in enumerate(payloads):
        packet = V9ExportPacket(payload, templates)
        assert packet.header.sequence == number and packet.header.source_id == 42
        decoded += [r.data for r in packet.flows]
        options += packet.options
    assert len(decoded) == len(flows)
    for flow, rec in zip(
        _by_version(flows, NetflowV9Encoder(42, BOOT_MS, sampling_interval=4)), decoded, strict=True
    ):
        src = rec.get("IPV4_SRC_ADDR") or rec.get("IPV6_SRC_ADDR")
        dst = rec.get("IPV4_DST_ADDR") or rec.get("IPV6_DST_ADDR")
        assert (ip_of(src), ip_of(dst)) == (flow.src, flow.dst)
        assert (rec["L4_SRC_PORT"], rec["L4_DST_PORT"], rec["PROTOCOL"]) == (
            flow.src_port,
            flow.dst_port,
            flow.protocol,
        )
        assert (rec["IN_BYTES"], rec["IN_PKTS"]) == (flow.bytes, flow.packets)
        assert rec["FIRST_SWITCHED"] == flow.start_ms - BOOT_MS
    names = {
        o.scopes["Interface"]: o.data["IF_NAME"].to_bytes(16, "big").rstrip(b"\0").decode()
        for o in options
        if "IF_NAME" in o.data
    }
    assert names == {i: interface_name(i) for i in INTERFACES}
    assert [o.data["SAMPLING_INTERVAL"] for o in options if "SAMPLING_INTERVAL" in o.data] == [4]
    assert encoder.options_records == len(options)


def _by_version(flows, encoder):
    """Encoders put IPv4 then IPv6 records of one datagram in two sets; the same order, datagram by datagram
    (``encoder``: a fresh one configured like the encoder under test, so datagram boundaries match)."""
    ordered, done = [], 0
    while done < len(flows):
        _, taken = encoder.pack(flows[done:], NOW_MS)
        chunk = flows[done : done + taken]
        ordered += [f for f in chunk if f.ip_version == 4] + [f for f in chunk if f.ip_version == 6]
        done += taken
    return ordered


def test_ipfix_round_trip_through_netflow_package():
    flows = model().flows(200, NOW_MS)
    encoder = IpfixEncoder(observation_domain=77, extras=False, options=False)
    payloads = encode_all(encoder, flows)
    templates: dict = {}
    decoded, expected_sequence = [], 0
    for payload in payloads:
        packet = IPFIXExportPacket(payload, templates)
        assert packet.header.sequence_number == expected_sequence
        assert packet.header.length == len(payload)
        expected_sequence += len(packet.flows)
        decoded += [r.data for r in packet.flows]
    assert len(decoded) == len(flows)
    for flow, rec in zip(
        _by_version(flows, IpfixEncoder(77, extras=False, options=False)), decoded, strict=True
    ):
        src = rec.get("sourceIPv4Address") or rec.get("sourceIPv6Address")
        assert ip_of(src) == flow.src
        assert (rec["octetDeltaCount"], rec["packetDeltaCount"]) == (flow.bytes, flow.packets)
        assert (rec["flowStartMilliseconds"], rec["flowEndMilliseconds"]) == (flow.start_ms, flow.end_ms)


def test_varlen_encoding():
    assert varlen(b"abc") == b"\x03abc"
    assert varlen(b"x" * 300)[:3] == b"\xff\x01\x2c"


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def tshark_records(pcap: Path, decode_as: str | None, marker: str) -> list[dict]:
    """Every dissected record (a dict holding ``marker``) of a capture, duplicate keys kept as lists."""
    command = ["tshark", "-r", str(pcap), "-T", "json"]
    if decode_as:
        command += ["-d", decode_as]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)

    def keep_duplicates(pairs):
        """tshark repeats keys (two enterprise fields, samples of one sequence number on two sources):
        keep every one, in order, as KEY, KEY#2, KEY#3..."""
        out: dict = {}
        for key, value in pairs:
            name, n = key, 1
            while name in out:
                n += 1
                name = f"{key}#{n}"
            out[name] = value
        return out

    found: list[dict] = []

    def walk(node):
        if isinstance(node, dict):
            if marker in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(done.stdout, object_pairs_hook=keep_duplicates))
    return found


@needs_tshark
def test_ipfix_with_variable_length_enterprise_and_options_through_tshark(tmp_path):
    flows = model().flows(60, NOW_MS)
    encoder = IpfixEncoder(observation_domain=5, sampling_interval=8)
    payloads = encode_all(encoder, flows)
    pcap = tmp_path / "ipfix.pcap"
    write_pcap(
        pcap, [Datagram(1.0 + i, "127.0.0.11", "127.0.0.1", 40000, 4739, p) for i, p in enumerate(payloads)]
    )
    records = tshark_records(pcap, "udp.port==4739,cflow", "cflow.octets")
    assert len(records) == len(flows)
    for flow, rec in zip(_by_version(flows, IpfixEncoder(5, sampling_interval=8)), records, strict=True):
        assert rec.get("cflow.srcaddr", rec.get("cflow.srcaddrv6")) == flow.src
        assert (int(rec["cflow.octets"]), int(rec["cflow.packets"])) == (flow.bytes, flow.packets)
        assert rec["cflow.appl_name"] == flow.app_name
        # the two enterprise fields: the tag (variable length) and the tenant id
        tag, tenant = rec["cflow.enterprise_private_entry"], rec["cflow.enterprise_private_entry#2"]
        assert bytes.fromhex(tag.replace(":", "")).decode() == site_tag(flow)
        assert int(tenant.replace(":", ""), 16) == tenant_id(flow)
    names = tshark_records(pcap, "udp.port==4739,cflow", "cflow.if_name")
    assert {n["cflow.if_name"] for n in names} == {interface_name(i) for i in INTERFACES}
    sampling = tshark_records(pcap, "udp.port==4739,cflow", "cflow.sampling_interval")
    assert [s["cflow.sampling_interval"] for s in sampling] == ["8"]


@needs_tshark
def test_sflow_round_trip_through_tshark(tmp_path):
    m = model()
    samples = PacketSampler(m.rng, 16).sample(m, m.draw(400, NOW_MS))
    encoder = SflowEncoder("127.0.0.12", BOOT_MS, sampling_rate=16, counter_interval_ms=1000)
    payloads = encode_all(encoder, samples)
    pcap = tmp_path / "sflow.pcap"
    write_pcap(
        pcap, [Datagram(1.0 + i, "127.0.0.12", "127.0.0.1", 40000, 6343, p) for i, p in enumerate(payloads)]
    )
    records = tshark_records(pcap, None, "sflow_245.header.frame_length")
    assert len(records) == len(samples) > 20
    for sample, rec in zip(samples, records, strict=True):
        flow = sample.flow
        assert int(rec["sflow_245.header.frame_length"]) == sample.frame_length
        inner = rec["sflow_245.header_tree"]
        ip = inner.get("ip") or inner.get("ipv6")
        assert ip.get("ip.src", ip.get("ipv6.src")) == flow.src
        assert ip.get("ip.dst", ip.get("ipv6.dst")) == flow.dst
        transport = inner.get("tcp") or inner.get("udp")
        if transport is not None:
            prefix = "tcp" if "tcp" in inner else "udp"
            assert (int(transport[f"{prefix}.srcport"]), int(transport[f"{prefix}.dstport"])) == (
                flow.src_port,
                flow.dst_port,
            )
    counters = tshark_records(pcap, None, "sflow_245.ifindex")
    assert len(counters) == encoder.counter_samples == 2


def test_round_trip_through_flowsink_decoders():
    """Every protocol, every record: the 5-tuple and the (renormalised) counts flowsink's decoders report."""
    from flowsink.decode import FlowDecoder

    m = model()
    cases = {
        "v5": (NetflowV5Encoder(1, BOOT_MS), [f for f in m.flows(300, NOW_MS) if f.ip_version == 4]),
        "v9": (NetflowV9Encoder(2, BOOT_MS), m.flows(300, NOW_MS)),
        "ipfix": (IpfixEncoder(3), m.flows(300, NOW_MS)),
        "sflow": (SflowEncoder("127.0.0.13", BOOT_MS, sampling_rate=32), None),
    }
    sampler = PacketSampler(m.rng, 32)
    for name, (encoder, records) in cases.items():
        if records is None:
            records = sampler.sample(m, m.draw(2000, NOW_MS))
        decoder = FlowDecoder()
        docs = []
        for payload in encode_all(encoder, records):
            result = decoder.decode(payload, "127.0.0.13", time.time_ns())
            if any(reason == "unsupported_protocol" for reason, _ in result.errors):
                pytest.skip(f"flowsink has no {name} decoder yet")
            assert not result.errors, (name, result.errors)
            docs += [d for d in result.documents if d["event"]["action"].endswith(("_flow", "_flow_sample"))]
        expected = sorted(_expected_row(r) for r in records)
        found = sorted(
            (
                *canonical_key(
                    d["source"]["ip"],
                    d["destination"]["ip"],
                    d["source"].get("port"),
                    d["destination"].get("port"),
                    int(d["network"]["iana_number"]),
                ),
                d["network"]["bytes"],
                d["network"]["packets"],
            )
            for d in docs
        )
        assert found == expected, name


def _expected_row(record):
    if hasattr(record, "frame_length"):
        f = record.flow
        return (
            *canonical_key(f.src, f.dst, f.src_port, f.dst_port, f.protocol),
            record.frame_length * 32,
            32,
        )
    return (
        *canonical_key(record.src, record.dst, record.src_port, record.dst_port, record.protocol),
        record.bytes,
        record.packets,
    )


@pytest.mark.parametrize("protocol", ["v5", "v9", "ipfix", "sflow"])
def test_malformed_datagrams_are_rejected_and_never_look_like_flows(protocol):
    from flowsink.decode import FlowDecoder

    rng = np.random.default_rng(5)
    decoder = FlowDecoder()
    kinds = set()
    for _ in range(60):
        payload, kind = malformed_datagram(protocol, rng)
        kinds.add(kind)
        result = decoder.decode(payload, "127.0.0.11", time.time_ns())
        assert result.documents == [] and result.errors, (kind, payload[:16])
    assert kinds == {"empty", "unknown_version", "truncated_header"}


@pytest.mark.parametrize("protocol", ["v5", "v9", "ipfix"])
def test_announced_sampling_interval_is_what_the_manifest_multiplies_by(protocol):
    """The manifest counts bytes x N for --sampling-interval N: flowsink's decoders must renormalise the same."""
    from flowsink.decode import FlowDecoder

    flows = model(ipv6_share=0).flows(40, NOW_MS)
    encoder = {
        "v5": NetflowV5Encoder(1, BOOT_MS, sampling_interval=8),
        "v9": NetflowV9Encoder(1, BOOT_MS, sampling_interval=8),
        "ipfix": IpfixEncoder(1, sampling_interval=8),
    }[protocol]
    decoder = FlowDecoder()
    docs = []
    for payload in encode_all(encoder, flows):
        docs += [
            d
            for d in decoder.decode(payload, "127.0.0.11", time.time_ns()).documents
            if d["event"]["action"].endswith("_flow")
        ]
    assert sorted((d["network"]["bytes"], d["network"]["packets"]) for d in docs) == sorted(
        (8 * f.bytes, 8 * f.packets) for f in flows
    )
