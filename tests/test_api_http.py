"""The flows API over real HTTP against a real Elasticsearch: every bad input, auth, gzip, paging,
read-your-writes across two nodes, /openapi.json and a short schemathesis run."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from support.api import TOKEN, ApiProcess, delete_indices, expected_sums

pytestmark = pytest.mark.integration

ROW = {"src_app": "web", "dest_app": "db", "vpc_id": "vpc-1", "bytes_tx": 10, "bytes_rx": 20, "hour": 7}
BAD_HOUR = 4242  # every rejected request writes here; it must stay empty


@pytest.fixture(scope="module")
def api(es_url, tmp_path_factory):
    """One server (small limits so that 413 is cheap to provoke) and its indices, for the whole module."""
    from elasticsearch import Elasticsearch

    prefix = f"t{uuid.uuid4().hex[:10]}"
    queue = tmp_path_factory.mktemp("api") / "q"
    server = ApiProcess(es_url, prefix, queue, "--body-limit-bytes", "200000", "--rows-limit", "500").start()
    yield server
    server.stop()
    delete_indices(Elasticsearch(es_url), prefix)


def error_of(response, status: int, reason: str) -> dict:
    assert response.status == status, response.data
    body = orjson.loads(response.data)
    assert body["error"] == reason and body["message"], body
    return body


def bad_row(**change) -> dict:
    return {**ROW, "hour": BAD_HOUR, **change}


def test_invalid_rows_are_rejected_whole_with_row_field_reason(api):
    body = error_of(
        api.post([bad_row(), bad_row(src_app=""), bad_row(bytes_tx=-5, extra=1)]), 400, "invalid_rows"
    )
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(1, "src_app"), (2, "bytes_tx"), (2, "extra")]
    assert "2 of 3 rows are invalid" in body["message"]
    assert api.get_hour(BAD_HOUR) == []


@pytest.mark.parametrize(
    ("make_request", "status", "reason"),
    [
        (lambda a: a.post(b"[{not json"), 400, "malformed_json"),
        (lambda a: a.post(b'{"rows": []}'), 400, "not_an_array"),
        (lambda a: a.post([bad_row()] * 501), 413, "too_many_rows"),
        (lambda a: a.post(b"[" + b" " * 200_001 + b"]"), 413, "body_too_large"),
        (
            lambda a: a.post(
                gzip.compress(orjson.dumps([bad_row()]) + b" " * 300_000), {"Content-Encoding": "gzip"}
            ),
            413,
            "body_too_large",
        ),
        (lambda a: a.post(b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}), 400, "bad_gzip"),
        (
            lambda a: a.post(orjson.dumps([bad_row()]), {"Content-Encoding": "br"}),
            415,
            "unsupported_encoding",
        ),
        (
            lambda a: a.post(orjson.dumps([bad_row()]), {"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (lambda a: a.post(orjson.dumps([bad_row()]), {"Authorization": ""}), 401, "unauthorized"),
        (lambda a: a.post(orjson.dumps([bad_row()]), {"Authorization": "Bearer wrong"}), 401, "unauthorized"),
        (
            lambda a: a.post(orjson.dumps([bad_row()]), {"Authorization": f"Basic {TOKEN}"}),
            401,
            "unauthorized",
        ),
    ],
)
def test_bad_requests_get_their_status_and_write_nothing(api, make_request, status, reason):
    response = make_request(api)
    error_of(response, status, reason)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.get_hour(BAD_HOUR) == []


def test_get_bad_parameters_and_auth(api):
    for query in ("", "hour=", "hour=-1", "hour=1.5", "hour=abc", "hour=99999999999999999999"):
        error_of(api.get(query), 400, "bad_hour")
    error_of(api.get("hour=1&limit=0"), 400, "bad_limit")
    error_of(api.get("hour=1&after=%21%21"), 400, "bad_cursor")
    error_of(api.get("hour=1", headers={}), 401, "unauthorized")


def test_empty_array_gzip_and_both_tokens(api):
    response = api.post([])
    assert response.status == 202 and orjson.loads(response.data)["accepted"] == 0
    rows = [{**ROW, "hour": 101, "src_app": f"app-{i}"} for i in range(3)]
    gz = api.post(gzip.compress(orjson.dumps(rows[:2])), {"Content-Encoding": "gzip"})
    assert gz.status == 202 and orjson.loads(gz.data) | {"batch_id": ""} == {
        "accepted": 2, "applied": True, "batch_id": "",
    }  # fmt: skip
    other_token = api.post(rows[2:], {"Authorization": "Bearer test-token-2"})
    assert other_token.status == 202
    assert api.get_hour(101) == expected_sums(rows)[101]
    assert api.get_hour(102) == []


def test_retry_with_same_idempotency_key_counts_once(api):
    rows = [{**ROW, "hour": 103}]
    for _ in range(3):
        assert api.post(rows, {"Idempotency-Key": "retry-1"}).status == 202
    # the same key with a different body is a different batch (a client bug must not drop rows)
    assert api.post([{**ROW, "hour": 103, "bytes_tx": 1}], {"Idempotency-Key": "retry-1"}).status == 202
    assert api.get_hour(103) == [{**ROW, "hour": 103, "bytes_tx": 11, "bytes_rx": 40}]


def test_pagination_walks_every_key_once(api):
    rows = [
        {**ROW, "hour": 104, "src_app": f"s{i % 5}", "dest_app": f"d{i}", "bytes_tx": i} for i in range(23)
    ]
    assert api.post(rows).status == 202
    full = api.get_hour(104)
    assert full == expected_sums(rows)[104] and len(full) == 23
    pages, after = [], None
    while True:
        response = api.get("hour=104&limit=10" + (f"&after={after}" if after else ""))
        assert response.status == 200
        pages.append(orjson.loads(response.data))
        after = response.headers.get("X-Next-After")
        if after is None:
            break
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [row for page in pages for row in page] == full


def test_read_your_writes_across_two_nodes(api, tmp_path):
    other = ApiProcess(api.es_url, api.prefix, tmp_path / "q2").start()
    try:
        for i in range(15):
            rows = [{**ROW, "hour": 105, "src_app": f"r{i}", "bytes_tx": i + 1}]
            writer, reader = (api, other) if i % 2 else (other, api)
            assert writer.post(rows).status == 202
            seen = {row["src_app"]: row["bytes_tx"] for row in reader.get_hour(105)}
            assert seen.get(f"r{i}") == i + 1, f"round {i}: a GET after the POST's 202 must see its rows"
    finally:
        other.stop()


def test_rate_limit_and_queue_full(es_url, tmp_path, unique_prefix, es):
    limited = ApiProcess(
        es_url, unique_prefix, tmp_path / "q", "--rate-limit-rows-per-s", "1", "--rate-limit-burst-rows", "5",
        "--queue-max-bytes", "65536",
    ).start()  # fmt: skip
    try:
        assert limited.post([ROW] * 5).status == 202
        response = limited.post([ROW])
        error_of(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) >= 1
        # another credential has its own bucket; a batch bigger than the queue's budget does not fit
        big = [{**ROW, "src_app": f"{i:0>200}"} for i in range(400)]
        response = limited.post(big, {"Authorization": "Bearer test-token-2"})
        error_of(response, 503, "queue_full")
        assert response.headers["Retry-After"]
        assert limited.get_hour(7) == [{**ROW, "bytes_tx": 50, "bytes_rx": 100}]
    finally:
        limited.stop()
        delete_indices(es, unique_prefix)


def test_openapi_document(api):
    response = api.http.request("GET", api.url + "/openapi.json")
    spec = orjson.loads(response.data)
    assert set(spec["paths"]["/flows"]) == {"get", "post"}
    # what a client must know to retry safely, where its generated client shows it
    assert "may count the batch twice" in spec["paths"]["/flows"]["post"]["description"]
    assert "log it" in spec["components"]["schemas"]["Accepted"]["properties"]["batch_id"]["description"]


@pytest.mark.skipif(
    shutil.which("schemathesis") is None, reason="schemathesis not installed (pip install '.[test]')"
)
def test_schemathesis_finds_no_server_error(api):
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{api.url}/openapi.json", "--checks", "not_a_server_error",
        "--max-examples", "15", "--header", f"Authorization: Bearer {TOKEN}", "--max-time", "15",
        "--generation-deterministic", "--no-color", "--request-timeout", "20",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    # the exit status is the verdict: 0 when every check passed (schemathesis adds warnings to its summary,
    # e.g. that most random `after` cursors are refused, which is right for an opaque cursor)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_sums_beyond_64_bits_stay_exact_through_compaction(api, es):
    big = (1 << 63) - 1
    rows = [{**ROW, "hour": 106, "bytes_tx": big, "bytes_rx": big - i} for i in range(3)]
    assert api.post(rows).status == 202
    expected = [{**ROW, "hour": 106, "bytes_tx": 3 * big, "bytes_rx": 3 * big - 3}]
    assert api.get_hour(106) == expected  # deltas, summed at read
    deadline = time.monotonic() + 60
    query = {"bool": {"filter": [{"term": {"hour": 106}}, {"term": {"kind": "d"}}]}}
    while es.count(index=f"{api.prefix}-aggregates", query=query)["count"]:
        assert time.monotonic() < deadline, "the compactor did not fold hour 106"
        time.sleep(0.5)
    assert api.get_hour(106) == expected  # folded totals, stored beyond 64 bits


def test_a_batch_cut_between_its_deltas_and_its_marker_is_invisible_then_visible_whole(es_url, es, tmp_path):
    """kill -9 of a node after it wrote a batch's deltas and before its marker: no GET shows any of the batch until
    the marker exists; the node's replay then writes the marker and every hour of the batch shows at once."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    writer = ApiProcess(es_url, prefix, tmp_path / "writer", "--apply-timeout-s", "2").start()
    reader = ApiProcess(es_url, prefix, tmp_path / "reader", "--compact-interval-s", "1").start()
    batches = es.options(ignore_status=404).indices
    try:
        before = [{**ROW, "hour": 301, "src_app": "before"}]
        assert writer.post(before).status == 202
        # the markers index refuses writes: the next batch gets its deltas written, then its marker refused
        batches.put_settings(index=f"{prefix}-batches", settings={"index.blocks.write": True})
        rows = [
            {**ROW, "hour": 301, "bytes_tx": 5},
            {**ROW, "hour": 302, "bytes_tx": 7},
            {**ROW, "hour": 302},
        ]
        response = writer.post(rows, {"Idempotency-Key": "cut-batch"})
        body = orjson.loads(response.data)
        assert response.status == 202 and body["applied"] is False  # durable; applied later
        batch_id = body["batch_id"]
        deltas = es.search(index=f"{prefix}-aggregates", query={"term": {"batch": batch_id}}, size=10)
        assert {hit["_source"]["hour"] for hit in deltas["hits"]["hits"]} == {301, 302}
        writer.kill()
        time.sleep(3)  # compaction cycles on the reader: a delta without its marker is never folded either
        assert reader.get_hour(301) == [{**ROW, "hour": 301, "src_app": "before"}]
        assert reader.get_hour(302) == []
        batches.put_settings(index=f"{prefix}-batches", settings={"index.blocks.write": False})
        writer.start()  # the replay applies the batch from the node's queue: its marker makes it visible whole
        assert es.get(index=f"{prefix}-batches", id=batch_id)["found"]
        assert reader.get_hour(301) == expected_sums(before + rows)[301]
        assert reader.get_hour(302) == expected_sums(rows)[302]
    finally:
        writer.stop()
        reader.stop()
        batches.put_settings(index=f"{prefix}-batches", settings={"index.blocks.write": False})
        delete_indices(es, prefix)
