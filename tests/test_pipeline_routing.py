"""Pipeline pieces that are pure logic: index routing by day and kind, the ack cursor around held data."""

from __future__ import annotations

import pytest

from flowsink.bulk import index_name
from flowsink.pipeline.worker import AckCursor


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"@timestamp": "2026-11-23T23:59:59.999Z", "event": {"action": "netflow_flow"}},
            "fs-flows-2026.11.23",
        ),
        ({"@timestamp": "2026-01-02T00:00:00Z", "event": {"action": "ipfix_flow"}}, "fs-flows-2026.01.02"),
        (
            {"@timestamp": "2026-01-02T00:00:00Z", "event": {"action": "sflow_flow_sample"}},
            "fs-flows-2026.01.02",
        ),
        (
            {"@timestamp": "2026-03-04T05:06:07Z", "event": {"action": "netflow_options"}},
            "fs-meta-2026.03.04",
        ),
        (
            {"@timestamp": "2026-03-04T05:06:07Z", "event": {"action": "sflow_counter_sample"}},
            "fs-meta-2026.03.04",
        ),
        # an offset that crosses midnight UTC is converted, not sliced
        (
            {"@timestamp": "2026-03-04T23:30:00-02:00", "event": {"action": "ipfix_flow"}},
            "fs-flows-2026.03.05",
        ),
        (
            {"@timestamp": "2026-03-04T01:30:00+02:00", "event": {"action": "ipfix_flow"}},
            "fs-flows-2026.03.03",
        ),
        # epoch milliseconds and seconds
        ({"@timestamp": 1767225600000, "event": {"action": "netflow_flow"}}, "fs-flows-2026.01.01"),
        ({"@timestamp": 1767225599, "event": {"action": "netflow_flow"}}, "fs-flows-2025.12.31"),
    ],
)
def test_index_name_by_day_and_kind(doc, expected):
    assert index_name(doc, "fs") == expected


def test_index_name_without_timestamp_uses_today():
    import time

    assert index_name({"event": {}}, "fs") == "fs-flows-" + time.strftime("%Y.%m.%d", time.gmtime())


def test_ack_cursor_follows_processed_when_nothing_is_held():
    cursor = AckCursor()
    assert cursor.next_ack() is None
    cursor.processed_up_to(10)
    assert cursor.next_ack() == 10
    cursor.acked = 10
    assert cursor.next_ack() is None
    cursor.processed_up_to(12)
    assert cursor.next_ack() == 12


def test_ack_cursor_stops_before_the_oldest_held_datagram_until_released():
    cursor = AckCursor()
    cursor.hold(5, now=100.0)
    cursor.hold(8, now=101.0)
    cursor.processed_up_to(20)
    assert cursor.next_ack() == 4
    cursor.acked = 4
    cursor.release_before(100.5)  # releases seq 5 only
    assert cursor.next_ack() == 7
    cursor.acked = 7
    cursor.release_all()
    assert cursor.next_ack() == 20
    assert cursor.held == 0


def test_ack_cursor_never_moves_back():
    cursor = AckCursor()
    cursor.processed_up_to(9)
    cursor.acked = 9
    cursor.hold(3, now=0.0)  # a late hold below the acked point cannot un-ack
    assert cursor.next_ack() is None
