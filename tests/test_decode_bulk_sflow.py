"""sFlow bulk lines written in C (flowsink.native, sflow.c) equal flowsink.bulk's encoding of the dict documents.

tests/test_decode_bulk.py holds every decoder to the pure-Python reference on a shared corpus; this file aims at
the sFlow writer's own corners: odd values, every BulkFormat shape, samples the C path leaves to Python in the
middle of a datagram, datagram values the writer declines, and the entry points' argument checks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from flowsink.bulk import BulkFormat, encode_document, split_encoded
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.decode import sflow as sflow_module
from support.enrichment import enricher
from test_decode_fast_sflow import _fixture_payloads, _generated_payloads, _mutations, _record

ARRIVAL_NS = 1_700_000_000_123_456_789
FORMATS = [
    BulkFormat(),
    BulkFormat('fs"odd\\prefix', "index", False),
    BulkFormat("é\x01\t-x", "create", True),
]

needs_extension = pytest.mark.skipif(sflow_module.EXTENSION is None, reason="the C extension is not built")


@contextmanager
def python_only() -> Iterator[None]:
    """Decoders made inside take the pure-Python sFlow path (documents, then flowsink.bulk)."""
    saved = sflow_module.EXTENSION
    sflow_module.EXTENSION = None
    try:
        yield
    finally:
        sflow_module.EXTENSION = saved


def _lines(decoder: FlowDecoder, payload: bytes, exporter: str = "192.0.2.7", arrival_ns: int = ARRIVAL_NS):
    result = decoder.decode(payload, exporter, arrival_ns)
    assert not result.documents
    return sorted(result.encoded), result.errors, dict(result.stats)


def _assert_equal_to_reference(
    payloads: list[bytes],
    fmt: BulkFormat,
    renormalize: bool = True,
    arrival_ns: int = ARRIVAL_NS,
    enrichment: str | None = None,
) -> FlowDecoder:
    """Per datagram, the C path's lines, errors and counters equal the pure-Python path's; returns the C decoder."""
    ours = FlowDecoder(DecoderSettings(bulk=fmt, renormalize=renormalize, enricher=enricher(enrichment)))
    with python_only():
        reference = FlowDecoder(
            DecoderSettings(bulk=fmt, renormalize=renormalize, enricher=enricher(enrichment))
        )
        reference._decoder_for("sflow")
    for n, payload in enumerate(payloads):
        exporter = f"198.51.100.{n % 3}"
        assert _lines(ours, payload, exporter, arrival_ns) == _lines(
            reference, payload, exporter, arrival_ns
        ), n
    return ours


def _common_sample(
    sequence: int,
    rate: int = 512,
    frame_length: int = 64,
    vlan: bool = False,
    icmp: bool = False,
    fragment: bool = False,
) -> bytes:
    """A flow sample of an Ethernet/IPv4/UDP (or ICMP) header; ``fragment``: a non-first fragment, whose sample
    the C path leaves to Python."""
    l4 = struct.pack("!BBHI", 8, 0, 0, 0) if icmp else struct.pack("!HHHH", 5353, 53, 8, 0)
    l3 = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        sequence & 0xFFFF,
        185 if fragment else 0,
        64,
        1 if icmp else 17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([192, 0, 2, sequence & 0xFF]),
    )
    tag = struct.pack("!HH", 0x8100, 0x2000 | 42) if vlan else b""
    frame = bytes(range(1, 13)) + tag + struct.pack("!H", 0x0800) + l3 + l4
    frame += b"\0" * (-len(frame) % 4)
    raw = _record(1, struct.pack("!IIII", 1, frame_length, 4, len(frame)) + frame)
    body = struct.pack("!IIIIIIII", sequence, 3, rate, 0xFFFFFFFF, 0xFFFFFFFF, 3, 4, 1) + raw
    return _record(1, body)


def _datagram(samples: list[bytes], sequence: int = 1) -> bytes:
    header = struct.pack("!II4sIIII", 5, 1, bytes([10, 0, 0, 1]), 0, sequence, 60_000, len(samples))
    return header + b"".join(samples)


@needs_extension
@pytest.mark.parametrize("fmt", FORMATS, ids=["create", "index-no-ids", "escaped-prefix"])
@pytest.mark.parametrize("enrichment", [None, "all", "exporters-only", "geoip-only"])
def test_generated_fixture_and_mutated_datagrams_equal_the_reference(
    fmt: BulkFormat, enrichment: str | None
) -> None:
    payloads = _fixture_payloads() + _generated_payloads(300) + _mutations(_generated_payloads(60, seed=5), 6)
    decoder = _assert_equal_to_reference(payloads, fmt, enrichment=enrichment)
    if enrichment in ("all", "geoip-only"):
        # the samples only the Python path decodes (a few per hundred datagrams here, hardly any in real
        # exports) carry geo.location's floats, which C's generic encoder leaves to orjson: identical bytes,
        # written by the reference
        assert decoder.reference_encoded < 0.05 * len(payloads) * 6
    else:
        assert decoder.reference_encoded == 0  # every document written in C: flow samples and the rest alike


@needs_extension
def test_renormalisation_off_equals_the_reference() -> None:
    _assert_equal_to_reference(_generated_payloads(120, seed=29), FORMATS[0], renormalize=False)


@needs_extension
def test_odd_values_equal_the_reference() -> None:
    """Rates of 0 and 2^32-1 times the largest frame length, a VLAN tag, every 32-bit counter at its maximum."""
    samples = [
        _common_sample(1, rate=0),
        _common_sample(2, rate=0xFFFFFFFF, frame_length=0xFFFFFFFF),
        _common_sample(0xFFFFFFFF, rate=1, vlan=True),
    ]
    payloads = [_datagram(samples), _datagram(samples, sequence=0xFFFFFFFF)]
    for fmt in FORMATS:
        _assert_equal_to_reference(payloads, fmt)
    line = (
        FlowDecoder(DecoderSettings(bulk=FORMATS[0])).decode(payloads[0], "192.0.2.7", ARRIVAL_NS).encoded[1]
    )
    meta, source = split_encoded(line)
    assert orjson.loads(source)["network"]["bytes"] == 0xFFFFFFFF * 0xFFFFFFFF
    assert meta["_index"] == "flowsink-flows-2023.11.14"


def _record_flow_samples(decoder) -> list:
    """Make ``decoder``'s sFlow decoder record what each ``sflow_samples`` call of the extension returned."""
    calls: list = []
    original = sflow_module.EXTENSION

    class Recording:
        INTERFACE_VERSION = original.INTERFACE_VERSION
        encode_documents = staticmethod(original.encode_documents)

        @staticmethod
        def sflow_samples(*args):
            calls.append(original.sflow_samples(*args))
            return calls[-1]

    decoder._decoder_for("sflow").extension = Recording
    return calls


@needs_extension
def test_a_sample_left_to_python_mid_datagram_keeps_the_others_in_c() -> None:
    payload = _datagram([_common_sample(1), _common_sample(2, fragment=True), _common_sample(3)])
    decoder = _assert_equal_to_reference([payload], FORMATS[0])
    calls = _record_flow_samples(decoder)
    encoded = decoder.decode(payload, "192.0.2.8", ARRIVAL_NS).encoded
    # C wrote sample 0, stopped at the fragment's sample, resumed with sample 2; the fragment's, decoded in Python,
    # was written in between: the lines keep the samples' order
    assert [call[1:3] for call in calls] == [(1, 1), (3, 1)]
    ids = [split_encoded(line)[0]["_id"] for line in encoded]
    assert [i.rsplit("-", 1)[1] for i in ids] == ["0", "1", "2"]
    assert orjson.loads(split_encoded(encoded[1])[1])["sflow"]["fragment_offset"] == 185
    assert decoder.reference_encoded == 0


@needs_extension
@pytest.mark.parametrize("fmt", FORMATS, ids=["create", "index-no-ids", "escaped-prefix"])
def test_host_counter_samples_are_declined_by_the_c_writer_and_equal_the_reference(fmt: BulkFormat) -> None:
    from test_decode_sflow import host_counter_datagram

    payload = host_counter_datagram()
    decoder = _assert_equal_to_reference([payload], fmt)
    calls = _record_flow_samples(decoder)
    encoded = decoder.decode(payload, "192.0.2.8", ARRIVAL_NS).encoded
    # the sample writer stopped at each of the three host counter samples: Python decoded every one
    assert [(call[1], call[2], call[3]) for call in calls] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    groups = [set(orjson.loads(split_encoded(line)[1])["sflow"]["counters"]) for line in encoded]
    assert groups == [
        {"host_adapters", "host_parent", "host_disk_io", "host_net_io"},
        {"mib2_ip_group", "mib2_icmp_group", "mib2_tcp_group", "mib2_udp_group"},
        {"virt_node", "virt_cpu", "virt_memory", "virt_disk_io", "virt_net_io"},
    ]


def _host_cpu_counters(sequence: int) -> bytes:
    """A counter sample with a host CPU record: its load averages are floats, which the C writer leaves alone."""
    cpu = _record(2003, struct.pack("!3f17I", 0.5, 0.25, 0.125, *range(17)))
    return _record(2, struct.pack("!III", sequence, 3, 1) + cpu)


@needs_extension
def test_documents_with_floats_go_to_the_reference_once_each() -> None:
    """Alternating float-bearing counter samples and flow samples: each counter document is tried in C once and
    then encoded by flowsink.bulk; the decode stays linear in the samples (a hostile datagram has 4096)."""
    samples = [sample for n in range(2048) for sample in (_host_cpu_counters(n + 1), _common_sample(n + 1))]
    payload = _datagram(samples)
    decoder = _assert_equal_to_reference([payload], FORMATS[0])
    assert decoder.reference_encoded == 2048
    calls = 0
    original = sflow_module.EXTENSION

    class Counting:
        INTERFACE_VERSION = original.INTERFACE_VERSION
        sflow_samples = staticmethod(original.sflow_samples)

        @staticmethod
        def encode_documents(documents, *args):
            nonlocal calls
            calls += len(documents)
            return original.encode_documents(documents, *args)

    decoder._decoder_for("sflow").extension = Counting
    assert len(decoder.decode(payload, "192.0.2.9", ARRIVAL_NS).encoded) == 4096
    assert calls == 2048


@needs_extension
def test_a_timestamp_without_a_four_digit_year_is_left_to_the_reference() -> None:
    """Past year 9999 the day in the index name is the reference's business: C declines, the facade encodes."""
    arrival = 253_402_300_800 * 10**9  # 10000-01-01
    payloads = [_datagram([_common_sample(1), _common_sample(2)])]
    decoder = _assert_equal_to_reference(payloads, FORMATS[0], arrival_ns=arrival)
    assert decoder.reference_encoded == 2


@needs_extension
def test_datagram_values_the_writer_declines_give_dicts() -> None:
    """A lone surrogate, a datagram field named like a sample's: the samples come back as document dicts."""
    flow_samples = sflow_module.EXTENSION.sflow_samples
    payload = _datagram([_common_sample(1)])
    context = ("2023-11-14T22:13:20.123Z", "p-", "tag", "10.0.0.1")
    head, keep_ids = FORMATS[0].c_format
    for id_prefix, fields in (("p\ud800-", {}), ("p-", {"vlan": 1}), ("p-", {"x": 1.5}), ("p-", {1: 2})):
        documents, encoded, runs = [], [], {}
        args = (payload, context[0], id_prefix, context[2], context[3], fields, True, 28, 0, 1)
        assert flow_samples(*args, documents, runs, encoded, head, keep_ids) == (len(payload), 1, 1, 0)
        assert encoded == [] and len(documents) == 1 and runs == {("flow", 0, 3): [1, 1]}
        expected: list = []
        flow_samples(*args, expected, {})
        assert documents == expected
    documents, encoded = [], []
    flow_samples(
        payload,
        *context,
        {"agent_address": "10.0.0.1"},
        True,
        28,
        0,
        1,
        documents,
        {},
        encoded,
        head,
        keep_ids,
    )
    assert documents == [] and len(encoded) == 1


def _documents() -> list:
    ts = "2024-02-29T23:59:59.999Z"
    return [
        {
            "_id": "a-0",
            "@timestamp": ts,
            "event": {"action": "sflow_counter_sample"},
            "sflow": {"counters": {"interface": {"if_index": 3}}, "x": [1, True, None, 'é\n\x7f"\\']},
        },
        {"_id": "a-1", "@timestamp": ts, "event": {"action": "sflow_flow_sample"}, "load": 0.5},
        {"@timestamp": ts, "event": {"action": "sflow_discarded_packet"}, "_index": "ignored", "n": -(2**63)},
        {"_id": 7, "@timestamp": ts, "event": {"action": "sflow_flow_sample"}},
        {"_id": "a-4", "@timestamp": "yesterday", "event": {"action": "sflow_flow_sample"}},
        {"_id": "a-5", "@timestamp": ts, "event": None},
        {"_id": "a-6", "@timestamp": ts, "event": {"action": "sflow_flow_sample"}, "big": 2**64},
        {"_id": "a-7", "@timestamp": ts, "event": {"action": "sflow_flow_sample"}, "text": "\udc80"},
        {"_id": "a-8", "@timestamp": ts, "event": {"action": "sflow_flow_sample"}, 8: "int key"},
        "not a dict",
    ]


@needs_extension
def test_encode_documents_writes_what_orjson_writes_and_leaves_the_rest() -> None:
    encode_documents = sflow_module.EXTENSION.encode_documents
    for fmt in FORMATS:
        documents, encoded = _documents(), []
        assert encode_documents(documents, encoded, *fmt.c_format) == 2
        written = _documents()
        assert encoded == [encode_document(written[0], fmt), encode_document(written[2], fmt)]
        assert documents == [d for n, d in enumerate(_documents()) if n not in (0, 2)]  # in order, untouched
    assert encoded[0].startswith(
        b'{"create":{"_index":"\xc3\xa9\\u0001\\t-x-meta-2024.02.29","_id":"a-0"}}\n'
    )
    with pytest.raises(TypeError):
        encode_documents((), [], b"", True)
    with pytest.raises(TypeError):
        encode_documents([], [], "head", True)


@needs_extension
def test_flow_samples_refuses_bad_bulk_arguments() -> None:
    flow_samples = sflow_module.EXTENSION.sflow_samples
    payload = _datagram([_common_sample(1)])
    args = (payload, "2023-11-14T22:13:20.123Z", "p-", "tag", "10.0.0.1", {}, True, 28, 0, 1, [], {})
    with pytest.raises(TypeError):
        flow_samples(*args, [], "not bytes", True)
    with pytest.raises(TypeError):
        flow_samples(*args, (), b"{", True)
    with pytest.raises(TypeError):
        flow_samples(*args, [], b"{")
    encoded: list[bytes] = []
    assert flow_samples(*args, encoded, b"", False) == (len(payload), 1, 1, 0)
    assert encoded[0].startswith(b'flows-2023.11.14"}}\n{"@timestamp"')


def test_without_the_extension_documents_are_left_to_the_facade() -> None:
    with python_only():
        decoder = FlowDecoder(DecoderSettings(bulk=FORMATS[0]))
        result = decoder.decode(_datagram([_common_sample(1), _common_sample(2)]), "192.0.2.7", ARRIVAL_NS)
    assert decoder.reference_encoded == 2 and len(result.encoded) == 2


def _frame(l3_and_l4: bytes, ethertype: int, tags: bytes = b"") -> bytes:
    frame = bytes(range(1, 13)) + tags + struct.pack("!H", ethertype) + l3_and_l4
    return frame + b"\0" * (-len(frame) % 4)


def _ipv6(next_header: int, rest: bytes) -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            0x6000_0000 | 12345,
            len(rest),
            next_header,
            64,
            b"\x20\x01" + bytes(13) + b"\x01",
            b"\x20\x01" + bytes(13) + b"\x02",
        )
        + rest
    )


def _flow(
    sequence: int,
    frame: bytes,
    input_if: int = 3,
    output_if: int = 4,
    expanded: bool = False,
    switch: bool = True,
    extra: tuple[bytes, ...] = (),
) -> bytes:
    records = [_record(1, struct.pack("!IIII", 1, 1500, 4, len(frame)) + frame)]
    if switch:
        records.append(_record(1001, struct.pack("!IIII", 10, 0, 20, 0)))
    records[1:1] = extra
    if expanded:
        head = struct.pack(
            "!IIIIIIIIIII",
            sequence,
            0,
            3,
            512,
            9999,
            0,
            input_if >> 30,
            input_if & 0x3FFFFFFF,
            output_if >> 30,
            output_if & 0x3FFFFFFF,
            len(records),
        )
        return _record(3, head + b"".join(records))
    head = struct.pack("!IIIIIIII", sequence, 3, 512, 9999, 0, input_if, output_if, len(records))
    return _record(1, head + b"".join(records))


def _counters(sequence: int, expanded: bool = False, port_name: bytes | None = None) -> bytes:
    interface = struct.pack("!IIQIIQIIIIIIQIIIIII", 3, 6, 10**10, 1, 3, 2**40, *range(6), 2**33, *range(6))
    ethernet = struct.pack("!13I", *range(100, 113))
    records = [_record(1, interface), _record(2, ethernet)]
    if port_name is not None:
        records.insert(
            0, _record(1005, struct.pack("!I", len(port_name)) + port_name + b"\0" * (-len(port_name) % 4))
        )
    if expanded:
        return _record(4, struct.pack("!IIII", sequence, 0, 3, len(records)) + b"".join(records))
    return _record(2, struct.pack("!III", sequence, 3, len(records)) + b"".join(records))


def _router(next_hop: bytes) -> bytes:
    address = struct.pack("!I", {0: 0, 4: 1, 16: 2}[len(next_hop)]) + next_hop
    return _record(1002, address + struct.pack("!II", 24, 16))


def _gateway(path: tuple[tuple[int, ...], ...], communities: tuple[int, ...] = (65000 << 16 | 1,)) -> bytes:
    body = struct.pack("!I4sIIII", 1, bytes([192, 0, 2, 1]), 65001, 65002, 65003, len(path))
    for segment in path:
        body += struct.pack(f"!II{len(segment)}I", 2, len(segment), *segment)
    body += struct.pack(f"!I{len(communities)}II", len(communities), *communities, 100)
    return _record(1003, body)


def _real_device_samples() -> list[bytes]:
    """The less common flow samples switches send, and their per-port counter samples."""
    udp = struct.pack("!HHHH", 5353, 53, 8, 0)
    icmp4 = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 1, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    )
    options = (
        struct.pack(
            "!BBHHHBBH4s4s", 0x46, 0, 32, 1, 0x4000, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        )
        + b"\x01\x01\x01\x00"
    )
    hop_by_hop_icmp6 = _ipv6(0, struct.pack("!BB6x", 58, 0) + struct.pack("!BBH", 143, 0, 0) + bytes(4))
    fragment_udp = _ipv6(44, struct.pack("!BBHI", 17, 0, 1, 7) + udp)
    routing_tcp = _ipv6(
        43, struct.pack("!BB6x", 6, 0) + struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 0x50, 0x12, 9, 0, 0)
    )
    return [
        _flow(1, _frame(_ipv6(17, udp), 0x86DD), output_if=0x80000002),  # a count of output interfaces
        _flow(2, _frame(hop_by_hop_icmp6, 0x86DD), output_if=0x80000002),
        _flow(3, _frame(icmp4 + struct.pack("!BBHI", 8, 0, 0, 0), 0x0800), output_if=0x3FFFFFFF),
        _flow(4, _frame(icmp4 + struct.pack("!BBHI", 3, 3, 0, 0), 0x0800), input_if=0x3FFFFFFF, output_if=0),
        _flow(5, _frame(options + udp, 0x0800), output_if=0x40000001),  # a discard reason
        _flow(6, _frame(fragment_udp, 0x86DD), output_if=0xC0000005),  # another format
        _flow(7, _frame(routing_tcp, 0x86DD), switch=False),
        _flow(8, _frame(options + udp, 0x0800, struct.pack("!HHHH", 0x88A8, 100, 0x8100, 0x2000 | 42))),
        _flow(9, _frame(options + udp, 0x0800, struct.pack("!HH", 0x9100, 7))),
        _flow(10, _frame(_ipv6(132, struct.pack("!HHI", 1, 2, 3)), 0x86DD), expanded=True),
        _flow(11, _frame(_ipv6(47, bytes(8)), 0x86DD), expanded=True, input_if=0x3FFFFFFF),
        _flow(
            12,
            _frame(options + udp, 0x0800),
            extra=(_router(bytes([10, 0, 0, 254])), _gateway(((65010, 65020), (), (65030,)))),
        ),
        _flow(
            13,
            _frame(_ipv6(17, udp), 0x86DD),
            extra=(_gateway((), ()), _router(b"\xfe\x80" + bytes(13) + b"\x01")),
        ),
        _flow(14, _frame(_ipv6(17, udp), 0x86DD), switch=False, extra=(_router(b""),)),
        _counters(1),
        _counters(2, expanded=True),
        _counters(3, port_name=b'Ethernet1/"49"\t'),
    ]


@needs_extension
def test_real_device_flow_and_counter_samples_are_written_in_c_and_equal_the_reference() -> None:
    samples = _real_device_samples()
    payloads = [_datagram(samples), _datagram(samples[::-1], sequence=2)]
    for fmt in FORMATS:
        decoder = _assert_equal_to_reference(payloads, fmt)
        assert decoder.reference_encoded == 0
    built = _record_flow_samples(decoder)
    result = decoder.decode(payloads[0], "192.0.2.8", ARRIVAL_NS)
    # one call wrote every sample
    assert [call[1:] for call in built] == [(len(samples), len(samples) - 3, 3)]
    sources = [orjson.loads(split_encoded(line)[1]) for line in result.encoded]
    assert sources[1]["sflow"]["ipv6_extension_headers"] == [0]
    assert (sources[1]["sflow"]["icmp_type"], sources[1]["network"]["transport"]) == (143, "ipv6-icmp")
    assert sources[3]["network"]["direction"] == "unknown" and "ingress" not in sources[3]["observer"]
    assert sources[7]["network"]["inner"] == {"vlan": {"id": "42"}} and sources[7]["sflow"]["vlans"] == [
        100,
        42,
    ]
    assert (sources[11]["source"]["as"], sources[11]["destination"]["as"]) == (
        {"number": 65002},
        {"number": 65030},
    )
    assert sources[11]["sflow"]["dst_as_path"] == [65010, 65020, 65030]
    assert (
        sources[12]["destination"]["as"] == {"number": 65001}
        and sources[12]["sflow"]["next_hop_address"] == "fe80::1"
    )
    assert sources[14]["sflow"]["counters"]["interface"]["if_oper_status"] == "up"
    assert split_encoded(result.encoded[14])[0]["_index"].endswith("-meta-2023.11.14")
    assert sources[16]["observer"]["ingress"]["interface"]["name"] == 'Ethernet1/"49"\t'


@needs_extension
def test_real_device_samples_as_dicts_are_left_to_python() -> None:
    """Without a BulkFormat the C path builds only the common flow sample's dict; the rest are Python's."""
    payload = _datagram(_real_device_samples())
    ours = FlowDecoder(DecoderSettings())
    with python_only():
        reference = FlowDecoder(DecoderSettings())
        reference._decoder_for("sflow")
    mine, theirs = (
        ours.decode(payload, "192.0.2.7", ARRIVAL_NS),
        reference.decode(payload, "192.0.2.7", ARRIVAL_NS),
    )
    assert [orjson.dumps(d) for d in mine.documents] == [orjson.dumps(d) for d in theirs.documents]
    assert (mine.errors, mine.stats) == (theirs.errors, theirs.stats)
