"""The bulk sink against the real node: read-back, replays (409), dead letters, concurrency, odd documents."""

from __future__ import annotations

import json
import threading
import uuid

import orjson
import pytest
from elasticsearch import Elasticsearch

from flowsink.generate.documents import flow_documents
from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates, remove_templates
from flowsink.sinks.elasticsearch.sink import ElasticsearchSink

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def templates_prefix(es_url, es_version):
    """flowsink's templates under a prefix of this module's own, installed once (template puts are cluster
    state updates: slow on a busy node)."""
    client = Elasticsearch(es_url, request_timeout=60)
    settings = TemplateSettings(name_prefix=f"t{uuid.uuid4().hex[:10]}", refresh_interval="1s")
    install_templates(client, settings)
    yield settings.name_prefix
    client.options(ignore_status=404).indices.delete(
        index=f"{settings.name_prefix}-*", expand_wildcards="all"
    )
    remove_templates(client, settings)
    client.close()


@pytest.fixture
def prefix(es, templates_prefix):
    """A per-test index prefix whose ``<prefix>-flows-YYYY.MM.DD`` indices get the flows template's mappings."""
    own = f"{templates_prefix}-flows-{uuid.uuid4().hex[:6]}"
    yield own
    es.options(ignore_status=404).indices.delete(index=f"{own}-*")


@pytest.fixture
def sink_factory(es_url, tmp_path):
    sinks: list[ElasticsearchSink] = []

    def make(**settings) -> ElasticsearchSink:
        settings.setdefault("dead_letter_path", tmp_path / "dead-letter.jsonl")
        sink = ElasticsearchSink(url=[es_url], **settings)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def _count(es, index: str) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def test_indexes_and_reads_back_without_metadata_in_source(es, prefix, sink_factory):
    docs = list(flow_documents(1500, prefix))
    sink = sink_factory(bulk_max_docs=350)  # several chunks, sent two at a time
    outcome = sink.index(docs)
    assert (outcome.written, outcome.already_present, outcome.dead_lettered) == (1500, 0, 0)
    assert _count(es, f"{prefix}-flows-*") == 1500
    sample = docs[1234]
    stored = es.get(index=sample["_index"], id=sample["_id"])
    assert stored["_source"] == orjson.loads(orjson.dumps({k: v for k, v in sample.items() if k[0] != "_"}))
    assert "_id" in sample and "_index" in sample, "the caller's documents must not be modified"


def test_replay_is_counted_as_duplicates_not_indexed_twice(es, prefix, sink_factory):
    docs = list(flow_documents(500, prefix))
    sink = sink_factory()
    assert sink.index(docs).written == 500
    replay = sink.index(docs[:200] + list(flow_documents(100, prefix, start=500)))
    assert (replay.written, replay.already_present, replay.dead_lettered) == (100, 200, 0)
    assert _count(es, f"{prefix}-flows-*") == 600
    assert sink.totals().written == 600 and sink.totals().already_present == 200


def test_mapping_conflicts_are_dead_lettered_and_the_rest_indexed(es, prefix, sink_factory, tmp_path):
    good = list(flow_documents(20, prefix))
    bad = [
        dict(good[0], _id="bad-ip", source={"ip": "not-an-address"}),
        dict(good[0], _id="bad-port", destination={"port": "https"}),
        dict(good[0], _id="bad-object", event="a string where an object is mapped"),
    ]
    sink = sink_factory()
    outcome = sink.index(good[:10] + bad + good[10:])
    assert (outcome.written, outcome.dead_lettered) == (20, 3)
    assert sum(outcome.dead_letter_reasons.values()) == 3
    assert _count(es, f"{prefix}-flows-*") == 20

    records = [json.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()]
    by_id = {record["id"]: record for record in records}
    assert set(by_id) == {"bad-ip", "bad-port", "bad-object"}
    assert by_id["bad-ip"]["status"] == 400
    assert "source.ip" in by_id["bad-ip"]["error"]["reason"]
    assert "destination.port" in by_id["bad-port"]["error"]["reason"]
    assert by_id["bad-ip"]["document"]["source"] == {"ip": "not-an-address"}
    assert by_id["bad-ip"]["index"] == good[0]["_index"]
    assert by_id["bad-object"]["error"]["type"] in {"document_parsing_exception", "mapper_parsing_exception"}


def test_dead_letter_index_keeps_the_original_as_text(es, prefix, templates_prefix, sink_factory):
    docs = [dict(next(flow_documents(1, prefix)), _id="x", source={"ip": "999.1.1.1"})]
    dead_letters = f"{templates_prefix}-deadletter-{uuid.uuid4().hex[:6]}"
    sink = sink_factory(dead_letter_index=dead_letters, dead_letter_path=None)
    assert sink.index(docs).dead_lettered == 1
    assert _count(es, f"{dead_letters}-*") == 1
    mapping = es.indices.get_mapping(index=f"{dead_letters}-*")
    assert next(iter(mapping.values()))["mappings"]["dynamic"] == "false"  # the dead-letter template applied
    hit = es.search(index=f"{dead_letters}-*")["hits"]["hits"][0]["_source"]
    assert hit["flowsink"] == {"index": docs[0]["_index"], "id": "x", "op_type": "create"}
    assert hit["http"]["response"]["status_code"] == 400
    assert json.loads(hit["event"]["original"])["source"]["ip"] == "999.1.1.1"


def test_documents_that_cannot_be_sent_are_dead_lettered_not_raised(es, prefix, sink_factory, tmp_path):
    good = list(flow_documents(5, prefix))
    odd = [
        dict(good[0], _id="bytes", payload=b"\x00\x01"),  # not JSON-serialisable
        {"@timestamp": "2026-11-23T00:00:00Z", "_id": "nowhere"},  # no _index
    ]
    outcome = sink_factory().index(good + odd)
    assert (outcome.written, outcome.dead_lettered) == (5, 2)
    assert set(outcome.dead_letter_reasons) == {"serialization_error", "missing_index"}
    ids = {json.loads(line)["id"] for line in (tmp_path / "dead-letter.jsonl").read_text().splitlines()}
    assert ids == {"bytes", "nowhere"}


def test_index_op_with_automatic_ids(es, prefix, sink_factory):
    docs = list(flow_documents(300, prefix, with_ids=False))
    outcome = sink_factory(op_type="index").index(docs)
    assert outcome.written == 300
    assert _count(es, f"{prefix}-flows-*") == 300


def test_concurrent_callers_and_latency_observer(es, prefix, es_url, tmp_path):
    observed: list[tuple[float, int, int, str]] = []
    lock = threading.Lock()

    def observe(seconds: float, docs: int, nbytes: int, result: str) -> None:
        with lock:
            observed.append((seconds, docs, nbytes, result))

    sink = ElasticsearchSink(url=[es_url], observer=observe, bulk_max_docs=125, bulk_concurrency=3)
    try:
        batches = [list(flow_documents(500, prefix, start=n * 500)) for n in range(4)]
        threads = [threading.Thread(target=sink.index, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sink.totals().written == 2000
    finally:
        sink.close()
    assert _count(es, f"{prefix}-flows-*") == 2000
    assert len(observed) == 16 and all(
        result == "ok" and secs > 0 and size > 0 for secs, _, size, result in observed
    )
    assert sum(docs for _, docs, _, _ in observed) == 2000


def _bulk_lines(docs: list[dict]) -> list[bytes]:
    """Documents as the decoders hand them to the sink: action + source lines (``write``)."""
    lines = []
    for doc in docs:
        source = {k: v for k, v in doc.items() if k[0] != "_"}
        action = orjson.dumps({"create": {"_index": doc["_index"], "_id": doc["_id"]}})
        lines.append(action + b"\n" + orjson.dumps(source) + b"\n")
    return lines


def test_bulk_lines_are_indexed_replayed_and_dead_lettered_like_documents(es, prefix, sink_factory, tmp_path):
    good = list(flow_documents(600, prefix))
    bad = [dict(good[0], _id="bad-ip", source={"ip": "not-an-address"})]
    sink = sink_factory(bulk_max_docs=250)
    outcome = sink.write(_bulk_lines(good[:300] + bad + good[300:]))
    assert (outcome.written, outcome.already_present, outcome.dead_lettered) == (600, 0, 1)
    assert _count(es, f"{prefix}-flows-*") == 600
    sample = good[123]
    stored = es.get(index=sample["_index"], id=sample["_id"])["_source"]
    assert stored == orjson.loads(orjson.dumps({k: v for k, v in sample.items() if k[0] != "_"}))

    replay = sink.write(_bulk_lines(good[:100] + list(flow_documents(50, prefix, start=600))))
    assert (replay.written, replay.already_present, replay.dead_lettered) == (50, 100, 0)
    assert _count(es, f"{prefix}-flows-*") == 650
    record = json.loads((tmp_path / "dead-letter.jsonl").read_text().splitlines()[0])
    assert record["id"] == "bad-ip" and record["status"] == 400 and record["index"] == good[0]["_index"]
    assert record["document"]["source"] == {"ip": "not-an-address"}
