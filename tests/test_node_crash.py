"""Exactly-once results from at-least-once delivery: `kill -9` of the node twice while it indexes a backlog."""

from __future__ import annotations

import random
import socket
import time

import pytest

from flowsink.receive import socket_drop_stats
from support.node import NodeProcess, V5Exporter, cleanup_prefix, distinct_flows, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL_FLOWS = 200_000
FLOWS_PER_DATAGRAM = 30
RATE_FLOWS_PER_S = 25_000


def wait_socket_drained(port: int, timeout_s: float = 10.0) -> None:
    """Until the kernel buffers of the node's sockets are empty: every datagram sent has reached its queue."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if socket_drop_stats([port])[port]["rx_queue"] == 0:
            time.sleep(0.1)  # read already; give the receiver's write() its moment
            return
        time.sleep(0.02)
    raise AssertionError(f"UDP port {port} still has bytes queued in the kernel after {timeout_s}s")


def test_kill_9_twice_no_loss_no_duplicates(tmp_path, es, es_url, unique_prefix):
    node = NodeProcess(
        tmp_path,
        es_url,
        unique_prefix,
        settings={"receive": {"processes": 2}, "elasticsearch": {"bulk_max_docs": 2000}},
    )
    exporters = [V5Exporter(engine_id=1), V5Exporter(engine_id=2, first_flow=1 << 24)]
    datagrams = TOTAL_FLOWS // FLOWS_PER_DATAGRAM + 1
    plan = [exporters[i % 2].datagram(FLOWS_PER_DATAGRAM) for i in range(datagrams)]
    sent_flows = sum(e.flows_sent for e in exporters)
    assert sent_flows >= TOTAL_FLOWS
    rng = random.Random()
    kill_points = sorted(rng.sample(range(datagrams // 5, datagrams * 4 // 5), 2))
    # two sockets = two source ports, so SO_REUSEPORT can spread the exporters over both receivers
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in exporters]
    try:
        node.start()
        interval = FLOWS_PER_DATAGRAM / RATE_FLOWS_PER_S
        started = time.monotonic()
        for i, payload in enumerate(plan):
            if i in kill_points:
                # UDP cannot be acknowledged: what sits in the kernel buffer at a crash is gone by design,
                # so let the receivers take what was sent, then kill while the pipeline is mid-backlog.
                wait_socket_drained(node.udp_port)
                node.kill9()
                node.start()
                started = time.monotonic() - i * interval
            senders[i % 2].sendto(payload, ("127.0.0.1", node.udp_port))
            ahead = started + (i + 1) * interval - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        wait_socket_drained(node.udp_port)
        count = wait_for_count(es, unique_prefix, sent_flows, timeout_s=180)
        assert count == sent_flows, node.log()
        assert distinct_flows(es, unique_prefix) == (sent_flows, 1)
        assert node.stop() == 0
        assert count == wait_for_count(es, unique_prefix, sent_flows, timeout_s=1)
    finally:
        for sock in senders:
            sock.close()
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
        cleanup_prefix(es, unique_prefix)
