"""SIGTERM while Elasticsearch is unreachable: the node gives the bulk in flight its shutdown timeout, exits 0,
and what it could not index stays queued for the next start, which indexes it once."""

from __future__ import annotations

import time

import pytest

from support.node import (
    NodeProcess,
    TcpProxy,
    V5Exporter,
    cleanup_prefix,
    distinct_flows,
    metric_sum,
    scrape,
    wait_for_count,
)

pytestmark = pytest.mark.integration


def test_sigterm_with_elasticsearch_unreachable_exits_0_and_keeps_the_data(
    tmp_path, es, es_url, unique_prefix
):
    proxy = TcpProxy(es_url)
    node = NodeProcess(
        tmp_path,
        proxy.url,
        unique_prefix,
        settings={
            "pipeline": {"shutdown_timeout_s": 3},
            "elasticsearch": {"retry_max_backoff_s": 0.5, "request_timeout_s": 5},
        },
    )
    exporter = V5Exporter(engine_id=5)
    try:
        node.start()
        node.send([exporter.datagram(30) for _ in range(50)], rate_per_s=2000)
        assert wait_for_count(es, unique_prefix, 1500) == 1500
        proxy.cut()
        node.send([exporter.datagram(30) for _ in range(100)], rate_per_s=2000)
        deadline = time.monotonic() + 20
        while metric_sum(scrape(node.metrics_url), "flowsink_queue_written_datagrams_total") < 150:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.3)
        time.sleep(1)
        assert wait_for_count(es, unique_prefix, 1500, timeout_s=1) == 1500  # nothing got through
        started = time.monotonic()
        assert node.stop(timeout_s=60) == 0
        assert time.monotonic() - started < 3 + 15
        assert "stays queued" in node.log(), node.log()
        assert wait_for_count(es, unique_prefix, 1500, timeout_s=1) == 1500
        proxy.restore()
        node.start()
        assert wait_for_count(es, unique_prefix, 4500) == 4500
        assert distinct_flows(es, unique_prefix) == (4500, 1)
        assert node.stop() == 0
    finally:
        proxy.cut()
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
        cleanup_prefix(es, unique_prefix)
