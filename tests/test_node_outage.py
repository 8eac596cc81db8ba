"""Elasticsearch stopped while exporters keep sending: the queue absorbs it, then drains; when the queue's
disk budget runs out, exactly what was not accepted is counted as dropped, and nothing accepted is lost."""

from __future__ import annotations

import time

import pytest

from support.node import (
    NodeProcess,
    V5Exporter,
    count_docs,
    distinct_flows,
    metric_sum,
    scrape,
    wait_for_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 60
FLOWS = 30


def wait_metric(node, name, predicate, timeout_s=60.0, **labels):
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = metric_sum(scrape(node.metrics_url), name, **labels)
        if predicate(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{name}{labels} = {value} after {timeout_s}s:\n{node.log()}")


def test_outage_then_full_queue(tmp_path, private_es):
    from elasticsearch import Elasticsearch

    es = Elasticsearch(private_es.url, request_timeout=30)
    node = NodeProcess(
        tmp_path,
        private_es.url,
        "tout",
        settings={
            "queue": {"max_bytes": 3 * 1024 * 1024, "segment_bytes": 256 * 1024},
            "elasticsearch": {"retry_max_backoff_s": 2, "request_timeout_s": 10},
        },
    )
    exporter = V5Exporter()
    try:
        node.start()
        node.send([exporter.datagram(FLOWS) for _ in range(100)], rate_per_s=1000)
        assert wait_for_count(es, "tout", 3000) == 3000

        # -- Elasticsearch down for a minute while traffic continues: the queue absorbs it
        private_es.stop()
        outage_started = time.monotonic()
        depth_seen = 0.0
        while time.monotonic() - outage_started < OUTAGE_S:
            node.send([exporter.datagram(FLOWS) for _ in range(20)], rate_per_s=1000)  # ~20 datagrams/s
            time.sleep(0.98)
            depth_seen = max(
                depth_seen, metric_sum(scrape(node.metrics_url), "flowsink_queue_depth_datagrams")
            )
        accepted_flows = exporter.flows_sent
        during_outage = accepted_flows / FLOWS - 100
        assert depth_seen >= 0.8 * during_outage, (
            f"queue depth {depth_seen} while ES was down ({during_outage} sent)"
        )
        time.sleep(2)  # the receiver publishes its counters about once a second
        values = scrape(node.metrics_url)
        assert metric_sum(values, "flowsink_elasticsearch_up") == 0
        assert metric_sum(values, "flowsink_queue_dropped_total") == 0
        written_before = metric_sum(values, "flowsink_queue_written_datagrams_total")
        assert written_before == accepted_flows / FLOWS

        # -- still down, and now more is sent than the queue's 3 MiB budget can hold
        overflow = [exporter.datagram(FLOWS) for _ in range(2500)]  # ~3.8 MB of datagrams
        node.send(overflow, rate_per_s=2000)
        wait_metric(node, "flowsink_queue_dropped_total", lambda v: v > 0, timeout_s=20)
        time.sleep(2)  # the receiver publishes its counters about once a second
        values = scrape(node.metrics_url)
        written = metric_sum(values, "flowsink_queue_written_datagrams_total") - written_before
        dropped = metric_sum(values, "flowsink_queue_dropped_total")
        assert metric_sum(values, "flowsink_udp_receive_drops") == 0
        assert written + dropped == len(overflow), (written, dropped)
        assert 0 < written < len(overflow)
        assert metric_sum(values, "flowsink_queue_dropped_total", reason="full") == dropped

        # -- back: everything accepted arrives, once, and the queue empties
        private_es.start()
        expected = accepted_flows + int(written) * FLOWS
        assert wait_for_count(es, "tout", expected, timeout_s=180) == expected, node.log()
        assert distinct_flows(es, "tout") == (expected, 1)
        wait_metric(node, "flowsink_queue_depth_datagrams", lambda v: v == 0)
        assert node.stop() == 0
        assert count_docs(es, "tout") == expected
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
        es.close()
