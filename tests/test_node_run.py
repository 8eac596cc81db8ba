"""`flowsink run` as a real subprocess: UDP in, Elasticsearch out, /metrics, /readyz, SIGHUP and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest
import yaml

from support.node import (
    NodeProcess,
    V5Exporter,
    cleanup_prefix,
    count_docs,
    distinct_flows,
    metric_sum,
    scrape,
    wait_for_count,
)

pytestmark = pytest.mark.integration

GARBAGE = [
    b"\x00\x63" + b"x" * 40,  # unknown version 99
    b"\x00\x05\x00\x1e" + b"\x00" * 20,  # v5 header claiming 30 records, none there
    b"\x00\x09\x00\x01" + b"\x00" * 6,  # v9 header cut short
    b"\x00\x0a\x00\x40" + b"\x00" * 12,  # IPFIX header whose length says 64
    b"\x00",  # one byte
]


@pytest.fixture
def node(tmp_path, es, es_url, unique_prefix):
    process = NodeProcess(tmp_path, es_url, unique_prefix)
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(10)
    cleanup_prefix(es, unique_prefix)


def _series(values: dict[str, float], name: str, **labels: str) -> list[float]:
    return [
        v
        for k, v in values.items()
        if k.split("{", 1)[0] == name and all(f'{a}="{b}"' in k for a, b in labels.items())
    ]


def test_garbage_interleaved_every_valid_record_indexed(node, es, unique_prefix):
    node.start()
    # Series known in advance exist at 0 before anything happens: a first burst then shows in increase(), and
    # dashboards read 0 rather than "no data".
    before = scrape(node.metrics_url)
    for name, labels in (
        ("flowsink_queue_dropped_total", {"reason": "full"}),
        ("flowsink_queue_dropped_total", {"reason": "disk_full"}),
        ("flowsink_decode_errors_total", {"protocol": "ipfix", "reason": "truncated"}),
        ("flowsink_documents_dead_lettered_total", {"reason": "document_parsing_exception"}),
        ("flowsink_bulk_requests_total", {"result": "failed"}),
    ):
        assert _series(before, name, **labels) == [0.0], (name, labels)
    exporter = V5Exporter()
    payloads = []
    for i in range(300):
        payloads.append(exporter.datagram(30))
        payloads.append(GARBAGE[i % len(GARBAGE)])
    node.send(payloads, rate_per_s=3000)
    assert wait_for_count(es, unique_prefix, 9000) == 9000
    assert distinct_flows(es, unique_prefix) == (9000, 1)
    time.sleep(1.5)  # the worker publishes its counters after the batch; let the last one land
    values = scrape(node.metrics_url)
    errors = metric_sum(values, "flowsink_decode_errors_total")
    assert errors == 300, {k: v for k, v in values.items() if "decode_errors" in k}
    assert metric_sum(values, "flowsink_decode_errors_total", reason="unknown_version") >= 60
    assert metric_sum(values, "flowsink_decode_errors_total", reason="truncated") >= 60
    assert metric_sum(values, "flowsink_records_decoded_total", protocol="netflow_v5", kind="flow") == 9000
    assert metric_sum(values, "flowsink_datagrams_received_total") == 600
    assert metric_sum(values, "flowsink_documents_indexed_total") == 9000
    assert metric_sum(values, "flowsink_queue_dropped_total") == 0
    # an exporter's gap and loss series appear at 0 with its first datagram, not with its first gap
    assert _series(values, "flowsink_sequence_gaps_total", protocol="netflow_v5") == [0.0]
    assert _series(values, "flowsink_lost_records_total", protocol="netflow_v5") == [0.0]
    assert metric_sum(values, "flowsink_bulk_request_duration_seconds_count") >= 1
    assert "flowsink_udp_receive_drops" in "".join(values)
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/healthz") as response:
        assert json.load(response)["status"] == "ok"
    assert node.stop() == 0


def test_sighup_reloads_safe_settings_only(node):
    config = yaml.safe_load(node.config_path.read_text())
    config["logging"]["format"] = "json"
    node.config_path.write_text(yaml.safe_dump(config))
    node.start()
    config = yaml.safe_load(node.config_path.read_text())
    config["logging"]["level"] = "DEBUG"
    config["pipeline"]["batch_max_datagrams"] = 123
    config["http"]["port"] = node.http_port + 1  # needs a restart: reported, not applied
    node.config_path.write_text(yaml.safe_dump(config))
    node.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "configuration reloaded" not in node.log():
        time.sleep(0.2)
    log = node.log()
    reloaded = next(line for line in log.splitlines() if "configuration reloaded" in line)
    assert "logging.level=DEBUG" in reloaded and "pipeline.batch_max_datagrams=123" in reloaded
    assert "need a restart: http.port" in log
    while time.monotonic() < deadline and "pipeline settings reloaded" not in node.log():
        time.sleep(0.2)
    worker_lines = [line for line in node.log().splitlines() if "pipeline settings reloaded" in line]
    assert worker_lines, node.log()
    worker_line = worker_lines[0]
    assert "logging.level" in worker_line and "pipeline.batch_max_datagrams" in worker_line
    # still serving on the old port
    assert metric_sum(scrape(node.metrics_url), "flowsink_config_reloads_total", result="ok") == 1
    # a broken file on SIGHUP keeps the running settings and says why
    node.config_path.write_text("pipeline:\n  batch_max_datagrams: lots\n")
    node.signal(signal.SIGHUP)
    while time.monotonic() < deadline + 10 and "reload failed" not in node.log():
        time.sleep(0.2)
    assert "pipeline.batch_max_datagrams: expected an integer, got 'lots'" in node.log()
    assert node.stop() == 0
    # logging.format: json -> every line of every process is one JSON object naming its process role
    entries = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    assert {e["role"] for e in entries} >= {"node", "receiver-0", "pipeline-0"}
    assert all(line.startswith("{") for line in node.log().splitlines() if line.strip())


def test_sigterm_drains_queue_and_exits_0(node, es, unique_prefix):
    node.settings = {}
    node.start()
    exporter = V5Exporter(engine_id=3)
    node.send([exporter.datagram(30) for _ in range(400)], rate_per_s=4000)
    assert node.stop() == 0
    # Everything the node accepted before SIGTERM is in Elasticsearch once it has exited: nothing left queued.
    assert count_docs(es, unique_prefix) == 12000
    assert "stopped" in node.log()


def test_dead_pipeline_worker_is_restarted_without_loss(node, es, unique_prefix):
    node.start()
    exporter = V5Exporter(engine_id=4)
    node.send([exporter.datagram(30) for _ in range(200)], rate_per_s=2000)
    pids = json.loads((node.tmp / "run" / "pids.json").read_text())
    os.kill(pids["pipeline-0"], signal.SIGKILL)  # mid-backlog, with its bulk perhaps in flight
    node.wait_ready(timeout_s=60)
    node.send([exporter.datagram(30) for _ in range(200)], rate_per_s=2000)
    assert wait_for_count(es, unique_prefix, 12000) == 12000
    assert distinct_flows(es, unique_prefix) == (12000, 1)
    restarts = metric_sum(scrape(node.metrics_url), "flowsink_process_restarts_total", role="pipeline")
    assert restarts == 1
    assert "pipeline-0 exited" in node.log()
    assert node.stop() == 0


def test_a_loss_before_an_exporter_falls_quiet_is_counted_while_the_node_runs(
    tmp_path, es, es_url, unique_prefix
):
    """Flows lost just before an exporter goes quiet sit in a hole the reorder window (decode.sequence_window, 10,000
    flows for v5) never closes. The running node counts them once the hole is decode.sequence_hole_max_age_s old
    (set to 6 s here): no later traffic, no shutdown needed."""
    node = NodeProcess(tmp_path, es_url, unique_prefix, settings={"decode": {"sequence_hole_max_age_s": 6}})
    try:
        node.start()
        exporter = V5Exporter(engine_id=5)
        first = exporter.datagram(30)
        exporter.datagram(30)  # lost on the way: never sent
        last = exporter.datagram(30)
        sent = time.monotonic()
        node.send([first, last])
        assert wait_for_count(es, unique_prefix, 60) == 60
        lost = gaps = 0.0
        while time.monotonic() - sent < 40 and not lost:
            values = scrape(node.metrics_url)
            lost = metric_sum(
                values, "flowsink_lost_records_total", exporter="127.0.0.1", protocol="netflow_v5"
            )
            gaps = metric_sum(
                values, "flowsink_sequence_gaps_total", exporter="127.0.0.1", protocol="netflow_v5"
            )
            time.sleep(0.25)
        counted_after = time.monotonic() - sent
        assert (lost, gaps) == (30, 1), node.log()
        assert counted_after >= 6  # not before the hole was as old as configured
        assert node.proc is not None and node.proc.poll() is None  # by the running node
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait(10)
        cleanup_prefix(es, unique_prefix)
