"""NetFlow v5 and v9 specifics, the sequence tracker, document ids, and the facade's protocol detection."""

from __future__ import annotations

import struct

import pytest

from flowsink.decode import DecoderSettings, FlowDecoder, detect_protocol
from flowsink.decode.sequence import SequenceTracker
from test_decode_netflow_builders import (
    FLOW_V9_FIELDS,
    flow_v9_record,
    flowset,
    v5_packet,
    v5_record,
    v9_options_template_set,
    v9_packet,
    v9_template_set,
)

EXPORTER = "192.0.2.33"
NOW = 1_700_000_000 * 10**9


# ---- NetFlow v5 -------------------------------------------------------------------------------------------


def test_v5_every_field_and_absolute_times() -> None:
    packet = v5_packet(
        [
            v5_record(
                "10.1.1.1",
                "10.2.2.2",
                7,
                700,
                first=95_000,
                last=99_500,
                src_port=5353,
                dst_port=53,
                protocol=17,
            )
        ],
        uptime=100_000,
        secs=1_700_000_000,
        nsecs=250_000_000,
        sequence=42,
        engine_type=1,
        engine_id=2,
    )
    result = FlowDecoder().decode(packet, EXPORTER, NOW)
    assert result.protocol == "netflow_v5" and result.stats["records.flow"] == 1
    doc = result.documents[0]
    # export time 1700000000.250, uptime 100 s: the flow started 5 s and ended 0.5 s before the export
    assert doc["event"]["start"] == "2023-11-14T22:13:15.250Z"
    assert doc["event"]["end"] == "2023-11-14T22:13:19.750Z"
    assert doc["event"]["duration"] == 4_500_000_000
    assert doc["@timestamp"] == "2023-11-14T22:13:20.250Z"
    raw = doc["netflow"]
    assert raw["flow_sequence"] == 42 and raw["engine_type"] == 1 and raw["engine_id"] == 2
    assert raw["source_ipv4_prefix_length"] == 24 and raw["tcp_control_bits"] == 0x18
    assert raw["exporter"] == {
        "address": EXPORTER,
        "version": 5,
        "source_id": 0x0102,
        "timestamp": "2023-11-14T22:13:20.250Z",
        "uptime_millis": 100_000,
    }
    assert doc["network"] == {
        "type": "ipv4",
        "iana_number": "17",
        "transport": "udp",
        "bytes": 700,
        "packets": 7,
        "direction": "unknown",
        "community_id": doc["network"]["community_id"],
    }
    assert doc["observer"] == {
        "ip": EXPORTER,
        "ingress": {"interface": {"id": "1"}},
        "egress": {"interface": {"id": "2"}},
    }


def test_v5_flow_times_across_an_uptime_wrap() -> None:
    # the flow started just before sysUpTime wrapped at 2^32 ms; the export came 1 s after the wrap
    packet = v5_packet([v5_record("10.1.1.1", "10.2.2.2", 1, 1, first=2**32 - 1000, last=500)], uptime=1000)
    doc = FlowDecoder().decode(packet, EXPORTER, NOW).documents[0]
    assert doc["event"]["duration"] == 1_500_000_000


def test_v5_sampling_interval_renormalises_and_can_be_switched_off() -> None:
    packet = v5_packet([v5_record("10.1.1.1", "10.2.2.2", 3, 300, 1, 2)], sampling=(1 << 14) | 512)
    doc = FlowDecoder().decode(packet, EXPORTER, NOW).documents[0]
    assert doc["flow"]["sampling_rate"] == 512
    assert (doc["network"]["bytes"], doc["network"]["packets"]) == (300 * 512, 3 * 512)
    assert doc["netflow"]["sampling_interval"] == 512 and doc["netflow"]["sampling_algorithm"] == 1
    assert doc["netflow"]["octet_delta_count"] == 300
    raw_doc = FlowDecoder(DecoderSettings(renormalize=False)).decode(packet, EXPORTER, NOW).documents[0]
    assert (raw_doc["flow"]["sampling_rate"], raw_doc["network"]["bytes"]) == (512, 300)


def test_v5_sequence_counts_flows() -> None:
    decoder = FlowDecoder(DecoderSettings(sequence_window=10))
    records = [v5_record("10.1.1.1", "10.2.2.2", 1, 1, 1, 2)] * 5
    decoder.decode(v5_packet(records, sequence=0), EXPORTER, NOW)
    decoder.decode(v5_packet(records, sequence=5), EXPORTER, NOW)
    decoder.decode(v5_packet(records, sequence=15), EXPORTER, NOW)  # 10..14 lost
    result = decoder.decode(v5_packet(records, sequence=30), EXPORTER, NOW)  # 20..29 lost too
    assert result.stats["sequence_gaps"] == 1 and result.stats["lost_records"] == 5


# ---- NetFlow v9 -------------------------------------------------------------------------------------------


def test_v9_options_sampler_ids_and_interface_names() -> None:
    decoder = FlowDecoder()
    options_template = v9_options_template_set(260, [(2, 4)], [(48, 1), (49, 1), (50, 4), (82, 8)])
    options = flowset(
        260,
        struct.pack("!IBBI", 3, 5, 2, 64)
        + b"Gi0/3\x00\x00\x00"
        + struct.pack("!IBBI", 4, 6, 2, 1000)
        + b"Gi0/4\x00\x00\x00",
    )
    flow_template = v9_template_set([(300, [*FLOW_V9_FIELDS, (48, 1), (10, 2)])])
    flows = flowset(
        300,
        flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 100, 2)
        + b"\x05\x00\x03"
        + flow_v9_record("10.0.0.3", "10.0.0.4", 1, 2, 6, 100, 2)
        + b"\x06\x00\x04",
    )
    result = decoder.decode(v9_packet([options_template, options, flow_template, flows]), EXPORTER, NOW)
    options_docs = [d for d in result.documents if d["event"]["action"] == "netflow_options"]
    flow_docs = [d for d in result.documents if d["event"]["action"] == "netflow_flow"]
    assert [d["netflow"]["scope_interface"] for d in options_docs] == [3, 4]
    assert [d["flow"]["sampling_rate"] for d in flow_docs] == [64, 1000]
    assert [d["network"]["bytes"] for d in flow_docs] == [6400, 100_000]
    assert [d["observer"]["ingress"]["interface"] for d in flow_docs] == [
        {"id": "3", "name": "Gi0/3"},
        {"id": "4", "name": "Gi0/4"},
    ]


def test_v9_times_from_sysuptime_and_export_time() -> None:
    decoder = FlowDecoder()
    packet = v9_packet(
        [
            v9_template_set([(300, FLOW_V9_FIELDS)]),
            flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1, first=90_000, last=95_000)),
        ],
        uptime=100_000,
        secs=1_700_000_000,
    )
    doc = decoder.decode(packet, EXPORTER, NOW).documents[0]
    assert (doc["event"]["start"], doc["event"]["end"]) == (
        "2023-11-14T22:13:10.000Z",
        "2023-11-14T22:13:15.000Z",
    )


def test_v9_sequence_gap_reorder_and_restart() -> None:
    decoder = FlowDecoder(DecoderSettings(sequence_window=10))
    template = v9_template_set([(300, FLOW_V9_FIELDS)])
    data = flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1) * 4)
    stats = [
        decoder.decode(v9_packet([template, data], sequence=s, uptime=u), EXPORTER, NOW).stats
        for s, u in [(1, 1000), (3, 2000), (2, 1500), (5, 3000), (9, 4000), (10, 5000), (1, 10)]
    ]
    assert stats[2]["sequence_reordered"] == 1  # 2 arrived late: no loss
    assert sum(s["sequence_gaps"] for s in stats[:6]) == 0  # hole 4 still inside the window
    assert stats[6]["sequence_restarts"] == 1  # uptime went backwards
    # at the restart the open holes (packets 4 and 6..8) are counted: 4 records per packet
    assert stats[6]["sequence_gaps"] == 2 and stats[6]["lost_records"] == 16


# ---- sequence tracker on its own ----------------------------------------------------------------------------


def test_sequence_tracker_wraps_modulo_2_32() -> None:
    tracker = SequenceTracker(window=100)
    tracker.observe("s", 2**32 - 2, 2)
    assert tracker.observe("s", 0, 5).gaps == 0
    tracker.observe("s", 10, 1)  # 5..9 missing
    assert tracker.flush().lost == 5


def test_sequence_tracker_far_backwards_is_a_restart_not_a_loss() -> None:
    tracker = SequenceTracker(window=100)
    tracker.observe("s", 1_000_000, 10)
    outcome = tracker.observe("s", 3, 10)
    assert outcome.restart and outcome.lost == 0
    assert tracker.observe("s", 13, 1).gaps == 0


def test_sequence_tracker_duplicates_and_bounded_streams() -> None:
    tracker = SequenceTracker(window=100, max_streams=10)
    tracker.observe("s", 0, 10)
    tracker.observe("s", 10, 10)
    assert tracker.observe("s", 5, 1).duplicates == 1
    for n in range(50):
        tracker.observe(n, 0, 1)
    assert len(tracker.streams) == 10


# ---- facade and ids --------------------------------------------------------------------------------------------


def test_document_ids_are_deterministic_and_differ_between_datagrams() -> None:
    first = v5_packet([v5_record("10.1.1.1", "10.2.2.2", 1, 1, 1, 2)] * 3, sequence=7)
    other = v5_packet([v5_record("10.1.1.1", "10.2.2.2", 1, 1, 1, 3)] * 3, sequence=7)
    ids_a = [d["_id"] for d in FlowDecoder().decode(first, EXPORTER, NOW).documents]
    ids_b = [d["_id"] for d in FlowDecoder().decode(first, EXPORTER, NOW + 5).documents]
    ids_c = [d["_id"] for d in FlowDecoder().decode(other, EXPORTER, NOW).documents]
    ids_d = [d["_id"] for d in FlowDecoder().decode(first, "192.0.2.34", NOW).documents]
    assert ids_a == ids_b and len(set(ids_a)) == 3
    assert not set(ids_a) & set(ids_c) and not set(ids_a) & set(ids_d)


def test_flow_id_is_stable_per_five_tuple_and_exporter() -> None:
    decoder = FlowDecoder()
    docs = decoder.decode(
        v5_packet(
            [
                v5_record("10.1.1.1", "10.2.2.2", 1, 1, 1, 2),
                v5_record("10.1.1.1", "10.2.2.2", 9, 9, 5, 6),
                v5_record("10.1.1.1", "10.2.2.3", 1, 1, 1, 2),
            ]
        ),
        EXPORTER,
        NOW,
    ).documents
    assert docs[0]["flow"]["id"] == docs[1]["flow"]["id"] != docs[2]["flow"]["id"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x00\x05\x00\x01", "netflow_v5"),
        (b"\x00\x09\x00\x01", "netflow_v9"),
        (b"\x00\x0a\x00\x10", "ipfix"),
        (b"\x00\x00\x00\x05", "sflow"),
        (b"\x00\x07\x00\x00", None),
        (b"\x05", None),
        (b"", None),
    ],
)
def test_protocol_detection(payload: bytes, expected: str | None) -> None:
    assert detect_protocol(payload) == expected


def test_unknown_version_and_empty_payload_are_counted_not_raised() -> None:
    decoder = FlowDecoder()
    assert decoder.decode(b"\x00\x07" + b"\x00" * 30, EXPORTER, NOW).errors[0][0] == "unknown_version"
    assert decoder.decode(b"", EXPORTER, NOW).errors[0][0] == "unknown_version"
    assert decoder.decode(b"\x00\x05\x00\x01", EXPORTER, NOW).errors[0][0] == "truncated"


def test_odd_field_lengths_stay_raw_and_never_reach_ecs_fields() -> None:
    """Ports, protocol and addresses sent with unusual lengths are kept as hex under netflow.*, not mapped."""
    decoder = FlowDecoder()
    template = v9_template_set([(300, [(8, 3), (12, 4), (7, 2), (11, 10), (4, 2), (1, 4)])])
    record = (
        b"\x0a\x00\x01"
        + bytes([10, 0, 0, 2])
        + b"\x00\x35"
        + b"\x00" * 9
        + b"\x50"
        + b"\x01\x06"
        + b"\x00\x00\x00\x09"
    )
    doc = decoder.decode(v9_packet([template, flowset(300, record)]), EXPORTER, NOW).documents[0]
    assert doc["netflow"]["source_ipv4_address"] == "0a0001"
    assert doc["netflow"]["destination_transport_port"] == "00000000000000000050"
    assert "ip" not in doc.get("source", {}) and "port" not in doc["destination"]
    assert "iana_number" not in doc["network"] and "community_id" not in doc["network"]
    assert doc["network"]["bytes"] == 9


def test_renormalised_counters_are_clamped_to_a_long() -> None:
    decoder = FlowDecoder()
    options = v9_options_template_set(260, [(1, 4)], [(34, 4)])
    template = v9_template_set([(300, [(8, 4), (12, 4), (1, 8)])])
    packet = v9_packet(
        [
            options,
            flowset(260, struct.pack("!II", 0, 2**31)),
            template,
            flowset(300, bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack("!Q", 2**62)),
        ]
    )
    flow = next(
        d for d in decoder.decode(packet, EXPORTER, NOW).documents if d["event"]["action"] == "netflow_flow"
    )
    assert flow["network"]["bytes"] == 2**63 - 1
    assert flow["netflow"]["octet_delta_count"] == 2**62


def test_v9_single_sampler_applies_to_flows_that_name_none() -> None:
    decoder = FlowDecoder()
    options = v9_options_template_set(260, [(1, 4)], [(48, 1), (50, 4)])
    packet = v9_packet(
        [
            options,
            flowset(260, struct.pack("!IBI", 0, 1, 256)),
            v9_template_set([(300, FLOW_V9_FIELDS)]),
            flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1)),
        ]
    )
    flow = next(
        d for d in decoder.decode(packet, EXPORTER, NOW).documents if d["event"]["action"] == "netflow_flow"
    )
    assert (flow["flow"]["sampling_rate"], flow["network"]["bytes"]) == (256, 2560)


def test_community_id_matches_the_shared_helper_and_flow_id_is_per_exporter() -> None:
    from flowsink.normalize.common import community_id

    packet = v5_packet(
        [v5_record("140.82.121.3", "192.168.119.100", 78, 87477, 1, 2, src_port=443, dst_port=55516)]
    )
    doc = FlowDecoder().decode(packet, EXPORTER, NOW).documents[0]
    assert doc["network"]["community_id"] == community_id("140.82.121.3", "192.168.119.100", 6, 443, 55516)
    other = FlowDecoder().decode(packet, "192.0.2.34", NOW).documents[0]
    assert other["flow"]["id"] != doc["flow"]["id"] and len(doc["flow"]["id"]) == 28


def test_sequence_holes_left_open_by_a_quiet_exporter_are_counted_after_their_age() -> None:
    from flowsink.decode.sequence import SequenceTracker

    tracker = SequenceTracker(window=10_000)
    tracker.observe("r1", 0, 10)
    tracker.observe("r1", 20, 10)  # 10..19 missing: open, a late export may still fill it
    tracker.observe("r1", 40, 5)  # 30..39 missing
    tracker.observe("r1", 30, 4)  # 30..33 came late: 34..39 stays open
    assert tracker.close_stale(60.0) == []  # young holes stay open
    closed = tracker.close_stale(0.0)
    assert [(stream, o.gaps, o.lost) for stream, o in closed] == [("r1", 2, 16)]
    assert tracker.close_stale(0.0) == [] and tracker.flush().gaps == 0  # counted once


def test_decoder_counts_stale_holes_per_exporter_and_protocol() -> None:
    import struct

    from flowsink.decode import FlowDecoder

    def v5(sequence: int, records: int = 1) -> bytes:
        header = struct.pack("!HHIIIIBBH", 5, records, 1000, 1_700_000_000, 0, sequence, 0, 0, 0)
        return header + bytes(48) * records

    decoder = FlowDecoder()
    for sequence in (0, 1, 5):  # 2..4 never arrive, and the exporter goes quiet
        decoder.decode(v5(sequence), "192.0.2.1", 0)
    assert decoder.close_stale_sequence_holes(30.0) == []
    assert decoder.close_stale_sequence_holes(0.0) == [("192.0.2.1", "netflow_v5", 1, 3)]


def test_stale_sflow_datagram_holes_are_gaps_not_lost_records() -> None:
    """A lost sFlow datagram is a gap; its samples are counted lost through the sample sequences instead."""
    import struct
    from pathlib import Path

    from flowsink.decode import FlowDecoder

    fixture = Path(__file__).resolve().parents[2] / "shared/fixtures/telegraf/sflow_issue_15918/message.bin"
    data = fixture.read_bytes()
    decoder = FlowDecoder()
    for sequence in (1, 5):  # datagrams 2..4 never arrive (same samples: no sample-sequence hole)
        decoder.decode(data[:16] + struct.pack("!I", sequence) + data[20:], "192.0.2.9", 0)
    assert decoder.close_stale_sequence_holes(0.0) == [("192.0.2.9", "sflow", 1, 0)]
