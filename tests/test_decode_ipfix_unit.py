"""IPFIX specifics: variable-length fields, enterprise elements, biflows, options (sampling, interface names),
reduced-size encoding, structured data, times."""

from __future__ import annotations

import struct

from flowsink.decode import DecoderSettings, FlowDecoder
from test_decode_netflow_builders import (
    flowset,
    ip4,
    ip6,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    varlen,
)

EXPORTER = "203.0.113.5"
NOW = 1_700_000_000 * 10**9
VARIABLE = 65535


def decode_all(decoder: FlowDecoder, *messages: bytes):
    results = [decoder.decode(m, EXPORTER, NOW) for m in messages]
    return results[-1]


def test_variable_length_fields_one_and_three_byte_lengths() -> None:
    decoder = FlowDecoder()
    template = ipfix_template_set([(400, [(8, 4), (96, VARIABLE), (94, VARIABLE), (1, 8)])])
    long_text = "d" * 300
    record_short = (
        ip4("10.0.0.1") + varlen(b"http") + varlen(b"web", long_form=True) + (10).to_bytes(8, "big")
    )
    record_long = ip4("10.0.0.2") + varlen(b"dns") + varlen(long_text.encode()) + (20).to_bytes(8, "big")
    result = decode_all(
        decoder, ipfix_message([template, flowset(400, record_short + record_long, pad=False)])
    )
    assert not result.errors
    raw = [d["netflow"] for d in result.documents]
    assert [(r["application_name"], r["application_description"]) for r in raw] == [
        ("http", "web"),
        ("dns", long_text),
    ]
    assert [d["network"]["bytes"] for d in result.documents] == [10, 20]


def test_variable_length_field_longer_than_what_remains() -> None:
    decoder = FlowDecoder()
    template = ipfix_template_set([(400, [(8, 4), (96, VARIABLE)])])
    good = ip4("10.0.0.1") + varlen(b"ok")
    bad = ip4("10.0.0.2") + b"\xff\x10\x00" + b"short"
    result = decode_all(decoder, ipfix_message([template, flowset(400, good + bad, pad=False)]))
    assert [reason for reason, _ in result.errors] == ["truncated_record"]
    assert [d["netflow"]["application_name"] for d in result.documents] == ["ok"]
    # the next message from the same exporter still decodes
    after = decoder.decode(ipfix_message([flowset(400, good, pad=False)], sequence=1), EXPORTER, NOW)
    assert len(after.documents) == 1 and not after.errors


def test_enterprise_fields_keep_a_stable_name() -> None:
    decoder = FlowDecoder()
    template = ipfix_template_set([(400, [(8, 4), (12, 4), (5, 2, 35632), (118, 4, 9), (7, 2)])])
    record = ip4("10.0.0.1") + ip4("10.0.0.2") + b"\x00\x25" + b"\xde\xad\xbe\xef" + b"\x01\xbb"
    raw = decode_all(decoder, ipfix_message([template, flowset(400, record, pad=False)])).documents[0][
        "netflow"
    ]
    assert raw["enterprise_35632_5"] == "0025"
    assert raw["enterprise_9_118"] == "deadbeef"
    assert raw["source_transport_port"] == 443


def test_biflow_reverse_fields() -> None:
    decoder = FlowDecoder()
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (1, 8, 29305), (2, 8, 29305)]
    record = (
        ip4("10.0.0.1")
        + ip4("10.0.0.2")
        + struct.pack("!HHB", 5000, 443, 6)
        + struct.pack("!QQQQ", 1000, 10, 5000, 8)
    )
    doc = decode_all(
        decoder, ipfix_message([ipfix_template_set([(400, fields)]), flowset(400, record, pad=False)])
    ).documents[0]
    assert doc["source"] == {"ip": "10.0.0.1", "port": 5000, "bytes": 1000, "packets": 10}
    assert doc["destination"] == {"ip": "10.0.0.2", "port": 443, "bytes": 5000, "packets": 8}
    assert (doc["network"]["bytes"], doc["network"]["packets"]) == (6000, 18)
    assert doc["netflow"]["reverse_octet_delta_count"] == 5000


def test_biflow_directions_summing_past_64_bits_are_clamped_not_lost() -> None:
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (1, 8, 29305), (2, 8, 29305)]
    record = (
        ip4("10.0.0.1")
        + ip4("10.0.0.2")
        + struct.pack("!HHB", 5000, 443, 6)
        + struct.pack("!QQQQ", 2**64 - 1, 10, 2**64 - 1, 8)
    )
    result = decode_all(
        FlowDecoder(), ipfix_message([ipfix_template_set([(400, fields)]), flowset(400, record, pad=False)])
    )
    doc = result.documents[0]
    assert doc["network"]["bytes"] == 2**63 - 1 and doc["network"]["packets"] == 18
    assert doc["netflow"]["octet_delta_count"] == 2**64 - 1  # the raw values stay exact


def test_options_sampling_renormalises_and_interface_names_fill_observer() -> None:
    decoder = FlowDecoder()
    options_template = ipfix_options_template_set(500, 1, [(10, 4), (82, VARIABLE), (305, 4), (306, 4)])
    # 1 packet selected, 99 skipped: 1-in-100
    options = flowset(500, struct.pack("!I", 7) + varlen(b"Gi0/0/7") + struct.pack("!II", 1, 99), pad=False)
    flow_template = ipfix_template_set([(400, [(8, 4), (12, 4), (4, 1), (10, 4), (14, 4), (1, 8), (2, 8)])])
    flow = flowset(
        400, ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack("!BIIQQ", 17, 7, 9, 1500, 3), pad=False
    )
    result = decode_all(decoder, ipfix_message([options_template, options, flow_template, flow]))
    options_doc, flow_doc = result.documents
    assert options_doc["event"]["action"] == "netflow_options"
    assert options_doc["netflow"]["interface_name"] == "Gi0/0/7"
    assert result.stats["records.options"] == 1 and result.stats["records.flow"] == 1
    assert flow_doc["flow"]["sampling_rate"] == 100
    assert (flow_doc["network"]["bytes"], flow_doc["network"]["packets"]) == (150_000, 300)
    assert (flow_doc["netflow"]["octet_delta_count"], flow_doc["netflow"]["packet_delta_count"]) == (1500, 3)
    assert flow_doc["observer"]["ingress"]["interface"] == {"id": "7", "name": "Gi0/0/7"}
    assert flow_doc["observer"]["egress"]["interface"] == {"id": "9"}


def test_sampling_per_selector_id_and_switch_off() -> None:
    def run(settings: DecoderSettings) -> list[dict]:
        decoder = FlowDecoder(settings)
        options_template = ipfix_options_template_set(500, 1, [(302, 4), (34, 4)])
        options = flowset(500, struct.pack("!II", 1, 10) + struct.pack("!II", 2, 1000), pad=False)
        flow_template = ipfix_template_set([(400, [(8, 4), (12, 4), (302, 4), (1, 4)])])
        flows = flowset(
            400,
            ip4("10.0.0.1")
            + ip4("10.0.0.2")
            + struct.pack("!II", 1, 7)
            + ip4("10.0.0.3")
            + ip4("10.0.0.4")
            + struct.pack("!II", 2, 7),
            pad=False,
        )
        return decode_all(
            decoder, ipfix_message([options_template, options, flow_template, flows])
        ).documents[2:]

    on = run(DecoderSettings())
    assert [(d["flow"]["sampling_rate"], d["network"]["bytes"]) for d in on] == [(10, 70), (1000, 7000)]
    off = run(DecoderSettings(renormalize=False))
    assert [(d["flow"]["sampling_rate"], d["network"]["bytes"]) for d in off] == [(10, 7), (1000, 7)]


def test_unsampled_flows_have_rate_one() -> None:
    decoder = FlowDecoder()
    doc = decode_all(
        decoder,
        ipfix_message(
            [
                ipfix_template_set([(400, [(8, 4), (12, 4), (1, 4)])]),
                flowset(400, ip4("10.0.0.1") + ip4("10.0.0.2") + b"\x00\x00\x00\x05", pad=False),
            ]
        ),
    ).documents[0]
    assert doc["flow"]["sampling_rate"] == 1 and doc["network"]["bytes"] == 5


def test_reduced_size_encoding() -> None:
    decoder = FlowDecoder()
    # octetDeltaCount (unsigned64) sent in 3 bytes, packetDeltaCount in 2, ingressInterface (unsigned32) in 1
    template = ipfix_template_set([(400, [(8, 4), (12, 4), (1, 3), (2, 2), (10, 1)])])
    record = (
        ip4("10.0.0.1") + ip4("10.0.0.2") + (70000).to_bytes(3, "big") + (300).to_bytes(2, "big") + b"\x05"
    )
    doc = decode_all(decoder, ipfix_message([template, flowset(400, record, pad=False)])).documents[0]
    assert (doc["network"]["bytes"], doc["network"]["packets"]) == (70000, 300)
    assert doc["observer"]["ingress"]["interface"]["id"] == "5"


def test_structured_data_is_kept_as_octets_and_skipped_safely() -> None:
    decoder = FlowDecoder()
    # basicList (291) of two 4-byte ingressInterface values, then a regular field after it
    basic_list = b"\x03" + struct.pack("!HH", 10, 4) + struct.pack("!II", 1, 2)
    template = ipfix_template_set([(400, [(8, 4), (291, VARIABLE), (1, 4)])])
    record = ip4("10.0.0.1") + varlen(basic_list) + (42).to_bytes(4, "big")
    doc = decode_all(decoder, ipfix_message([template, flowset(400, record, pad=False)])).documents[0]
    assert doc["netflow"]["basic_list"] == basic_list.hex()
    assert doc["network"]["bytes"] == 42


def test_times_milliseconds_ntp_and_uptime_with_system_init() -> None:
    decoder = FlowDecoder()
    ms_template = ipfix_template_set([(400, [(8, 4), (152, 8), (153, 8)])])
    ms = ip4("10.0.0.1") + struct.pack("!QQ", 1_700_000_000_123, 1_700_000_002_456)
    ntp_template = ipfix_template_set([(401, [(8, 4), (154, 8), (155, 8)])])
    ntp_start = ((1_700_000_000 + 2_208_988_800) << 32) | (1 << 31)  # .5 s
    ntp = ip4("10.0.0.2") + struct.pack("!QQ", ntp_start, ntp_start + (3 << 32))
    init_template = ipfix_options_template_set(500, 1, [(144, 4), (160, 8)])
    init = struct.pack("!IQ", 1, 1_699_999_000_000)
    up_template = ipfix_template_set([(402, [(8, 4), (22, 4), (21, 4)])])
    up = ip4("10.0.0.3") + struct.pack("!II", 1_000, 2_500)
    result = decode_all(
        decoder,
        ipfix_message(
            [
                ms_template,
                ntp_template,
                init_template,
                up_template,
                flowset(400, ms, pad=False),
                flowset(401, ntp, pad=False),
                flowset(500, init, pad=False),
                flowset(402, up, pad=False),
            ]
        ),
    )
    flows = [d for d in result.documents if d["event"]["action"] == "ipfix_flow"]
    assert [(d["event"]["start"], d["event"]["end"], d["event"]["duration"]) for d in flows] == [
        ("2023-11-14T22:13:20.123Z", "2023-11-14T22:13:22.456Z", 2_333_000_000),
        ("2023-11-14T22:13:20.500Z", "2023-11-14T22:13:23.500Z", 3_000_000_000),
        ("2023-11-14T21:56:41.000Z", "2023-11-14T21:56:42.500Z", 1_500_000_000),
    ]
    assert flows[0]["netflow"]["flow_start_milliseconds"] == "2023-11-14T22:13:20.123Z"


def test_ipv6_flow_and_icmp_community_id() -> None:
    decoder = FlowDecoder()
    template = ipfix_template_set([(400, [(27, 16), (28, 16), (4, 1), (139, 2)])])
    record = ip6("2001:db8::1") + ip6("2001:db8::2") + b"\x3a" + struct.pack("!H", 128 << 8)
    doc = decode_all(decoder, ipfix_message([template, flowset(400, record, pad=False)])).documents[0]
    assert doc["network"]["type"] == "ipv6" and doc["network"]["transport"] == "ipv6-icmp"
    assert doc["network"]["community_id"].startswith("1:")
    assert doc["netflow"]["icmp_type_code_ipv6"] == 128 << 8


def test_sequence_counts_data_records() -> None:
    decoder = FlowDecoder(DecoderSettings(sequence_window=5))
    template = ipfix_template_set([(400, [(8, 4)])])
    decoder.decode(ipfix_message([template]), EXPORTER, NOW)
    two = flowset(400, ip4("10.0.0.1") * 2, pad=False)
    assert decoder.decode(ipfix_message([two], sequence=0), EXPORTER, NOW).stats["sequence_gaps"] == 0
    decoder.decode(ipfix_message([two], sequence=2), EXPORTER, NOW)  # in order
    decoder.decode(ipfix_message([two], sequence=7), EXPORTER, NOW)  # records 4..6 missing
    late = decoder.decode(ipfix_message([two], sequence=20), EXPORTER, NOW)  # 9..19 missing too
    # the first hole is now more than the window behind: counted; the second may still be filled
    assert late.stats["sequence_gaps"] == 1 and late.stats["lost_records"] == 3
    remaining = decoder._decoder_for("ipfix").sequences.flush()
    assert (remaining.gaps, remaining.lost_records) == (1, 11)


def test_export_time_zero_takes_the_arrival_time_for_timestamp() -> None:
    decoder = FlowDecoder()
    template = ipfix_template_set([(400, [(8, 4), (12, 4)])])
    message = ipfix_message(
        [template, flowset(400, ip4("10.0.0.1") + ip4("10.0.0.2"), pad=False)], export_time=0
    )
    doc = decoder.decode(message, EXPORTER, 1_700_000_000_250_000_000).documents[0]
    assert doc["@timestamp"] == "2023-11-14T22:13:20.250Z"
    assert doc["netflow"]["exporter"]["timestamp"] == "1970-01-01T00:00:00.000Z"
