"""Pipeline worker against the real persistent queue, the real decoders and the real Elasticsearch."""

from __future__ import annotations

import time

import pytest

from flowsink import metrics
from flowsink.config import load_config
from flowsink.processes import build_worker
from support.node import V5Exporter, cleanup_prefix, count_docs, distinct_flows

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(es, unique_prefix):
    from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates

    install_templates(es, TemplateSettings(name_prefix=unique_prefix))
    yield unique_prefix
    cleanup_prefix(es, unique_prefix)


def make_worker(tmp_path, es_url, prefix, **pipeline):
    config = load_config(
        None,
        env={
            "FLOWSINK_NODE_RUN_DIR": str(tmp_path / "run"),
            "FLOWSINK_ELASTICSEARCH_URL": es_url,
            "FLOWSINK_ELASTICSEARCH_INDEX_PREFIX": prefix,
            "FLOWSINK_RECEIVE_PROCESSES": "1",
            **{f"FLOWSINK_PIPELINE_{k.upper()}": str(v) for k, v in pipeline.items()},
        },
    )
    worker = build_worker(config, 0)
    return worker, worker.queue


def drain(worker):
    total = 0
    while True:
        report = worker.process_batch(timeout_s=0.05)
        if not report.datagrams:
            return total
        total += report.datagrams


def append_all(queue, payloads, exporter="192.0.2.10"):
    for payload in payloads:
        queue.append(payload, exporter, time.time_ns())


def decode_errors(reason):
    return metrics.DECODE_ERRORS.labels(protocol="unknown", reason=reason)._value.get()


def test_valid_records_indexed_garbage_counted_queue_acked(tmp_path, es, es_url, prefix):
    worker, queue = make_worker(tmp_path, es_url, prefix)
    exporter = V5Exporter()
    garbage = [b"", b"\x00", b"\x00\x63not a flow", b"\xff" * 200]
    payloads = []
    for i in range(40):
        payloads.append(exporter.datagram(25))
        payloads.append(garbage[i % len(garbage)])
    before = decode_errors("unknown_version")
    append_all(queue, payloads)
    assert drain(worker) == len(payloads)
    assert count_docs(es, prefix) == exporter.flows_sent == 1000
    distinct, most = distinct_flows(es, prefix)
    assert (distinct, most) == (1000, 1)
    assert decode_errors("unknown_version") - before >= 20  # b"\x00" and b"" may be labelled "truncated"
    stats = queue.stats()
    assert stats["depth_entries"] == 0 and stats["acked_seq"] == stats["last_seq"]


def test_replay_after_unacked_batch_adds_no_duplicates(tmp_path, es, es_url, prefix):
    worker, queue = make_worker(tmp_path, es_url, prefix)
    exporter = V5Exporter(engine_id=7)
    append_all(queue, [exporter.datagram(30) for _ in range(20)])
    # What a crash between indexing and acking leaves behind: documents in Elasticsearch, entries in the queue.
    entries = queue.read(1000, 1.0)
    decoded = [worker.decoder.decode(e.payload, e.source, e.arrival_ns).encoded for e in entries]
    worker.sink.write([line for lines in decoded for line in lines])
    queue.rewind()
    duplicates_before = metrics.DOCUMENTS_DUPLICATE._value.get()
    assert drain(worker) == 20
    assert metrics.DOCUMENTS_DUPLICATE._value.get() - duplicates_before == 600
    assert count_docs(es, prefix) == 600
    assert distinct_flows(es, prefix) == (600, 1)
    assert queue.stats()["depth_entries"] == 0


def test_deterministic_ids_off_uses_auto_ids(tmp_path, es, es_url, prefix):
    worker, queue = make_worker(tmp_path, es_url, prefix, deterministic_ids="false")
    exporter = V5Exporter(engine_id=9)
    append_all(queue, [exporter.datagram(10) for _ in range(5)])
    drain(worker)
    assert count_docs(es, prefix) == 50
    hits = es.search(index=f"{prefix}-flows-*", size=1)["hits"]["hits"]
    assert "." not in hits[0]["_id"]  # the decoder's ids carry the record position after a dot
