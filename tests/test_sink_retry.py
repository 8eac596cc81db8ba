"""Retry rules of the bulk sink, driven by a scripted stand-in for the bulk API (unit tests of the logic only;
the behaviour against a real node is in test_sink_bulk.py and test_sink_crash.py)."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from elastic_transport import ApiResponseMeta, ConnectionError, HttpHeaders, NodeConfig
from elasticsearch import ApiError

from flowsink.sinks import SinkClosed
from flowsink.sinks.elasticsearch.sink import ElasticsearchSink


def _api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "127.0.0.1", 9200))
    return ApiError(f"HTTP {status}", meta=meta, body={"error": {"type": "test", "reason": "scripted"}})


class ScriptedBulk:
    """Answers each bulk call from ``script(call_number, ids) -> dict | Exception`` and records what was sent."""

    def __init__(self, script):
        self.script = script
        self.sent: list[list[str]] = []

    def options(self, **_kwargs):
        return self

    def bulk(self, body: bytes, **_kwargs):
        lines = body.splitlines()
        ids = [orjson.loads(action)["create"]["_id"] for action in lines[0::2]]
        self.sent.append(ids)
        answer = self.script(len(self.sent), ids)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _items(statuses: list[int]) -> dict:
    items = []
    for status in statuses:
        result = {"status": status}
        if status >= 300:
            result["error"] = {"type": f"error_{status}", "reason": f"status {status}"}
        items.append({"create": result})
    return {"errors": any(s >= 300 for s in statuses), "items": items}


def _docs(n: int) -> list[dict]:
    return [{"_index": "flows", "_id": f"d{i}", "n": i} for i in range(n)]


def _lines(docs: list[dict]) -> list[bytes]:
    """The documents as the decoders hand them over: bulk lines (``write``)."""
    out = []
    for doc in docs:
        source = {k: v for k, v in doc.items() if k[0] != "_"}
        action = {"create": {"_index": doc["_index"], "_id": doc["_id"]}}
        out.append(orjson.dumps(action) + b"\n" + orjson.dumps(source) + b"\n")
    return out


@pytest.fixture(params=["dicts", "lines"])
def index(request):
    """Both ways into the sink: ``index(dicts)`` and ``write(bulk lines)`` follow the same rules."""
    if request.param == "dicts":
        return lambda sink, docs: sink.index(docs)
    return lambda sink, docs: sink.write(_lines(docs))


def _sink(client, tmp_path, **settings) -> ElasticsearchSink:
    settings = {
        "retry_initial_backoff_s": 0.001,
        "retry_max_backoff_s": 0.01,
        "dead_letter_path": tmp_path / "dl.jsonl",
        **settings,
    }
    return ElasticsearchSink(client=client, **settings)


def test_only_items_refused_with_429_or_503_are_sent_again(tmp_path, index):
    def script(call, ids):
        if call == 1:
            return _items([201, 429, 201, 503, 409])
        return _items([201] * len(ids))

    client = ScriptedBulk(script)
    outcome = index(_sink(client, tmp_path), _docs(5))
    assert client.sent == [["d0", "d1", "d2", "d3", "d4"], ["d1", "d3"]]
    assert (outcome.written, outcome.already_present, outcome.dead_lettered, outcome.retries) == (4, 1, 0, 2)


def test_observer_sees_each_request_with_its_own_size(tmp_path, index):
    seen: list[tuple[int, str]] = []
    client = ScriptedBulk(lambda call, ids: _items([429, 201, 201] if call == 1 else [201] * len(ids)))
    sink = _sink(
        client,
        tmp_path,
        bulk_concurrency=1,
        observer=lambda _s, docs, _b, result: seen.append((docs, result)),
    )
    index(sink, _docs(3))
    assert seen == [(3, "item_errors"), (1, "ok")]


def test_persistent_500_item_is_dead_lettered_after_its_attempts(tmp_path, index):
    client = ScriptedBulk(lambda call, ids: _items([500 if i == "d1" else 201 for i in ids]))
    outcome = index(_sink(client, tmp_path, retry_max_item_attempts=4), _docs(3))
    assert [len(ids) for ids in client.sent] == [3, 1, 1, 1]
    assert (outcome.written, outcome.dead_lettered) == (2, 1)
    assert outcome.dead_letter_reasons == {"error_500": 1}
    record = orjson.loads((tmp_path / "dl.jsonl").read_bytes().splitlines()[0])
    assert record["id"] == "d1" and record["status"] == 500 and record["document"] == {"n": 1}


def test_429_items_are_retried_for_ever(tmp_path, index):
    client = ScriptedBulk(lambda call, ids: _items([429] * len(ids) if call < 30 else [201] * len(ids)))
    outcome = index(_sink(client, tmp_path, retry_max_item_attempts=2), _docs(2))
    assert outcome.written == 2 and outcome.dead_lettered == 0 and len(client.sent) == 30


def test_unreachable_cluster_is_retried_until_it_answers(tmp_path, index):
    def script(call, ids):
        if call <= 5:
            return ConnectionError("Connection refused")
        if call <= 7:
            return _api_error(503)
        return _items([201] * len(ids))

    client = ScriptedBulk(script)
    outcome = index(_sink(client, tmp_path), _docs(4))
    assert outcome.written == 4 and outcome.retries == 4 * 7
    assert all(ids == ["d0", "d1", "d2", "d3"] for ids in client.sent)


def test_request_too_large_is_halved_down_to_the_culprit(tmp_path, index):
    def script(call, ids):
        return _api_error(413) if "d5" in ids else _items([201] * len(ids))

    client = ScriptedBulk(script)
    outcome = index(_sink(client, tmp_path), _docs(8))
    assert (outcome.written, outcome.dead_lettered) == (7, 1)
    assert outcome.dead_letter_reasons == {"request_rejected": 1}
    assert ["d5"] in client.sent


def test_chunks_respect_count_and_bytes(tmp_path, index):
    client = ScriptedBulk(lambda call, ids: _items([201] * len(ids)))
    docs = [{"_index": "flows", "_id": f"d{i}", "pad": "x" * 400} for i in range(50)]
    index(_sink(client, tmp_path, bulk_max_docs=20, bulk_max_bytes=4096, bulk_concurrency=1), docs)
    assert max(len(ids) for ids in client.sent) <= 20
    assert all(len(ids) * 450 <= 4096 for ids in client.sent)
    assert sum(len(ids) for ids in client.sent) == 50


def test_close_interrupts_a_caller_stuck_retrying(tmp_path):
    client = ScriptedBulk(lambda call, ids: ConnectionError("Connection refused"))
    sink = _sink(client, tmp_path, retry_initial_backoff_s=0.05, retry_max_backoff_s=0.05)
    raised: list[BaseException] = []

    def run():
        try:
            sink.index(_docs(1))
        except SinkClosed as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    sink.close()
    thread.join(5)
    assert not thread.is_alive() and len(raised) == 1
    with pytest.raises(SinkClosed):
        sink.index(_docs(1))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="op_type"):
        ElasticsearchSink(client=ScriptedBulk(None), op_type="upsert")
    with pytest.raises(TypeError, match="unknown sink settings: batch"):
        ElasticsearchSink(client=ScriptedBulk(None), batch=3)


def test_a_batch_not_placed_in_time_is_handed_back_and_placed_when_offered_again(tmp_path):
    """``write`` gives up waiting after give_back_after_s: the lines still pending (and only those) come back in
    retry_later, the backoff carries over to the next offer, and the next offer places them."""
    down = threading.Event()
    down.set()

    def script(call, ids):
        if call == 1:  # the first request: two items refused, the rest stored
            return _items([429 if i in ("d1", "d3") else 201 for i in ids])
        if down.is_set():
            return ConnectionError("Connection refused")
        return _items([201] * len(ids))

    client = ScriptedBulk(script)
    sink = _sink(
        client, tmp_path, retry_initial_backoff_s=0.02, retry_max_backoff_s=0.05, give_back_after_s=0.3
    )
    started = time.monotonic()
    first = sink.write(_lines(_docs(5)))
    assert 0.2 < time.monotonic() - started < 2.0
    assert first.written == 3 and first.settled == 3
    assert [orjson.loads(line.split(b"\n")[0])["create"]["_id"] for line in first.retry_later] == ["d1", "d3"]
    down.clear()
    second = sink.write(first.retry_later)
    assert (second.written, second.retry_later) == (2, [])
    assert sink.totals().written == 5


def test_dicts_are_never_handed_back(tmp_path):
    """``index(dicts)`` has no queue behind it: it keeps retrying however long it takes."""
    calls = []

    def script(call, ids):
        calls.append(time.monotonic())
        return ConnectionError("refused") if call < 8 else _items([201] * len(ids))

    sink = _sink(client := ScriptedBulk(script), tmp_path, retry_max_backoff_s=0.05, give_back_after_s=0.1)
    outcome = sink.index(_docs(2))
    assert outcome.written == 2 and outcome.retry_later == [] and len(client.sent) == 8
