"""Elasticsearch killed (SIGKILL) in the middle of indexing: nothing lost, nothing indexed twice."""

from __future__ import annotations

import threading
import time

import pytest
from elasticsearch import Elasticsearch

from flowsink.sinks import SinkOutcome
from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates
from flowsink.sinks.elasticsearch.sink import ElasticsearchSink

TOTAL = 100_000
BATCH = 5_000


def _documents(start: int, count: int) -> list[dict]:
    """Small flow documents (the test is about delivery, not mapping) with deterministic ids."""
    return [
        {
            "_index": "flowsink-flows-2026.11.23",
            "_id": f"crash-{n}",
            "@timestamp": f"2026-11-23T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
            "event": {"action": "netflow_flow"},
            "source": {"ip": f"10.0.{n // 256 % 256}.{n % 256}", "port": n % 65536, "bytes": n},
        }
        for n in range(start, start + count)
    ]


@pytest.mark.integration
@pytest.mark.slow
def test_kill_and_restart_mid_indexing_loses_and_duplicates_nothing(private_es, tmp_path):
    client = Elasticsearch(private_es.url, request_timeout=30)
    install_templates(client, TemplateSettings())
    sent_docs = 0
    sent_lock = threading.Lock()

    def observe(_seconds: float, docs: int, _nbytes: int, result: str) -> None:
        nonlocal sent_docs
        if result != "failed":
            with sent_lock:
                sent_docs += docs

    sink = ElasticsearchSink(
        url=[private_es.url],
        observer=observe,
        bulk_max_docs=2500,
        retry_max_backoff_s=1.0,
        request_timeout_s=10,
        dead_letter_path=tmp_path / "dead-letter.jsonl",
    )
    outcome = SinkOutcome()
    failure: list[BaseException] = []

    def feed() -> None:
        # As the pipeline does: one batch at a time, the next only once the previous is fully indexed.
        try:
            for start in range(0, TOTAL, BATCH):
                outcome.add(sink.index(_documents(start, BATCH)))
        except BaseException as exc:
            failure.append(exc)

    began = time.monotonic()
    feeder = threading.Thread(target=feed)
    feeder.start()
    deadline = time.monotonic() + 120
    while sent_docs < TOTAL // 3 and time.monotonic() < deadline and feeder.is_alive():
        time.sleep(0.05)
    assert sent_docs < TOTAL, "indexing finished before the kill; the test would prove nothing"
    private_es.kill()
    killed_at, kill_time = sent_docs, time.monotonic() - began
    time.sleep(1)
    private_es.start()
    restart_time = time.monotonic() - began
    feeder.join(180)
    done_time = time.monotonic() - began
    sink.close()
    assert not feeder.is_alive() and not failure, failure

    client.indices.refresh(index="flowsink-flows-*")
    assert client.count(index="flowsink-flows-*")["count"] == TOTAL
    assert outcome.written + outcome.already_present == TOTAL
    assert outcome.dead_lettered == 0 and outcome.retries > 0
    print(
        f"killed after {killed_at} docs acknowledged at {kill_time:.1f} s, up again at {restart_time:.1f} s,"
        f" all indexed at {done_time:.1f} s; retries {outcome.retries}, duplicates {outcome.already_present}"
    )
    client.close()
