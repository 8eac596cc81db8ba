"""Enrichment's outside sources: GeoIP and AS from MaxMind-format databases (the kind from each file's metadata,
the real 2018 GeoLite2 City of ``maxminddb-geolite2``, small databases written with ``mmdb-writer``), the AS an
sFlow gateway record gives against the database's, a database replaced on disk taken without a restart, bad input
(a corrupt, missing, unknown-kind database, an address of the wrong family), and SNMP names from a real ``snmpd``
(v2c and v3, an unreachable agent), merged under the configured names."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import orjson
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from flowsink import metrics
from flowsink.bulk import BulkFormat, split_encoded
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.enrich import hook
from flowsink.enrich.enricher import Enricher, build_enricher
from flowsink.enrich.geoip import database_kind
from flowsink.enrich.settings import EnrichSettings
from flowsink.enrich.snmp import poll_all
from flowsink.enrich.sources import DatabasePublisher, PublishedSources, publish_snmp_names, sources_dir
from support import geoip
from support.snmpd import (
    ALIAS,
    ALIAS_INDEX,
    AUTH_KEY,
    COMMUNITY,
    PRIV_KEY,
    SYS_NAME,
    USER,
    host_interfaces,
    start_snmpd,
)
from test_decode_netflow_builders import v5_packet, v5_record
from test_decode_sflow import datagram, flow_sample, raw_header, record, xdr_address

ARRIVAL_NS = 1_700_000_000_123_456_789


def counter(name, **labels) -> float:
    value = (
        metrics.__dict__[name].labels(**labels)._value.get()
        if labels
        else metrics.__dict__[name]._value.get()
    )
    return value


def enricher_for(*paths: Path | str, networks: list[str] | None = None, **more) -> Enricher:
    settings = EnrichSettings(
        geoip_databases=[str(p) for p in paths], internal_networks=networks or [], **more
    )
    settings.validate()
    built = build_enricher(settings)
    assert built is not None
    return built


def ends(built: Enricher, src: str, dst: str) -> hook.FlowAddresses:
    found = hook.flow_addresses(built.exporter("192.0.2.1"), src, dst)
    assert found is not None
    return found


# ---------------------------------------------------------------- GeoIP and AS


@pytest.mark.parametrize(
    ("database_type", "kind"),
    [
        ("GeoLite2-City", "city"),
        ("GeoIP2-City", "city"),
        ("GeoIP2-Enterprise", "city"),
        ("DBIP-City-Lite", "city"),
        ("GeoLite2-Country", "country"),
        ("DBIP-Country-Lite", "country"),
        ("GeoLite2-ASN", "asn"),
        ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", "asn"),
        ("GeoIP2-ISP", "asn"),
        ("GeoIP2-Anonymous-IP", None),
        ("GeoIP2-Connection-Type", None),
    ],
)
def test_the_kind_of_a_database_is_read_from_its_metadata(database_type, kind):
    assert database_kind(database_type) == kind


def test_the_real_geolite2_city_database_gives_ecs_geo_fields():
    path = geoip.geolite2_city()
    if path is None:
        pytest.fail("maxminddb-geolite2 is a test dependency (pip install -e '.[test]')")
    built = enricher_for(path, networks=["10.0.0.0/8"])
    assert built.describe_databases().endswith("(GeoLite2-City, city)")
    london = ends(built, "81.2.69.160", "10.1.1.1")
    geo = london.source.fields["geo"]
    assert (geo["country_iso_code"], geo["country_name"], geo["continent_code"]) == (
        "GB",
        "United Kingdom",
        "EU",
    )
    assert geo["region_iso_code"] == "GB-ENG" and geo["region_name"] == "England"
    assert geo["city_name"] and set(geo["location"]) == {"lat", "lon"}
    assert "as" not in london.source.fields  # a City database has no AS
    assert london.destination.fields == {"locality": "internal"}  # a private address: no record
    v6 = ends(built, "2001:4860:4860::8888", "2a00:1450:4001:80b::200e")
    assert v6.source.fields["geo"]["country_iso_code"] == "US"
    assert v6.destination.fields["geo"]["continent_name"] == "Europe"
    # an IPv4-mapped IPv6 address is its IPv4 address, as for locality
    assert ends(built, "::ffff:81.2.69.160", "10.1.1.1").source.fields["geo"] == geo


def test_geo_and_as_from_city_and_asn_databases_end_to_end(tmp_path):
    """flowsink decode --config: the documents carry geo and as on both ends, the JSON of the C writers."""
    capture = tmp_path / "v5.dat"
    capture.write_bytes(v5_packet([v5_record("1.2.3.4", "130.1.1.1", 6, 1500, 90_000, 95_000)]))
    config = tmp_path / "flowsink.yml"
    config.write_text(
        orjson.dumps(
            {"enrich": {"geoip_databases": [str(geoip.city_database()), str(geoip.asn_database())]}}
        ).decode()
    )
    from test_enrich import run_cli

    done = run_cli("decode", "--exporter", "192.0.2.5", "--config", str(config), str(capture))
    assert done.returncode == 0, done.stderr
    assert "# GeoIP: " in done.stderr and "(GeoLite2-ASN, asn)" in done.stderr
    (document,) = map(orjson.loads, done.stdout.splitlines())
    source, destination = document["source"], document["destination"]
    assert list(source) == ["ip", "port", "as", "geo"]  # at the end of source, as first
    assert source["as"] == {"number": 65002, "organization": {"name": 'Transit "A" \\ GmbH'}}
    assert source["geo"]["city_name"] == "Paris" and source["geo"]["location"] == {
        "lat": 48.8566,
        "lon": 2.3522,
    }
    assert destination["as"] == {"number": 15169, "organization": {"name": "GOOGLE"}}
    assert destination["geo"]["region_iso_code"] == "US-CA"
    # GeoIP alone: related.ip, but no locality nor a perimeter direction without internal networks
    assert document["related"] == {"ip": ["1.2.3.4", "130.1.1.1"]}
    assert "locality" not in source and "locality" not in document["flow"]
    assert document["network"]["direction"] == "unknown"


def _gateway_sample(src_as: int, dst_as: int, src: str = "1.2.3.4", dst: str = "130.1.1.1") -> bytes:
    frame = bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=40000, dport=443) / (b"x" * 20))
    gateway = record(
        1003,
        xdr_address("192.0.2.254")
        + struct.pack("!IIII", 64512, src_as, 64600, 1)
        + struct.pack("!III", 2, 1, dst_as)
        + struct.pack("!II", 0, 100),
    )
    return datagram([flow_sample([raw_header(frame), gateway])], agent="192.0.2.1")


@pytest.mark.parametrize("bulk", [None, BulkFormat()], ids=["python-dicts", "c-bulk-lines"])
@pytest.mark.parametrize(
    ("src_as", "dst_as", "src", "dst", "expected_source", "expected_destination"),
    [
        # the router's BGP number agrees with the database: the database's organization joins it
        (
            65002,
            15169,
            "1.2.3.4",
            "130.1.1.1",
            {"number": 65002, "organization": {"name": 'Transit "A" \\ GmbH'}},
            {"number": 15169, "organization": {"name": "GOOGLE"}},
        ),
        # it disagrees: the router's number stays, without an organization that is another AS's
        (64999, 7, "1.2.3.4", "130.1.1.1", {"number": 64999}, {"number": 7}),
        # 0 (RFC 7607: no AS; the router had no BGP origin): the database's
        (
            0,
            0,
            "1.2.3.4",
            "130.1.1.1",
            {"number": 65002, "organization": {"name": 'Transit "A" \\ GmbH'}},
            {"number": 15169, "organization": {"name": "GOOGLE"}},
        ),
        # the database knows no AS for a private address: the router's, 0 included
        (0, 64700, "10.1.1.1", "192.168.1.1", {"number": 0}, {"number": 64700}),
    ],
)
def test_an_sflow_gateways_as_and_the_databases_are_decided_in_place(
    bulk, src_as, dst_as, src, dst, expected_source, expected_destination
):
    built = enricher_for(geoip.city_database(), geoip.asn_database(), networks=["10.0.0.0/8"])
    decoder = FlowDecoder(DecoderSettings(bulk=bulk, enricher=built))
    result = decoder.decode(_gateway_sample(src_as, dst_as, src, dst), "192.0.2.1", ARRIVAL_NS)
    assert not result.errors
    (document,) = result.documents or [orjson.loads(split_encoded(line)[1]) for line in result.encoded]
    assert document["source"]["as"] == expected_source
    assert document["destination"]["as"] == expected_destination
    assert list(document["source"])[:4] == ["ip", "port", "mac", "as"]  # where the gateway's as is written
    assert document["sflow"]["src_as"] == src_as  # the raw field stays as the router sent it


@pytest.fixture
def geoip_errors():
    before = {
        r: counter("ENRICH_GEOIP_ERRORS", reason=r)
        for r in ("missing", "corrupt", "unknown_kind", "wrong_family")
    }
    return lambda reason: counter("ENRICH_GEOIP_ERRORS", reason=reason) - before[reason]


def test_a_missing_corrupt_or_unknown_database_is_left_out_and_the_flows_go_on(
    tmp_path, caplog, geoip_errors
):
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.mmdb"
    truncated.write_bytes(geoip.city_database().read_bytes()[:2000])  # its metadata (at the end) cut off
    unknown = geoip.write_database(
        tmp_path / "anonymous.mmdb", "GeoIP2-Anonymous-IP", {"1.0.0.0/8": {"is_anonymous": True}}
    )
    built = enricher_for(
        tmp_path / "missing.mmdb", corrupt, truncated, unknown, geoip.asn_database(), networks=["10.0.0.0/8"]
    )
    assert (geoip_errors("missing"), geoip_errors("corrupt"), geoip_errors("unknown_kind")) == (1, 2, 1)
    log = caplog.text
    assert "missing.mmdb: no such file" in log and "not a MaxMind DB file" in log
    assert "'GeoIP2-Anonymous-IP' is none of City, Country or ASN" in log
    assert built.describe_databases().endswith("(GeoLite2-ASN, asn)")  # the good one is used
    payload = v5_packet([v5_record("1.2.3.4", "10.0.0.1", 6, 1500, 90_000, 95_000)])
    (document,) = (
        FlowDecoder(DecoderSettings(enricher=built)).decode(payload, "192.0.2.1", ARRIVAL_NS).documents
    )
    assert document["source"]["as"]["number"] == 65002 and "geo" not in document["source"]
    assert document["destination"]["locality"] == "internal"


def test_an_address_of_the_wrong_family_is_counted_and_gets_no_geo(caplog, geoip_errors):
    built = enricher_for(geoip.ipv4_only_country_database())
    found = ends(built, "2001:db8::1", "1.2.3.4")
    assert found.source.fields == {} and found.destination.fields["geo"]["country_iso_code"] == "FR"
    assert geoip_errors("wrong_family") == 1
    assert "holds IPv4 addresses only" in caplog.text


def test_a_new_database_version_is_taken_without_a_restart_and_a_bad_one_refused(tmp_path, geoip_errors):
    """The publisher snapshots a file once it stopped changing; the worker's enricher takes it between batches,
    its caches emptied; a version that does not open is refused and the last good one stays."""
    path = tmp_path / "GeoLite2-ASN.mmdb"
    geoip.write_database(path, "GeoLite2-ASN", {"1.0.0.0/8": {"autonomous_system_number": 111}})
    directory = sources_dir(tmp_path / "run")
    publisher = DatabasePublisher(directory)
    assert publisher.update([str(path)], first=True)
    settings = EnrichSettings(geoip_databases=[str(path)])
    built = Enricher(settings, PublishedSources(directory))
    assert ends(built, "1.2.3.4", "1.2.3.5").source.as_number == 111
    reloads = counter("ENRICH_RELOADS", source="geoip")

    # rewritten in place, as `cp` does: the worker never maps the configured file, only snapshots
    path.write_bytes(
        geoip.write_database(
            tmp_path / "v2.mmdb", "GeoLite2-ASN", {"1.0.0.0/8": {"autonomous_system_number": 222}}
        ).read_bytes()
    )
    assert not publisher.update([str(path)])  # seen once: not taken while it may still be written
    assert publisher.update([str(path)])
    built.maintain(now=10.0)
    assert counter("ENRICH_RELOADS", source="geoip") == reloads + 1
    assert len(built.addresses) == 0  # nothing cached from the old file outlives it
    assert ends(built, "1.2.3.4", "1.2.3.5").source.as_number == 222

    path.write_bytes(b"not a database")
    publisher.update([str(path)])
    assert not publisher.update([str(path)])
    assert geoip_errors("corrupt") == 1
    built.maintain(now=20.0)
    assert ends(built, "1.2.3.4", "1.2.3.5").source.as_number == 222  # the last good version stays
    os.unlink(path)
    publisher.update([str(path)])
    assert geoip_errors("missing") == 1
    assert ends(built, "1.2.3.6", "1.2.3.5").source.as_number == 222
    # snapshots: the published one and the one retired a moment ago (kept a while for workers opening it)
    assert len(list(directory.glob("geoip-*.mmdb"))) == 2


def test_the_address_caches_counters_reach_the_metrics():
    built = enricher_for(geoip.asn_database(), networks=["10.0.0.0/8"])
    hits, misses = (
        counter("ENRICH_CACHE_LOOKUPS", result="hit"),
        counter("ENRICH_CACHE_LOOKUPS", result="miss"),
    )
    for _ in range(3):
        ends(built, "1.2.3.4", "10.0.0.1")
    built.maintain(now=1.0)
    assert counter("ENRICH_CACHE_LOOKUPS", result="miss") - misses == 2
    assert counter("ENRICH_CACHE_LOOKUPS", result="hit") - hits == 4


@pytest.mark.integration
def test_geo_and_as_index_with_their_types(es, flowsink_templates):
    """geo.location a geo_point (a distance query finds it), as.number a long, the names keywords."""
    built = enricher_for(geoip.city_database(), geoip.asn_database(), networks=["10.0.0.0/8"])
    fmt = BulkFormat(flowsink_templates, "index", keep_ids=False)
    decoder = FlowDecoder(DecoderSettings(bulk=fmt, enricher=built))
    payload = v5_packet(
        [v5_record(src, "10.0.0.1", 6, 1500, 90_000, 95_000) for src in ("1.2.3.4", "130.1.1.1", "2.3.4.5")]
    )
    lines = decoder.decode(payload, "192.0.2.1", ARRIVAL_NS).encoded
    response = es.bulk(operations=b"".join(lines), refresh=True)
    assert not response["errors"], response
    mappings = es.indices.get_mapping(index=f"{flowsink_templates}-flows-*")
    source = next(iter(mappings.values()))["mappings"]["properties"]["source"]["properties"]
    assert source["geo"]["properties"]["location"]["type"] == "geo_point"
    assert source["as"]["properties"]["number"]["type"] == "long"
    assert source["as"]["properties"]["organization"]["properties"]["name"]["type"] == "keyword"
    for key in ("country_iso_code", "city_name", "region_iso_code", "continent_code"):
        assert source["geo"]["properties"][key]["type"] == "keyword", key
    near_paris = es.count(
        index=f"{flowsink_templates}-flows-*",
        query={"geo_distance": {"distance": "50km", "source.geo.location": {"lat": 48.85, "lon": 2.35}}},
    )
    assert near_paris["count"] == 2
    google = es.count(
        index=f"{flowsink_templates}-flows-*", query={"term": {"source.as.organization.name": "GOOGLE"}}
    )
    assert google["count"] == 1


# ---------------------------------------------------------------- SNMP


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory):
    agent = start_snmpd(tmp_path_factory.mktemp("snmpd"))
    yield agent
    agent.stop()


def _snmp_settings(port: int, **more) -> EnrichSettings:
    settings = EnrichSettings(snmp_targets=[f"127.0.0.1:{port}"], **more)
    settings.validate()
    return settings


def _expected_interfaces() -> dict[str, dict]:
    return {str(index): {"name": name} for index, name in host_interfaces().items()}


@pytest.mark.integration
@pytest.mark.parametrize("version", ["2c", "3"])
def test_snmp_polls_sysname_and_the_interface_table_of_a_real_agent(snmpd, version):
    credentials = (
        {"snmp_community": COMMUNITY}
        if version == "2c"
        else {"snmp_version": "3", "snmp_user": USER, "snmp_auth_key": AUTH_KEY, "snmp_priv_key": PRIV_KEY}
    )
    ok = counter("ENRICH_SNMP_POLLS", exporter="127.0.0.1", result="ok")
    names = asyncio.run(poll_all(_snmp_settings(snmpd.port, **credentials), {}))
    exporter = names["127.0.0.1"]
    assert exporter["name"] == SYS_NAME
    interfaces = exporter["interfaces"]
    assert {i: {"name": v["name"]} for i, v in interfaces.items()} == _expected_interfaces()
    assert interfaces[str(ALIAS_INDEX)]["alias"] == ALIAS
    assert interfaces["1"]["speed"] == 10_000_000  # the loopback's ifHighSpeed, 10 Mbit/s in bit/s
    assert all(
        "alias" not in v for i, v in interfaces.items() if i != str(ALIAS_INDEX)
    )  # empty ifAlias: none
    assert counter("ENRICH_SNMP_POLLS", exporter="127.0.0.1", result="ok") == ok + 1


@pytest.mark.integration
def test_an_unreachable_agent_or_wrong_credentials_keep_the_names_known_before(snmpd, caplog):
    known = {"127.0.0.1": {"name": "from an earlier poll"}}
    timeouts = counter("ENRICH_SNMP_POLLS", exporter="127.0.0.1", result="timeout")
    quiet = _snmp_settings(snmpd.port, snmp_community="wrong-community", snmp_timeout_s=0.3, snmp_retries=0)
    assert asyncio.run(poll_all(quiet, known)) == known  # a v2c agent does not answer a wrong community
    assert counter("ENRICH_SNMP_POLLS", exporter="127.0.0.1", result="timeout") == timeouts + 1
    auth = counter("ENRICH_SNMP_POLLS", exporter="127.0.0.1", result="auth")
    wrong_key = _snmp_settings(
        snmpd.port,
        snmp_version="3",
        snmp_user=USER,
        snmp_auth_key="not-the-key",
        snmp_priv_key=PRIV_KEY,
        snmp_timeout_s=0.5,
        snmp_retries=0,
    )
    assert asyncio.run(poll_all(wrong_key, {})) == {}
    assert counter("ENRICH_SNMP_POLLS", exporter="127.0.0.1", result="auth") == auth + 1
    assert "SNMP poll of 127.0.0.1" in caplog.text and "(auth)" in caplog.text


def test_snmp_names_fill_what_the_configuration_leaves_out(tmp_path):
    """Configured beats polled, key by key; polled beats the exporter's own options-record names."""
    directory = sources_dir(tmp_path)
    DatabasePublisher(directory).update([], first=True)
    publish_snmp_names(
        directory,
        {
            "192.0.2.1": {
                "name": "sysname-1",
                "interfaces": {
                    "10": {"name": "Gi0/10", "alias": "polled alias", "speed": 10**9},
                    "14": {"name": "Gi0/14"},
                },
            },
            "192.0.2.2": {"name": "polled-only"},
        },
    )
    settings = EnrichSettings(
        exporters={"192.0.2.1": {"name": "configured", "interfaces": {10: {"alias": "configured alias"}}}}
    )
    built = Enricher(settings, PublishedSources(directory))
    one = built.exporter("192.0.2.1")
    assert one.observer == {"name": "configured"}
    assert hook.interface(10, "options-name", one) == {
        "id": "10",
        "name": "Gi0/10",
        "alias": "configured alias",
        "speed": 10**9,
    }
    assert hook.interface(14, "options-name", one) == {"id": "14", "name": "Gi0/14"}
    assert hook.interface(15, "options-name", one) == {"id": "15", "name": "options-name"}
    assert built.exporter("192.0.2.2").observer == {"name": "polled-only"}
    # a new poll: the workers take it between batches
    publish_snmp_names(directory, {"192.0.2.2": {"name": "renamed"}})
    built.maintain(now=5.0)
    assert built.exporter("192.0.2.2").observer == {"name": "renamed"}
    assert built.exporter("192.0.2.1").observer == {"name": "configured"}
