"""The local stack, for real: nginx in front of three ingest nodes, Prometheus and the exporters, the shared
Elasticsearch behind them (flowsink.stack.local, what `make run` starts when no Docker engine runs).

The stack uses the standard front ports (UDP 2055/4739/6343, HTTP 8080, Prometheus 9090) because those are the
contract; if something else holds one, the module fails with a message naming it. Its documents go to indices
with a unique prefix, deleted afterwards with the templates the nodes installed for that prefix.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowsink.stack import checks as stack_checks
from flowsink.stack import demo as stack_demo
from flowsink.stack import local as stack_local
from flowsink.stack.demo import FIXTURES, TRAFFIC, send_all
from flowsink.stack.nginx import consistent_hash_pick

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPORTERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def _http(
    url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@pytest.fixture(scope="module")
def es_client(es_url: str):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stack(es_url: str, es_client, tmp_path_factory) -> Iterator[stack_local.StackLayout]:
    if os.geteuid() != 0:
        pytest.skip("the local stack's nginx needs root (transparent proxying)")
    layout = stack_local.StackLayout(
        run_dir=tmp_path_factory.mktemp("stack"), es_url=es_url, index_prefix=f"t{uuid.uuid4().hex[:8]}stack"
    )
    if problems := stack_local.busy_ports(layout):
        pytest.fail(
            "the stack test needs the standard flowsink ports (is `make run` up?):\n  "
            + "\n  ".join(problems)
        )
    try:
        stack_local.start(layout, ready_timeout_s=120)
        yield layout
    finally:
        stack_local.stop(layout, stop_elasticsearch=False)
        prefix = layout.index_prefix
        es_client.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
        es_client.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-*")
        es_client.options(ignore_status=404).cluster.delete_component_template(name=f"{prefix}-*")


def test_a_failed_start_leaves_nothing_running(es_url: str, tmp_path: Path, monkeypatch) -> None:
    """A node that cannot start (here: a bad setting in its environment) stops the start-up with its log
    lines in the error, and nothing of the stack keeps running or holding a port."""
    if os.geteuid() != 0:
        pytest.skip("the local stack's nginx needs root (transparent proxying)")
    layout = stack_local.StackLayout(
        run_dir=tmp_path / "stack", es_url=es_url, nodes=1, index_prefix="tfailstart"
    )
    if problems := stack_local.busy_ports(layout):
        pytest.fail(
            "the stack test needs the standard flowsink ports (is `make run` up?):\n  "
            + "\n  ".join(problems)
        )
    monkeypatch.setenv("FLOWSINK_LOGGING_LEVEL", "LOUD")
    with pytest.raises(stack_local.StackError, match=r"node0 exited during start-up(.|\n)*logging.level"):
        stack_local.start(layout, ready_timeout_s=30)
    assert stack_local.running_names(layout) == []
    assert not list(layout.pid_dir.glob("*.pid"))
    assert stack_local.busy_ports(layout) == []
    assert stack_local.stop(layout) == [], "stop after a failed start has nothing left to end"


def _send(sender: str, port: int, payloads: list[bytes], pause_s: float = 0.005) -> None:
    stack_demo.send(sender, "127.0.0.1", port, payloads, pause_s)


def _expected_documents(exporter: str) -> list[dict]:
    """What flowsink's own decoder makes of the traffic one exporter sends (the count each node must index)."""
    from flowsink.decode import DecoderSettings, FlowDecoder

    decoder = FlowDecoder(DecoderSettings())
    documents = []
    for _, files in TRAFFIC:
        for name in files:
            documents += decoder.decode((FIXTURES / name).read_bytes(), exporter, time.time_ns()).documents
    return documents


def _udp_access_log(layout: stack_local.StackLayout) -> list[tuple[str, int, str]]:
    """(client address, front port, upstream address) per datagram, from nginx's stream access log."""
    path = layout.log_dir / "nginx-udp-access.log"
    pattern = re.compile(r"^(\S+) \[[^\]]+\] UDP (\d+) -> (\S+) ")
    return [(m[1], int(m[2]), m[3]) for line in path.read_text().splitlines() if (m := pattern.match(line))]


def _count(es_client, layout: stack_local.StackLayout, query: dict) -> int:
    indices = f"{layout.index_prefix}-flows-*,{layout.index_prefix}-meta-*"
    es_client.indices.refresh(index=indices, ignore_unavailable=True, allow_no_indices=True)
    return es_client.count(index=indices, query=query, ignore_unavailable=True, allow_no_indices=True)[
        "count"
    ]


def _node_metric(layout: stack_local.StackLayout, index: int, name: str, labels: dict[str, str]) -> float:
    _, body = _http(f"http://{layout.node_http_address(index)}/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_flows_through_nginx_keep_their_exporter_and_spread_over_the_nodes(stack, es_client) -> None:
    """NetFlow v9, IPFIX and sFlow from 127.0.0.2/.3/.4 through nginx: every record lands in Elasticsearch with
    its true exporter in observer.ip (sFlow: the agent address inside the datagram, the UDP sender in
    sflow.exporter_address), and nginx spread the exporters over the three nodes as its hash predicts."""
    expected = {exporter: _expected_documents(exporter) for exporter in EXPORTERS}
    assert all(len(docs) >= 40 for docs in expected.values())
    send_all(list(EXPORTERS))

    total = sum(len(docs) for docs in expected.values())
    _wait_for(lambda: _count(es_client, stack, {"match_all": {}}) >= total, 90, f"{total} documents")
    assert _count(es_client, stack, {"match_all": {}}) == total, "more documents than records sent"

    for exporter, docs in expected.items():
        netflow = sum(1 for d in docs if not d["event"]["action"].startswith("sflow"))
        assert netflow > 0
        got = _count(
            es_client,
            stack,
            {
                "bool": {
                    "filter": [
                        {"term": {"observer.ip": exporter}},
                        {"terms": {"netflow.exporter.version": [9, 10]}},
                    ]
                }
            },
        )
        assert got == netflow, (
            f"{exporter}: {got} NetFlow/IPFIX documents with observer.ip={exporter}, want {netflow}"
        )
        sflow = [d for d in docs if d["event"]["action"].startswith("sflow")]
        agents = {d["observer"]["ip"] for d in sflow}
        assert agents == {"192.168.227.2"}, "the capture's agent address"
        got = _count(
            es_client,
            stack,
            {
                "bool": {
                    "filter": [
                        {"term": {"sflow.exporter_address": exporter}},
                        {"terms": {"observer.ip": sorted(agents)}},
                    ]
                }
            },
        )
        assert got == len(sflow), f"{exporter}: {got} sFlow documents, want {len(sflow)}"

    # Where did each exporter go? nginx's log, the ring model, and the nodes' own counters must agree.
    datagrams = {port: len(files) for port, files in TRAFFIC}
    sent = len(EXPORTERS) * sum(datagrams.values())
    _wait_for(lambda: len(_udp_access_log(stack)) >= sent, 10, "nginx's access log (flushed every second)")
    routes = Counter(_udp_access_log(stack))
    nodes_used = set()
    for k, (port, _) in enumerate(TRAFFIC):
        servers = [stack.node_udp_addresses(i)[k] for i in range(stack.nodes)]
        for exporter in EXPORTERS:
            upstreams = {up for (client, front, up) in routes if client == exporter and front == port}
            assert upstreams == {consistent_hash_pick(servers, exporter)}, (
                f"{exporter} -> :{port} went to {upstreams}"
            )
            assert sum(n for (c, f, _), n in routes.items() if c == exporter and f == port) == datagrams[port]
            nodes_used.add(servers.index(upstreams.pop()))
    assert nodes_used == {0, 1, 2}, "the three exporters did not spread over the three nodes"
    for i in range(stack.nodes):
        assert _node_metric(stack, i, "flowsink_datagrams_received_total", {}) > 0, (
            f"node {i} received nothing"
        )


def test_prometheus_scrapes_every_target(stack) -> None:
    url = stack.url(stack.prometheus_port, "/api/v1/targets")

    def all_up():
        targets = json.loads(_http(url)[1])["data"]["activeTargets"]
        return (
            targets if len(targets) == stack.nodes + 4 and all(t["health"] == "up" for t in targets) else None
        )

    targets = _wait_for(all_up, 60, "every Prometheus target up")
    assert {t["labels"]["job"] for t in targets} == {
        "flowsink",
        "nginx",
        "node",
        "elasticsearch",
        "prometheus",
    }
    _, rules = _http(stack.url(stack.prometheus_port, "/api/v1/rules"))
    loaded = [rule["name"] for group in json.loads(rules)["data"]["groups"] for rule in group["rules"]]
    assert len(loaded) == len(list(stack_checks.alert_queries())), "alert rules not loaded"
    # Every panel's query runs on the real Prometheus (Grafana's node variable set to all nodes).
    failing = []
    for board, title, expr in stack_checks.grafana_queries():
        query = urllib.parse.urlencode({"query": expr.replace("$instance", ".*")})
        status, body = _http(stack.url(stack.prometheus_port, f"/api/v1/query?{query}"))
        if status != 200 or json.loads(body)["status"] != "success":
            failing.append(f"{board} / {title}: {body[:200]!r}")
    assert not failing, failing


def test_every_metric_the_dashboards_and_alerts_query_is_exposed(stack) -> None:
    """Scrape the real endpoints: each metric a Grafana panel or an alert names is on one of them. Labelled
    flowsink metrics that only appear once their event happened (a drop, a dead letter) must at least be
    defined in flowsink.metrics; the check says which ones were only found there."""
    import prometheus_client

    import flowsink.metrics

    _send(EXPORTERS[0], 2055, [b"\x00\x09garbage"])  # a decode error, so that counter shows up for real
    urls = [f"http://{stack.node_http_address(i)}/metrics" for i in range(stack.nodes)]
    urls += [
        stack.url(port, "/metrics")
        for port in (
            stack.node_exporter_port,
            stack.nginx_exporter_port,
            stack.elasticsearch_exporter_port,
            stack.prometheus_port,
        )
    ]
    time.sleep(2)
    exposed = set().union(*(stack_checks.exposed_names(stack_checks.scrape(url)) for url in urls))
    exposed.add("up")  # Prometheus' own per-target series
    queries = [expr for _, _, expr in stack_checks.grafana_queries()] + [
        e for _, e in stack_checks.alert_queries()
    ]
    wanted = {name for expr in queries for name in stack_checks.promql_metric_names(expr)}
    labelled = stack_checks.labelled_metric_names(flowsink.metrics)
    defined = stack_checks.registry_names(prometheus_client.REGISTRY)
    not_exposed = wanted - exposed
    missing = sorted(name for name in not_exposed if not (name.startswith("flowsink_") and name in defined))
    assert not missing, f"dashboards or alerts query metrics nothing exposes: {missing}"
    assert "flowsink_decode_errors_total" in exposed and "flowsink_datagrams_received_total" in exposed
    # Only event-driven flowsink counters may be absent from a healthy stack's scrape.
    assert not_exposed <= labelled, sorted(not_exposed - labelled)
    sys.stderr.write(f"\n[stack] queried metrics only defined (no event yet): {sorted(not_exposed)}\n")


def test_http_front_balances_health_and_flows_api(stack) -> None:
    front = stack.url(stack.http_port)
    for _ in range(6):
        status, _ = _http(front + "/healthz")
        assert status == 200
    token = stack_local.api_token(stack)
    hour = 480_000 + int(uuid.uuid4().int % 1000)
    rows = [
        {"src_app": "web", "dest_app": "db", "vpc_id": "vpc-1", "bytes_tx": 100, "bytes_rx": 7, "hour": hour}
    ]
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for _ in range(3):  # three POSTs: least_conn sends them to different nodes
        status, body = _http(front + "/flows", json.dumps(rows).encode(), auth)
        assert status in (200, 201, 202), body[:300]
    status, body = _http(front + f"/flows?hour={hour}", headers=auth)
    assert status == 200, body[:300]
    assert json.loads(body) == [{**rows[0], "bytes_tx": 300, "bytes_rx": 21}]
    log = (stack.log_dir / "nginx-http-access.log").read_text()
    upstreams = set(re.findall(r"upstream=(\S+)", log)) - {"-"}
    assert len(upstreams) >= 2, f"the HTTP front used only {upstreams}"


# ------------------------------------------------------------------------------ node failure

V9_HEADER = struct.Struct("!HHIIII")
# template 256: IPv4 src/dst, ports, protocol, bytes, packets, first/last switched (RFC 3954 field types)
V9_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (22, 4), (21, 4)]
V9_RECORD = struct.Struct("!4s4sHHBIIII")


def _v9_datagram(sequence: int, marker: int, with_template: bool) -> bytes:
    """A NetFlow v9 export with one flow whose source port is ``marker`` (and the template if asked)."""
    flowsets, count = b"", 1
    if with_template:
        body = struct.pack("!HH", 256, len(V9_FIELDS)) + b"".join(struct.pack("!HH", *f) for f in V9_FIELDS)
        flowsets += struct.pack("!HH", 0, 4 + len(body)) + body
        count += 1
    record = V9_RECORD.pack(
        socket.inet_aton("10.9.0.1"), socket.inet_aton("10.9.0.2"), marker, 443, 6, 1500, 3, 1000, 2000
    )
    padded = record + b"\0" * (-len(record) % 4)
    flowsets += struct.pack("!HH", 256, 4 + len(padded)) + padded
    return V9_HEADER.pack(9, count, 5000, int(time.time()), sequence, 77) + flowsets


def test_killing_a_node_moves_its_exporters_and_bounds_the_loss(stack, es_client) -> None:
    """kill -9 the node an exporter hashes to, keep exporting (template re-sent every 20 datagrams, as Cisco's
    default refresh does): nginx_watch marks the node down, nginx moves only that exporter's traffic to the next
    node on the ring, which holds the template-less data until the template comes. Measures what is lost."""
    exporter, port, k = "127.0.0.9", 2055, 0
    servers = [stack.node_udp_addresses(i)[k] for i in range(stack.nodes)]
    home = consistent_hash_pick(servers, exporter)
    victim = servers.index(home)
    failover = consistent_hash_pick(servers, exporter, down=frozenset({home}))
    marker_query = {"bool": {"filter": [{"term": {"observer.ip": exporter}}]}}

    sequence = 0
    template_sent = time.time()
    _send(exporter, port, [_v9_datagram(sequence := sequence + 1, 1000 + n, n == 0) for n in range(20)], 0.01)
    _wait_for(lambda: _count(es_client, stack, marker_query) == 20, 60, "the first 20 flows")
    cache = stack.run_dir / f"node{victim}" / "templates-0.json"
    _wait_for(
        lambda: cache.exists() and cache.stat().st_mtime > template_sent, 20, "the template cache saved"
    )

    pid = stack_local.recorded_pid(stack, f"node{victim}")
    os.killpg(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    sent_at = {}
    for n in range(20, 140):  # 120 datagrams, one every 50 ms: 6 s of exporting
        marker = 1000 + n
        _send(exporter, port, [_v9_datagram(sequence := sequence + 1, marker, n % 20 == 0)], 0)
        sent_at[marker] = time.monotonic() - killed_at
        time.sleep(0.05)

    def indexed_markers() -> set[int]:
        es_client.indices.refresh(index=f"{stack.index_prefix}-flows-*")
        hits = es_client.search(
            index=f"{stack.index_prefix}-flows-*", query=marker_query, size=1000, source=["source.port"]
        )["hits"]["hits"]
        return {hit["_source"]["source"]["port"] for hit in hits}

    def settled() -> set[int] | None:
        first = indexed_markers()
        time.sleep(2)
        second = indexed_markers()
        return second if first == second and len(second) > 20 else None

    markers = _wait_for(settled, 60, "the failover node to index the exporter's flows")
    lost = sorted(set(sent_at) - markers)
    # What is lost was sent in the first moments after the kill, before nginx moved the exporter (about 1 s:
    # two missed checks and a reload; 3 s leaves room for a loaded machine); everything later arrives.
    last_lost_s = max((sent_at[m] for m in lost), default=0.0)
    assert last_lost_s < 3.0, f"datagrams still lost {last_lost_s:.1f} s after the kill: {lost}"
    assert len(lost) < len(sent_at) / 2
    assert {up for (c, f, up) in _udp_access_log(stack) if c == exporter and f == port} == {home, failover}
    first_moved = min(set(sent_at) & markers)
    template_at = next(m for m in sorted(sent_at) if m >= first_moved and (m - 1000) % 20 == 0)
    sys.stderr.write(
        f"\n[stack] node {victim} killed: {len(lost)} of {len(sent_at)} datagrams lost (sent within "
        f"{last_lost_s:.2f} s of the kill, before nginx moved {exporter} from {home} to {failover}); "
        f"{len(markers) - 20} indexed by the failover node, {template_at - first_moved} of them held there "
        f"until the exporter re-sent its template\n"
    )

    # Bring the node back: the watcher puts it back into nginx, its exporter returns to it (the ring did not
    # change), and its saved template cache decodes the exporter's data before any new template arrives.
    spec = stack_local.node_spec(stack, victim)
    stack_local.launch(stack, spec)
    stack_local.wait_ready(stack, spec, 90)
    # The template comes from the cache, not from replaying the queue (a replay would re-index a document: 409).
    _wait_for(lambda: _node_metric(stack, victim, "flowsink_templates", {}) >= 1, 15, "templates loaded")
    assert _node_metric(stack, victim, "flowsink_documents_duplicate_total", {}) == 0
    nginx_conf = stack.config_dir / "nginx.conf"
    _wait_for(lambda: " down;" not in nginx_conf.read_text(), 15, "nginx_watch to put the node back")
    time.sleep(1)  # nginx's new workers take over after the reload
    routed_before = len(_udp_access_log(stack))
    returned = [6000 + n for n in range(5)]
    _send(
        exporter, port, [_v9_datagram(sequence := sequence + 1, marker, False) for marker in returned], 0.05
    )
    _wait_for(
        lambda: set(returned) <= indexed_markers(),
        30,
        "the restarted node to decode template-less data from its template cache",
    )
    _wait_for(lambda: len(_udp_access_log(stack)) >= routed_before + 5, 10, "nginx's access log")
    assert {up for (c, f, up) in _udp_access_log(stack)[routed_before:] if c == exporter} == {home}
