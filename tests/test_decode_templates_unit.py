"""Templates: replacement, withdrawal, held data, the cache on disk, bounds, padding, odd templates."""

from __future__ import annotations

import os
import struct
import tracemalloc

from flowsink.decode import DecoderSettings, FlowDecoder
from test_decode_netflow_builders import (
    FLOW_V9_FIELDS,
    flow_v9_record,
    flowset,
    ip4,
    ipfix_message,
    ipfix_template_set,
    ipfix_withdrawal,
    v9_packet,
    v9_template_set,
)

EXPORTER = "198.51.100.7"
NOW = 1_700_000_000 * 10**9


def flows(result):
    return [d for d in result.documents if d["event"]["action"] != "netflow_options"]


def test_resent_template_with_new_layout_replaces_the_old() -> None:
    decoder = FlowDecoder()
    decoder.decode(
        v9_packet([v9_template_set([(300, [(8, 4), (12, 4), (1, 4)])])], sequence=1), EXPORTER, NOW
    )
    first = decoder.decode(
        v9_packet([flowset(300, ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack("!I", 99))], sequence=2),
        EXPORTER,
        NOW,
    )
    assert first.documents[0]["network"]["bytes"] == 99
    replaced = decoder.decode(
        v9_packet([v9_template_set([(300, [(12, 4), (8, 4), (2, 4)])])], sequence=3), EXPORTER, NOW
    )
    assert replaced.stats["templates"] == 1
    second = decoder.decode(
        v9_packet([flowset(300, ip4("10.0.0.3") + ip4("10.0.0.4") + struct.pack("!I", 5))], sequence=4),
        EXPORTER,
        NOW,
    )
    doc = second.documents[0]
    assert (doc["destination"]["ip"], doc["source"]["ip"], doc["network"]["packets"]) == (
        "10.0.0.3",
        "10.0.0.4",
        5,
    )
    assert "bytes" not in doc["network"]


def test_identical_template_refresh_is_not_counted_as_new() -> None:
    decoder = FlowDecoder()
    packet = v9_packet([v9_template_set([(300, FLOW_V9_FIELDS)])])
    assert decoder.decode(packet, EXPORTER, NOW).stats["templates"] == 1
    assert decoder.decode(packet, EXPORTER, NOW + 10**9).stats["templates"] == 0
    assert decoder.templates.get(("netflow_v9", EXPORTER, 0), 300).last_seen_ns == NOW + 10**9


def test_templates_are_scoped_per_exporter_and_source_id() -> None:
    decoder = FlowDecoder()
    decoder.decode(v9_packet([v9_template_set([(300, FLOW_V9_FIELDS)])], source_id=1), EXPORTER, NOW)
    data = flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1))
    assert len(decoder.decode(v9_packet([data], source_id=1), EXPORTER, NOW).documents) == 1
    assert decoder.decode(v9_packet([data], source_id=2), EXPORTER, NOW).stats["pending"] == 1
    assert decoder.decode(v9_packet([data], source_id=1), "198.51.100.8", NOW).stats["pending"] == 1


def test_ipfix_withdrawal_single_and_all() -> None:
    decoder = FlowDecoder()
    fields = [(8, 4), (12, 4)]
    decoder.decode(
        ipfix_message([ipfix_template_set([(400, fields), (401, fields), (402, fields)])]), EXPORTER, NOW
    )
    result = decoder.decode(ipfix_message([ipfix_withdrawal(400)]), EXPORTER, NOW)
    assert result.stats["templates_withdrawn"] == 1
    data = flowset(400, ip4("10.0.0.1") + ip4("10.0.0.2"), pad=False)
    assert decoder.decode(ipfix_message([data]), EXPORTER, NOW).stats["pending"] == 1
    assert (
        decoder.decode(ipfix_message([ipfix_withdrawal(2)]), EXPORTER, NOW).stats["templates_withdrawn"] == 2
    )
    assert decoder.templates.count() == 0


def test_data_before_template_is_held_then_decoded_with_the_same_ids() -> None:
    template = v9_template_set([(300, FLOW_V9_FIELDS)])
    data = flowset(
        300,
        flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1)
        + flow_v9_record("10.0.0.3", "10.0.0.4", 3, 4, 17, 20, 2),
    )
    data_packet = v9_packet([data], sequence=5)

    direct = FlowDecoder()
    direct.decode(v9_packet([template], sequence=4), EXPORTER, NOW)
    expected = direct.decode(data_packet, EXPORTER, NOW).documents

    held = FlowDecoder()
    early = held.decode(data_packet, EXPORTER, NOW)
    assert early.documents == [] and early.stats["pending"] == 1
    late = held.decode(v9_packet([template], sequence=6), EXPORTER, NOW + 10**9)
    assert late.stats["pending_decoded"] == 1
    assert [d["_id"] for d in late.documents] == [d["_id"] for d in expected]
    assert late.documents == expected
    assert held.pending.count() == 0


def test_held_data_expires_by_age_and_is_counted() -> None:
    decoder = FlowDecoder(DecoderSettings(pending_max_seconds=5))
    decoder.decode(v9_packet([flowset(300, b"\x00" * 40)]), EXPORTER, NOW)
    assert decoder.expire(NOW + 4 * 10**9).stats["expired"] == 0
    result = decoder.expire(NOW + 6 * 10**9)
    assert result.stats["expired"] == 1
    assert result.errors[0][0] == "template_missing"
    assert decoder.pending.count() == 0


def test_held_data_is_bounded_in_bytes_oldest_expired_first() -> None:
    decoder = FlowDecoder(DecoderSettings(pending_max_bytes=1000))
    expired = 0
    for template_id in range(300, 320):
        result = decoder.decode(v9_packet([flowset(template_id, b"\x01" * 200)]), EXPORTER, NOW)
        expired += result.stats["expired"]
    assert decoder.pending.bytes <= 1000
    assert expired == 20 - decoder.pending.count()
    assert {tid for (_, tid) in decoder.pending.held} == set(range(320 - decoder.pending.count(), 320))


def test_template_cache_round_trip_and_expiry(tmp_path) -> None:
    path = tmp_path / "cache" / "templates.json"
    decoder = FlowDecoder(DecoderSettings(template_expiry_seconds=3600))
    decoder.decode(v9_packet([v9_template_set([(300, FLOW_V9_FIELDS)])]), EXPORTER, NOW)
    decoder.decode(ipfix_message([ipfix_template_set([(400, [(8, 4), (12, 4), (1, 65535)])])]), EXPORTER, NOW)
    decoder.decode(v9_packet([v9_template_set([(301, FLOW_V9_FIELDS)])]), "198.51.100.99", NOW - 7200 * 10**9)
    decoder.save_templates(str(path))
    assert os.listdir(path.parent) == ["templates.json"]  # the temp file was renamed, not left behind

    restarted = FlowDecoder(DecoderSettings(template_cache_path=str(path), template_expiry_seconds=3600))
    assert restarted.cache_error is None
    # saved times are wall-clock nanoseconds: NOW is in the past, so judge expiry against NOW
    restarted.templates = type(restarted.templates)(1024, 100, 3600)
    assert restarted.templates.load(str(path), now_ns=NOW + 60 * 10**9) == 2
    data = v9_packet([flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1))])
    assert len(restarted.decode(data, EXPORTER, NOW).documents) == 1
    assert restarted.templates.get(("netflow_v9", "198.51.100.99", 0), 301) is None  # expired on load


def test_template_cache_survives_a_restart_through_the_facade(tmp_path) -> None:
    path = str(tmp_path / "templates.json")
    import time

    now = time.time_ns()
    first = FlowDecoder(DecoderSettings(template_cache_path=path))
    first.decode(v9_packet([v9_template_set([(300, FLOW_V9_FIELDS)])]), EXPORTER, now)
    first.save_templates()
    second = FlowDecoder(DecoderSettings(template_cache_path=path))
    data = v9_packet([flowset(300, flow_v9_record("10.0.0.1", "10.0.0.2", 1, 2, 6, 10, 1))], sequence=2)
    result = second.decode(data, EXPORTER, now)
    assert [d["source"]["ip"] for d in result.documents] == ["10.0.0.1"]


def test_corrupt_template_cache_costs_the_cache_not_the_start(tmp_path) -> None:
    path = tmp_path / "templates.json"
    path.write_bytes(b"{not json")
    decoder = FlowDecoder(DecoderSettings(template_cache_path=str(path)))
    assert "unreadable" in decoder.cache_error
    assert decoder.templates.count() == 0


def test_thousands_of_templates_from_one_exporter_stay_bounded() -> None:
    decoder = FlowDecoder(DecoderSettings(max_templates_per_exporter=100))
    tracemalloc.start()
    evictions = 0
    for batch in range(50):
        templates = [(256 + batch * 100 + i, FLOW_V9_FIELDS) for i in range(100)]
        evictions += decoder.decode(v9_packet([v9_template_set(templates)]), EXPORTER, NOW).stats[
            "template_evictions"
        ]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert decoder.templates.count() == 100
    assert evictions == 4900
    assert peak < 30 * 1024 * 1024
    # the most recent templates are the ones kept
    assert decoder.templates.get(("netflow_v9", EXPORTER, 0), 256 + 4999) is not None


def test_zero_length_record_template_is_refused_and_never_hangs() -> None:
    decoder = FlowDecoder()
    result = decoder.decode(v9_packet([v9_template_set([(300, [(8, 0), (12, 0)])])]), EXPORTER, NOW)
    assert [reason for reason, _ in result.errors] == ["zero_length_template"]
    data = decoder.decode(v9_packet([flowset(300, b"\x00" * 64)]), EXPORTER, NOW)
    assert data.documents == [] and data.stats["pending"] == 1
    ipfix = decoder.decode(ipfix_message([ipfix_template_set([(400, [(8, 0)])])]), EXPORTER, NOW)
    assert [reason for reason, _ in ipfix.errors] == ["zero_length_template"]


def test_zero_length_fields_are_left_out() -> None:
    decoder = FlowDecoder()
    decoder.decode(v9_packet([v9_template_set([(300, [(8, 4), (5, 0), (12, 4)])])]), EXPORTER, NOW)
    result = decoder.decode(v9_packet([flowset(300, ip4("10.0.0.1") + ip4("10.0.0.2"))]), EXPORTER, NOW)
    raw = result.documents[0]["netflow"]
    assert raw["source_ipv4_address"] == "10.0.0.1" and "ip_class_of_service" not in raw


def test_padding_and_several_flowsets_in_one_packet() -> None:
    decoder = FlowDecoder()
    # 21-byte records: one record + 3 bytes of padding per set; a template set between two data sets
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4)]
    record = ip4("10.0.0.1") + ip4("10.0.0.2") + struct.pack("!HHBII", 1, 2, 6, 100, 1)
    packet = v9_packet(
        [
            v9_template_set([(300, fields)]),
            flowset(300, record),  # padded to 24
            v9_template_set([(301, fields)]),
            flowset(301, record + record),  # 42 -> padded to 44
        ]
    )
    result = decoder.decode(packet, EXPORTER, NOW)
    assert not result.errors
    assert len(result.documents) == 3
    assert len({d["_id"] for d in result.documents}) == 3


def test_set_longer_than_the_datagram_keeps_whole_records() -> None:
    decoder = FlowDecoder()
    decoder.decode(v9_packet([v9_template_set([(300, FLOW_V9_FIELDS)])]), EXPORTER, NOW)
    records = b"".join(flow_v9_record("10.0.0.1", "10.0.0.2", i, 2, 6, 10, 1) for i in range(3))
    packet = v9_packet([flowset(300, records)])
    result = decoder.decode(packet[:-10], EXPORTER, NOW)
    assert [reason for reason, _ in result.errors] == ["truncated"]
    assert [d["source"]["port"] for d in result.documents] == [0, 1]
    assert len(decoder.decode(packet, EXPORTER, NOW).documents) == 3


def test_reserved_set_ids_and_bad_lengths_are_reported() -> None:
    decoder = FlowDecoder()
    reserved = decoder.decode(v9_packet([flowset(7, b"\x00" * 8)]), EXPORTER, NOW)
    assert [reason for reason, _ in reserved.errors] == ["reserved_set_id"]
    bad = decoder.decode(v9_packet([struct.pack("!HH", 300, 2) + b"\x01\x02\x03\x04"]), EXPORTER, NOW)
    assert [reason for reason, _ in bad.errors] == ["bad_set_length"]
    short = decoder.decode(b"\x00\x09\x00\x01", EXPORTER, NOW)
    assert [reason for reason, _ in short.errors] == ["truncated"]
    bad_ipfix = decoder.decode(struct.pack("!HHIII", 10, 8, 0, 0, 0), EXPORTER, NOW)
    assert [reason for reason, _ in bad_ipfix.errors] == ["bad_length"]


def test_huge_template_decodes_without_generated_code() -> None:
    decoder = FlowDecoder()
    fields = [(8, 4), (12, 4)] + [(1000 + i, 1) for i in range(2000)]
    decoder.decode(ipfix_message([ipfix_template_set([(400, fields)])]), EXPORTER, NOW)
    record = ip4("10.0.0.1") + ip4("10.0.0.2") + bytes(range(256)) * 7 + bytes(208)
    result = decoder.decode(ipfix_message([flowset(400, record, pad=False)]), EXPORTER, NOW)
    raw = result.documents[0]["netflow"]
    assert raw["source_ipv4_address"] == "10.0.0.1" and raw["field_1001"] == "01" and len(raw) == 2003
