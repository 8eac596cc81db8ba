"""Acceptance of the flows API: concurrent clients get exact hourly sums, also across a kill -9 of a node with
client retries. (test_check_api_accuracy.py tests the command-line checker of the same property.)"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import urllib3

from support.api import TOKEN, ApiClient, ApiProcess, delete_indices, expected_sums
from support.node import NodeProcess, metric_sum, scrape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 8
ROWS = 200_000
BATCH = 1000
HOURS = 24
KEYS = 500


def random_rows(seed: int) -> list[dict]:
    rng = random.Random(seed)
    keys = [(f"app-{rng.randrange(60)}", f"svc-{rng.randrange(60)}", f"vpc-{i % 7}") for i in range(KEYS)]
    rows = []
    for _ in range(ROWS):
        src, dst, vpc = rng.choice(keys)
        # mostly ordinary counts, some near 2**62 so that hourly sums pass 2**64 (exactness beyond doubles)
        big = rng.random() < 0.01
        rows.append(
            {
                "src_app": src,
                "dest_app": dst,
                "vpc_id": vpc,
                "bytes_tx": rng.randrange(1 << 62) if big else rng.randrange(1 << 32),
                "bytes_rx": rng.randrange(1 << 40),
                "hour": rng.randrange(HOURS),
            }
        )
    return rows


def batches_of(rows: list[dict]) -> list[list[dict]]:
    return [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]


def assert_exact(api: ApiProcess, rows: list[dict]) -> None:
    expected = expected_sums(rows)
    for hour in range(HOURS):
        assert api.get_hour(hour) == expected.get(hour, []), f"hour {hour} differs"
    assert api.get_hour(HOURS + 5) == []


def wait_until_folded(es_url: str, prefix: str, timeout_s: float = 60.0) -> None:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(es_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        es.indices.refresh(index=f"{prefix}-aggregates")
        if es.count(index=f"{prefix}-aggregates", query={"term": {"kind": "d"}})["count"] == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the compactor did not fold every delta")


@pytest.fixture
def cleanup(es, unique_prefix):
    yield unique_prefix
    delete_indices(es, unique_prefix)
    # node tests also install index templates named after the prefix
    quiet = es.options(ignore_status=404)
    for kind in ("index_template", "component_template"):
        found = quiet.perform_request("GET", f"/_{kind}/{unique_prefix}*").body.get(f"{kind}s", [])
        for template in found:
            quiet.perform_request("DELETE", f"/_{kind}/{template['name']}")


def test_concurrent_clients_exact_sums(es_url, cleanup, tmp_path):
    prefix = cleanup
    # a short interval so that the compactor folds deltas while clients are still writing
    api = ApiProcess(es_url, prefix, tmp_path / "q", "--compact-interval-s", "2")
    api.start()
    try:
        rows = random_rows(1)

        def send(batch: list[dict]) -> None:
            response = api.post(batch)
            assert response.status == 202, response.data
            assert response.json()["accepted"] == len(batch)

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(send, batches_of(rows)))
        assert_exact(api, rows)
        wait_until_folded(es_url, prefix)  # the sums must not move when deltas become totals
        assert_exact(api, rows)
        assert "compaction failed" not in api.log()
    finally:
        api.stop()
    from elasticsearch import Elasticsearch

    folds = Elasticsearch(es_url).count(index=f"{prefix}-folds")["count"]
    assert folds == HOURS, "the compactor should have folded every hour"


def node_with_api(tmp: Path, es_url: str, prefix: str) -> tuple[NodeProcess, ApiClient]:
    """A real ``flowsink run`` node serving the flows API (its indices under ``prefix``)."""
    tmp.mkdir()
    api = {"enabled": True, "tokens": [TOKEN], "index_prefix": f"{prefix}-app", "compact_interval_s": 2}
    node = NodeProcess(tmp, es_url, prefix, settings={"api": api})
    return node, ApiClient(node.http_port)


def test_kill_9_of_a_node_with_retries_is_exact(es_url, cleanup, tmp_path):
    """Node A (``flowsink run``) is killed mid-run; clients retry unanswered batches with the same
    Idempotency-Key on node B, as nginx would fail over; A restarts and re-applies what it had made durable
    before it serves. Nothing lost, nothing counted twice."""
    prefix = cleanup
    node_a, api_a = node_with_api(tmp_path / "a", es_url, prefix)
    node_b, api_b = node_with_api(tmp_path / "b", es_url, prefix)
    node_a.start()
    node_b.start()
    try:
        rows = random_rows(2)
        batches = batches_of(rows)
        sent = threading.Semaphore(0)
        retried = []

        def send(batch: list[dict]) -> None:
            key = uuid.uuid4().hex
            target = api_a
            for _attempt in range(50):
                try:
                    response = target.post(batch, {"Idempotency-Key": key})
                    if response.status == 202:
                        sent.release()
                        return
                except urllib3.exceptions.HTTPError:
                    pass
                retried.append(key)
                target = api_b
                time.sleep(0.05)
            raise AssertionError("batch never accepted")

        def killer() -> None:
            for _ in range(len(batches) // 2):
                sent.acquire()
            node_a.kill9()

        with ThreadPoolExecutor(CLIENTS + 1) as pool:
            kill_done = pool.submit(killer)
            list(pool.map(send, batches))
            kill_done.result()
        assert retried, "the kill should have interrupted some requests"
        node_a.start()  # re-applies its queue before it serves
        assert_exact(api_b, rows)
        assert_exact(api_a, rows)
        bad = api_b.post([{**rows[0], "bytes_tx": -1}])
        assert bad.status == 400
        metrics = scrape(node_b.metrics_url)
        assert metric_sum(metrics, "flowsink_api_rows_accepted_total") >= len(rows) / 3
        assert metric_sum(metrics, "flowsink_api_requests_rejected_total", reason="invalid_rows") == 1
        assert metric_sum(metrics, "flowsink_api_request_duration_seconds_count", method="POST") > 0
    finally:
        node_a.stop()
        node_b.stop()
