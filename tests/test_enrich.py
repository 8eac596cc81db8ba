"""Enrichment (flowsink.enrich): locality and direction by Filebeat's rules, related.ip, interface names and
their precedence, the address cache, the ``enrich`` section's validation, ``flowsink decode --config`` and the
worker's reload. That the C writers and the Python path add the same bytes is tests/test_decode_bulk*.py's and
tests/test_decode_fast*.py's (with support.enrichment)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from flowsink import native
from flowsink.bulk import BulkFormat, split_encoded
from flowsink.config import load_config
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.enrich import hook
from flowsink.enrich.enricher import (
    EXTERNAL,
    INTERNAL,
    Enricher,
    PythonAddressCache,
    build_enricher,
    flow_table,
)
from flowsink.enrich.settings import EnrichSettings
from flowsink.errors import ConfigError
from flowsink.processes import build_worker, reload_worker
from test_decode_netflow_builders import (
    flowset,
    ip4,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    v5_packet,
    v5_record,
    varlen,
)

ARRIVAL_NS = 1_700_000_000_123_456_789
NETWORKS = ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]
CACHES = ["python"] + (["c"] if native.EXTENSION is not None else [])


def enricher(cache: str = "python", networks: list[str] = NETWORKS, **exporters: dict) -> Enricher:
    """An enricher whose address cache is the pure-Python one or the C one."""
    settings = EnrichSettings(internal_networks=list(networks), exporters=exporters)
    settings.validate()
    built = Enricher(settings)
    if built.addresses is not None and cache == "python":
        built.addresses = PythonAddressCache(built.lookup, flow_table(), settings.address_cache_size)
        built._default = built._exporter({})
    return built


def additions(built: Enricher, src: str | None, dst: str | None) -> hook.FlowAddresses:
    found = hook.flow_addresses(built.exporter("192.0.2.1"), src, dst)
    assert found is not None
    return found


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize(
    ("src", "dst", "localities", "direction", "flow_locality"),
    [
        ("10.1.1.1", "192.168.2.2", ("internal", "internal"), "internal", "internal"),
        ("8.8.8.8", "1.1.1.1", ("external", "external"), "external", "external"),
        ("8.8.8.8", "10.0.0.1", ("external", "internal"), "inbound", "external"),
        ("10.0.0.1", "8.8.8.8", ("internal", "external"), "outbound", "external"),
        ("2001:db8::1", "2001:4860::8888", ("internal", "external"), "outbound", "external"),
        ("2001:4860::8888", "2001:db8:ffff::1", ("external", "internal"), "inbound", "external"),
        # IPv4-mapped IPv6 is its IPv4 address, as Go's net.IP (Filebeat) treats it
        ("::ffff:10.9.9.9", "10.0.0.1", ("internal", "internal"), "internal", "internal"),
        # never anyone else's: loopback, link-local, unspecified, limited broadcast, link-local multicast
        ("127.0.0.1", "169.254.7.7", ("internal", "internal"), "internal", "internal"),
        ("fe80::1", "ff02::1:3", ("internal", "internal"), "internal", "internal"),
        ("0.0.0.0", "255.255.255.255", ("internal", "internal"), "internal", "internal"),
        ("224.0.0.251", "224.0.1.1", ("internal", "external"), "outbound", "external"),
    ],
)
def test_locality_and_direction(cache, src, dst, localities, direction, flow_locality):
    found = additions(enricher(cache), src, dst)
    assert (found.source.fields["locality"], found.destination.fields["locality"]) == localities
    assert hook.direction(found, "ingress") == direction
    assert found.flow.fields == {"locality": flow_locality}


@pytest.mark.parametrize("cache", CACHES)
def test_an_address_of_the_other_family_than_every_network_is_external(cache):
    only_v4 = enricher(cache, networks=["0.0.0.0/0"])
    assert additions(only_v4, "2001:db8::1", "10.0.0.1").source.klass == EXTERNAL
    assert additions(only_v4, "2001:db8::1", "10.0.0.1").destination.klass == INTERNAL
    only_v6 = enricher(cache, networks=["::/0"])
    assert additions(only_v6, "10.0.0.1", "2001:db8::1").source.klass == EXTERNAL
    assert additions(only_v6, "10.0.0.1", "2001:db8::1").destination.klass == INTERNAL


@pytest.mark.parametrize("cache", CACHES)
def test_a_flow_with_one_address_keeps_its_direction_and_takes_that_address_locality(cache):
    built = enricher(cache)
    one = additions(built, None, "8.8.8.8")
    assert one.source is None and one.destination.fields == {"locality": "external"}
    assert hook.direction(one, "egress") == "egress"
    assert one.flow.fields == {"locality": "external"} and one.related == ["8.8.8.8"]
    none = additions(built, None, "not an address")
    assert none.flow.fields == {} and none.related == [] and hook.direction(none, "unknown") == "unknown"


@pytest.mark.parametrize("cache", CACHES)
def test_related_ip_lists_each_address_once_source_first(cache):
    built = enricher(cache)
    assert additions(built, "10.0.0.2", "10.0.0.1").related == ["10.0.0.2", "10.0.0.1"]
    assert additions(built, "10.0.0.1", "10.0.0.1").related == ["10.0.0.1"]
    assert additions(built, "2001:db8::1", "2001:db8:0:0::1").related == ["2001:db8::1"]
    # one address in two families is two addresses
    assert additions(built, "::ffff:10.0.0.1", "10.0.0.1").related == ["::ffff:10.0.0.1", "10.0.0.1"]


def test_interface_names_configured_win_the_exporters_own_stay_otherwise():
    built = enricher(
        "python",
        **{
            "192.0.2.1": {"interfaces": {1: {"name": "cfg", "alias": "a", "speed": 10}, 2: {"alias": "only"}}}
        },
    )
    exporter = built.exporter("192.0.2.1")
    assert hook.interface(1, "Gi0/1", exporter) == {"id": "1", "name": "cfg", "alias": "a", "speed": 10}
    assert hook.interface(1, None, exporter) == {"id": "1", "name": "cfg", "alias": "a", "speed": 10}
    assert hook.interface(2, "Gi0/2", exporter) == {"id": "2", "name": "Gi0/2", "alias": "only"}
    assert hook.interface(2, None, exporter) == {"id": "2", "alias": "only"}
    assert hook.interface(3, "Gi0/3", exporter) == {"id": "3", "name": "Gi0/3"}


def _ipfix_with_interface_names() -> list[bytes]:
    """An IPFIX exporter naming ifIndex 10 and 14 in options records, then one flow from 10 to 14."""
    options = ipfix_options_template_set(500, 1, [(10, 4), (82, 65535)])
    names = b"".join(
        index.to_bytes(4, "big") + varlen(name) for index, name in ((10, b"Gi0/10"), (14, b"Gi0/14"))
    )
    flows = ipfix_template_set([(400, [(8, 4), (12, 4), (4, 1), (10, 4), (14, 4), (1, 8), (2, 8)])])
    record = ip4("10.0.0.1") + ip4("8.8.8.8") + bytes([6]) + (10).to_bytes(4, "big") + (14).to_bytes(4, "big")
    record += (1500).to_bytes(8, "big") + (3).to_bytes(8, "big")
    return [
        ipfix_message([options, flows]),
        ipfix_message([flowset(500, names, pad=False)]),
        ipfix_message([flowset(400, record, pad=False)], sequence=2),
    ]


@pytest.mark.parametrize("bulk", [None, BulkFormat()], ids=["dicts", "bulk-lines"])
def test_a_configured_interface_name_replaces_the_options_records_name_in_its_place(bulk):
    exporters = {
        "192.0.2.1": {
            "name": "edge",
            "interfaces": {10: {"name": "uplink", "speed": 10**10}, 14: {"alias": "isp"}},
        }
    }
    decoder = FlowDecoder(
        DecoderSettings(bulk=bulk, enricher=enricher("c" if "c" in CACHES else "python", **exporters))
    )
    documents = []
    for payload in _ipfix_with_interface_names():
        result = decoder.decode(payload, "192.0.2.1", ARRIVAL_NS)
        assert not result.errors
        documents += result.documents
        documents += [orjson.loads(split_encoded(line)[1]) for line in result.encoded]
    flow = next(d for d in documents if d["event"]["action"] == "ipfix_flow")
    assert list(flow["observer"]) == ["ip", "ingress", "egress", "name"]
    assert flow["observer"]["ingress"] == {"interface": {"id": "10", "name": "uplink", "speed": 10**10}}
    assert flow["observer"]["egress"] == {"interface": {"id": "14", "name": "Gi0/14", "alias": "isp"}}
    assert (flow["network"]["direction"], flow["flow"]["locality"]) == ("outbound", "external")
    assert list(flow)[-2:] == ["netflow", "related"] and flow["related"] == {"ip": ["10.0.0.1", "8.8.8.8"]}
    options = [d for d in documents if d["event"]["action"] == "netflow_options"]
    assert len(options) == 2 and all(d["observer"] == {"ip": "192.0.2.1", "name": "edge"} for d in options)
    assert all("related" not in d for d in options)


def test_without_an_enrich_section_nothing_is_added():
    """No section, an empty one, or one whose exporters are not in the traffic: the documents of no enricher."""
    assert build_enricher(EnrichSettings()) is None
    payload = v5_packet([v5_record("10.0.0.1", "8.8.8.8", 3, 1500, 90_000, 95_000)])
    plain = FlowDecoder().decode(payload, "192.0.2.1", ARRIVAL_NS).documents
    elsewhere = build_enricher(EnrichSettings(exporters={"192.0.2.99": {"name": "x", "tags": ["t"]}}))
    assert elsewhere is not None
    other = (
        FlowDecoder(DecoderSettings(enricher=elsewhere)).decode(payload, "192.0.2.1", ARRIVAL_NS).documents
    )
    assert orjson.dumps(other) == orjson.dumps(plain)
    for key in ("related", "labels", "tags"):
        assert key not in plain[0]
    assert plain[0]["network"]["direction"] == "unknown" and "name" not in plain[0]["observer"]


def test_exporter_additions_go_at_the_documents_end_after_related():
    built = enricher(
        **{"192.0.2.1": {"name": "edge", "tags": ["a", "b"], "labels": {"site": "par1", "rack": 7}}}
    )
    payload = v5_packet([v5_record("10.0.0.1", "8.8.8.8", 3, 1500, 90_000, 95_000)])
    (document,) = (
        FlowDecoder(DecoderSettings(enricher=built)).decode(payload, "192.0.2.1", ARRIVAL_NS).documents
    )
    assert list(document)[-4:] == ["netflow", "related", "labels", "tags"]
    assert document["labels"] == {"site": "par1", "rack": "7"}  # ECS labels are keywords
    assert document["tags"] == ["a", "b"]
    assert document["observer"]["name"] == "edge"
    assert document["source"] == {"ip": "10.0.0.1", "port": 1000, "locality": "internal"}


@pytest.mark.parametrize("cache", CACHES)
def test_the_address_cache_is_bounded_and_asks_the_lookup_only_on_a_miss(cache):
    calls = []
    entries = Enricher(EnrichSettings(internal_networks=["10.0.0.0/8"]))

    def lookup(packed: bytes):
        calls.append(packed)
        return entries.lookup(packed)

    cache_class = PythonAddressCache if cache == "python" else native.EXTENSION.AddressCache
    addresses = cache_class(lookup, flow_table(), 256)
    hot = socket.inet_pton(socket.AF_INET, "10.0.0.1")
    assert addresses.get(hot) is addresses.get(hot)
    assert calls == [hot] and (addresses.hits, addresses.misses) == (1, 1)
    for n in range(5000):  # far more addresses than it keeps
        addresses.get(n.to_bytes(4, "big"))
        addresses.get(hot)
    assert len(addresses) <= 256 and addresses.evictions > 0
    assert addresses.misses < 5000 + 100  # the address asked for every time stays (or comes back) cheaply
    # one object per result: a million internal addresses share one entry
    assert addresses.get((10 << 24 | 5).to_bytes(4, "big")) is addresses.get(hot)
    assert addresses.flow(INTERNAL, EXTERNAL).direction == "outbound"
    addresses.clear()
    assert len(addresses) == 0


@pytest.mark.skipif(native.EXTENSION is None, reason="the C extension is not built")
def test_the_c_cache_refuses_what_is_no_entry_and_passes_the_lookups_errors_on():
    AddressCache = native.EXTENSION.AddressCache

    def failing(packed: bytes):
        raise RuntimeError("lookup broke")

    with pytest.raises(RuntimeError, match="lookup broke"):
        AddressCache(failing, flow_table(), 64).get(bytes(4))
    with pytest.raises(TypeError, match="AddressEntry"):
        AddressCache(lambda packed: ("internal", {}, b""), flow_table(), 64).get(bytes(4))
    with pytest.raises(ValueError):
        AddressCache(failing, flow_table(), 64).get(bytes(5))
    with pytest.raises(ValueError):
        AddressCache(failing, flow_table()[:3], 64)
    with pytest.raises(TypeError):
        AddressCache(failing, tuple(range(9)), 64)


def write_config(tmp_path: Path, enrich: dict, **more: dict) -> Path:
    path = tmp_path / "flowsink.yml"
    path.write_text(yaml.safe_dump({"enrich": enrich, **more}))
    return path


@pytest.mark.parametrize(
    ("enrich", "message"),
    [
        ({"internal_networks": ["10.0.0.0/8", "10.0.0.300/8"]}, "enrich.internal_networks[1]: not a CIDR"),
        ({"internal_networks": ["10.1.2.3/8"]}, "enrich.internal_networks[0]: not a CIDR, got '10.1.2.3/8'"),
        ({"internal_networks": ["fd00::/129"]}, "enrich.internal_networks[0]: not a CIDR"),
        ({"exporters": {"edge-1": {"name": "x"}}}, "enrich.exporters: keys are exporter IP addresses"),
        ({"exporters": {"192.0.2.1": {"nmae": "x"}}}, "enrich.exporters.192.0.2.1.nmae: unknown key"),
        ({"exporters": {"192.0.2.1": {"tags": "a"}}}, "enrich.exporters.192.0.2.1.tags: expected a list"),
        (
            {"exporters": {"192.0.2.1": {"interfaces": {1: {"speed": "fast"}}}}},
            "enrich.exporters.192.0.2.1.interfaces.1.speed: expected int",
        ),
        (
            {"exporters": {"192.0.2.1": {"interfaces": {1: {}, "1": {}}}}},
            "enrich.exporters.192.0.2.1.interfaces: ifIndex 1 is given twice",
        ),
        ({"address_cache_size": 1}, "enrich.address_cache_size: must be >= 64"),
    ],
)
def test_a_bad_enrich_section_names_the_key(tmp_path, enrich, message):
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, enrich), env={})
    assert message in str(caught.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowsink.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", ["check-config", "decode", "run"])
def test_a_bad_cidr_or_exporter_is_one_line_and_exit_2(tmp_path, command):
    for enrich, key in (
        ({"internal_networks": ["10.0.0.0/33"]}, "enrich.internal_networks[0]"),
        ({"exporters": {"192.0.2.1": ["edge"]}}, "enrich.exporters.192.0.2.1"),
    ):
        path = write_config(tmp_path, enrich)
        args = {
            "check-config": [str(path)],
            "decode": ["--config", str(path), str(path)],
            "run": ["--config", str(path)],
        }
        done = run_cli(command, *args[command])
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"flowsink: error: {key}: ") and done.stderr.count("\n") == 1, (
            done.stderr
        )
        assert done.stdout == ""


def test_decode_with_a_config_applies_its_enrichment(tmp_path):
    capture = tmp_path / "v5.dat"
    capture.write_bytes(v5_packet([v5_record("10.0.0.1", "8.8.8.8", 3, 1500, 90_000, 95_000, input_if=7)]))
    path = write_config(
        tmp_path,
        {
            "internal_networks": ["10.0.0.0/8"],
            "exporters": {"192.0.2.5": {"name": "edge", "interfaces": {7: {"name": "in"}}}},
        },
    )
    plain = run_cli("decode", "--exporter", "192.0.2.5", str(capture))
    enriched = run_cli("decode", "--exporter", "192.0.2.5", "--config", str(path), str(capture))
    assert plain.returncode == enriched.returncode == 0, enriched.stderr
    (before,), (after,) = (list(map(orjson.loads, done.stdout.splitlines())) for done in (plain, enriched))
    assert "related" not in before and "name" not in before["observer"]
    assert after["observer"]["name"] == "edge" and after["observer"]["ingress"]["interface"]["name"] == "in"
    assert after["network"]["direction"] == "outbound" and after["related"] == {"ip": ["10.0.0.1", "8.8.8.8"]}
    # the rest of the document is the same
    for key in ("observer", "network", "source", "destination", "flow", "related"):
        before.pop(key, None)
        after.pop(key, None)
    assert before == after


def test_sighup_rebuilds_the_workers_enricher_and_empties_its_cache(tmp_path):
    """reload_worker: the changed enrich keys are applied, a new enricher (new caches) decodes the next datagram."""
    out = tmp_path / "flows.ndjson"
    node = {"run_dir": str(tmp_path / "run")}
    first = {"internal_networks": ["10.0.0.0/8"], "exporters": {"192.0.2.5": {"name": "edge-1"}}}
    path = write_config(tmp_path, first, node=node, file={"path": str(out)}, output=["file"])
    config = load_config(path, env={})
    worker = build_worker(config, 0)
    try:
        payload = v5_packet([v5_record("10.0.0.1", "8.8.8.8", 3, 1500, 90_000, 95_000)])
        before = worker.decoder.settings.enricher
        assert before.exporter("192.0.2.5").observer == {"name": "edge-1"}
        worker.decoder.decode(payload, "192.0.2.5", ARRIVAL_NS)
        assert len(before.addresses) == 2
        second = {
            "internal_networks": ["10.0.0.0/8", "8.0.0.0/8"],
            "exporters": {"192.0.2.5": {"name": "edge-2"}},
        }
        write_config(tmp_path, second, node=node, file={"path": str(out)}, output=["file"])
        reload_worker(worker, config)
        after = worker.decoder.settings.enricher
        assert after is not before and len(after.addresses) == 0
        assert config.enrich.internal_networks == ["10.0.0.0/8", "8.0.0.0/8"]
        (line,) = worker.decoder.decode(payload, "192.0.2.5", ARRIVAL_NS).encoded
        document = orjson.loads(split_encoded(line)[1])
        assert document["observer"]["name"] == "edge-2" and document["network"]["direction"] == "internal"
    finally:
        worker.close()
        worker.queue.close()
        worker.sink.close()


@pytest.mark.integration
def test_enriched_documents_index_with_their_types(es, flowsink_templates):
    """Every enriched fixture document is accepted by the index templates, the added fields typed for queries:
    related.ip an ip (CIDR queries), localities, names, labels and tags keywords, interface speed a long."""
    from support.enrichment import enricher as test_enricher
    from test_decode_fast import fixture_datagrams

    # ids left to Elasticsearch: some fixture files repeat a datagram (the same ids)
    fmt = BulkFormat(flowsink_templates, "index", keep_ids=False)
    decoder = FlowDecoder(DecoderSettings(bulk=fmt, enricher=test_enricher("all")))
    lines = []
    for exporter, payload in fixture_datagrams():
        lines += decoder.decode(payload, exporter, ARRIVAL_NS).encoded
    response = es.bulk(operations=b"".join(lines), refresh=True)
    assert not response["errors"], next(i for i in response["items"] if "error" in next(iter(i.values())))
    assert len(response["items"]) == len(lines) > 500
    mappings = es.indices.get_mapping(index=f"{flowsink_templates}-flows-*")
    props = next(iter(mappings.values()))["mappings"]["properties"]
    assert props["related"]["properties"]["ip"]["type"] == "ip"
    assert props["source"]["properties"]["locality"]["type"] == "keyword"
    assert props["flow"]["properties"]["locality"]["type"] == "keyword"
    assert props["observer"]["properties"]["name"]["type"] == "keyword"
    interface = props["observer"]["properties"]["ingress"]["properties"]["interface"]["properties"]
    assert (interface["speed"]["type"], interface["alias"]["type"]) == ("long", "keyword")
    assert props["labels"]["properties"]["site"]["type"] == "keyword"
    assert props["tags"]["type"] == "keyword"
    found = es.count(index=f"{flowsink_templates}-flows-*", query={"term": {"related.ip": "10.0.0.0/8"}})
    assert found["count"] > 50
