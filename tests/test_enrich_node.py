"""`flowsink run` with an ``enrich`` section: UDP in, the file output's documents carry the additions; SIGHUP with a
changed name and the documents after it carry the new one (the worker's enricher rebuilt, its caches empty)."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import orjson
import pytest
import yaml

from support.node import NodeProcess, V5Exporter


def _unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _documents(out: Path, at_least: int, node: NodeProcess) -> list[dict]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < at_least):
        time.sleep(0.2)
    lines = out.read_bytes().splitlines() if out.exists() else []
    assert len(lines) >= at_least, node.log()
    return [orjson.loads(line) for line in lines]


def _send(node: NodeProcess, exporter: V5Exporter, datagrams: int) -> None:
    node.send([exporter.datagram(30) for _ in range(datagrams)], rate_per_s=500)


@pytest.mark.integration
def test_a_node_enriches_what_it_receives_and_sighup_changes_it(tmp_path: Path):
    out = tmp_path / "flows.ndjson"
    enrich = {
        "internal_networks": ["10.0.0.0/8"],
        "exporters": {
            "127.0.0.1": {
                "name": "edge-1",
                "tags": ["lab"],
                "labels": {"site": "par1"},
                "interfaces": {1: {"name": "uplink", "alias": "to the core", "speed": 10_000_000_000}},
            }
        },
    }
    node = NodeProcess(
        tmp_path,
        _unused_url(),  # no Elasticsearch: the file output only
        "unused",
        settings={"output": ["file"], "file": {"path": str(out)}, "enrich": enrich},
    )
    node.start()
    exporter = V5Exporter()  # flows from 10.x.x.x (internal) to 198.51.100.1 (external), ifIndex 1 -> 2
    _send(node, exporter, 10)
    first = _documents(out, 300, node)
    assert len(first) == 300
    for document in first:
        assert document["observer"]["name"] == "edge-1"
        assert document["observer"]["ingress"]["interface"] == {
            "id": "1",
            "name": "uplink",
            "alias": "to the core",
            "speed": 10_000_000_000,
        }
        assert document["observer"]["egress"]["interface"] == {"id": "2"}
        assert (document["source"]["locality"], document["destination"]["locality"]) == (
            "internal",
            "external",
        )
        assert (document["network"]["direction"], document["flow"]["locality"]) == ("outbound", "external")
        assert document["related"] == {"ip": [document["source"]["ip"], "198.51.100.1"]}
        assert (document["labels"], document["tags"]) == ({"site": "par1"}, ["lab"])

    config = yaml.safe_load(node.config_path.read_text())
    config["enrich"]["exporters"]["127.0.0.1"]["name"] = "edge-2"
    config["enrich"]["internal_networks"].append("198.51.100.0/24")
    node.config_path.write_text(yaml.safe_dump(config))
    node.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "pipeline settings reloaded" not in node.log():
        time.sleep(0.2)
    reloaded = [line for line in node.log().splitlines() if "pipeline settings reloaded" in line]
    assert reloaded and "enrich.exporters" in reloaded[0] and "enrich.internal_networks" in reloaded[0], (
        node.log()
    )
    _send(node, exporter, 10)
    second = _documents(out, 600, node)[300:]
    assert len(second) == 300
    for document in second:
        assert document["observer"]["name"] == "edge-2"
        # 198.51.100.1 is internal now: the cache of the first enricher is gone with it
        assert (document["network"]["direction"], document["flow"]["locality"]) == ("internal", "internal")
    assert node.stop() == 0


def _wait_for(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.integration
def test_a_node_takes_geoip_and_snmp_names_and_a_replaced_database_without_a_restart(tmp_path: Path):
    """GeoIP and AS from a database the node snapshots, names polled from a real snmpd under the configured ones,
    and the database rewritten in place while the node runs: later documents carry the new AS, none is lost."""
    from support import geoip
    from support.node import metric_sum, scrape
    from support.snmpd import ALIAS, COMMUNITY, SYS_NAME, host_interfaces, start_snmpd

    agent = start_snmpd(tmp_path / "snmpd")
    database = tmp_path / "GeoLite2-ASN.mmdb"
    first = {
        "198.51.100.0/24": {"autonomous_system_number": 64501, "autonomous_system_organization": "First"}
    }
    geoip.write_database(database, "GeoLite2-ASN", first)
    out = tmp_path / "flows.ndjson"
    enrich = {
        "internal_networks": ["10.0.0.0/8"],
        "geoip_databases": [str(database), str(geoip.city_database())],
        "geoip_check_interval_s": 0.5,
        "snmp_targets": [f"127.0.0.1:{agent.port}"],
        "snmp_community": COMMUNITY,
        "snmp_refresh_interval_s": 2,
        "exporters": {"127.0.0.1": {"interfaces": {2: {"name": "configured-2"}}}},
    }
    node = NodeProcess(
        tmp_path,
        _unused_url(),
        "unused",
        settings={"output": ["file"], "file": {"path": str(out)}, "enrich": enrich},
    )
    node.start()
    try:
        names = tmp_path / "run" / "enrich" / "snmp.json"
        assert _wait_for(names.exists), node.log()
        exporter = V5Exporter()  # 10.x.x.x (internal) -> 198.51.100.1, ifIndex 1 -> 2
        # the first poll may take a moment: send until the documents carry the polled sysName
        sent = 0
        while sent < 40:
            _send(node, exporter, 1)
            sent += 1
            documents = _documents(out, 30 * sent, node)
            if documents[-1]["observer"].get("name") == SYS_NAME:
                break
            time.sleep(0.5)
        document = documents[-1]
        assert document["observer"]["name"] == SYS_NAME, (names.exists(), node.log())
        interfaces = host_interfaces()
        assert document["observer"]["ingress"]["interface"]["name"] == interfaces[1]
        assert document["observer"]["ingress"]["interface"]["alias"] == ALIAS
        assert (
            document["observer"]["egress"]["interface"]["name"] == "configured-2"
        )  # configured beats polled
        assert document["destination"]["as"] == {"number": 64501, "organization": {"name": "First"}}
        assert document["destination"]["geo"]["city_name"] == "Berlin"

        # rewritten in place, as `cp new.mmdb GeoLite2-ASN.mmdb` does
        second = geoip.write_database(
            tmp_path / "second.mmdb",
            "GeoLite2-ASN",
            {
                "198.51.100.0/24": {
                    "autonomous_system_number": 64502,
                    "autonomous_system_organization": "Second",
                }
            },
        )
        database.write_bytes(second.read_bytes())
        total = len(documents)
        for _ in range(60):
            _send(node, exporter, 1)
            total += 30
            documents = _documents(out, total, node)
            if documents[-1]["destination"]["as"]["number"] == 64502:
                break
            time.sleep(0.5)
        assert documents[-1]["destination"]["as"] == {"number": 64502, "organization": {"name": "Second"}}, (
            node.log()
        )
        assert (
            len({(d["source"]["ip"], d["source"]["port"]) for d in documents}) == total
        )  # none lost or doubled
        values = scrape(node.metrics_url)
        assert metric_sum(values, "flowsink_enrich_geoip_updates_total", result="ok") >= 3
        assert metric_sum(values, "flowsink_enrich_reloads_total", source="geoip") >= 1
        assert metric_sum(values, "flowsink_enrich_snmp_polls_total", result="ok") >= 1
        assert metric_sum(values, "flowsink_enrich_address_cache_lookups_total", result="hit") > 0
        assert "GeoIP databases reloaded" in node.log()
    finally:
        assert node.stop() == 0
        agent.stop()
