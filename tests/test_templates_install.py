"""Index templates: files load and validate, install idempotently, upgrade (never downgrade), type fields well."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowsink.errors import ConfigError, UserError
from flowsink.sinks.elasticsearch.index_templates import (
    DEFAULT_TEMPLATE_DIR,
    ClusterFeatures,
    TemplateSettings,
    install_templates,
    load_template_files,
    remove_templates,
    render_template,
    source_only_fields,
)
from flowsink.stack import checks as stack_checks

NO_FEATURES = ClusterFeatures()
ALL_FEATURES = ClusterFeatures(frozenset({"unsigned-long", "x-pack-ilm", "ingest-geoip"}))


def _copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, folder)
    return folder


def _bump_version(path: Path, version: int) -> None:
    body = json.loads(path.read_text())
    body["_meta"]["version"] = version
    path.write_text(json.dumps(body))


# -- files and rendering (pure) ---------------------------------------------------------------------------


def test_shipped_files_load_components_first():
    files = load_template_files(DEFAULT_TEMPLATE_DIR)
    kinds = [tf.is_index_template for tf in files]
    assert kinds == sorted(kinds), (
        "component templates must be installed before the index templates using them"
    )
    names = {tf.path.stem for tf in files}
    assert {"settings", "ecs-flow", "raw-fields", "flows", "meta"} <= names


def test_malformed_file_names_the_file_and_position(tmp_path):
    folder = _copy_templates(tmp_path)
    (folder / "flows.json").write_text(
        '{"_meta": {"version": 1},\n  "index_patterns": ["x-*"] "template": {}}'
    )
    with pytest.raises(ConfigError) as err:
        load_template_files(folder)
    message = str(err.value)
    assert "flows.json" in message and "line 2 column" in message and "\n" not in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"template": {}}, "_meta.version must be a positive integer"),
        ({"_meta": {"version": "2"}, "template": {}}, "_meta.version must be a positive integer"),
        ({"_meta": {"version": 1}, "index_patterns": "x-*"}, "'index_patterns' must be a list of strings"),
        (
            {"_meta": {"version": 1}, "index_patterns": ["x-*"], "composed_of": ["flowsink-nope"]},
            "flowsink-nope",
        ),
        ([1, 2], "must hold a JSON object"),
    ],
)
def test_invalid_template_structure(tmp_path, body, expected):
    folder = _copy_templates(tmp_path)
    (folder / "broken.json").write_text(json.dumps(body))
    with pytest.raises(ConfigError, match=expected):
        load_template_files(folder)


def test_render_applies_prefix_and_install_settings():
    files = {tf.path.stem: tf for tf in load_template_files(DEFAULT_TEMPLATE_DIR)}
    settings = TemplateSettings(name_prefix="acme", shards=3, replicas=2, refresh_interval="30s")
    name, body = render_template(files["flows"], settings, NO_FEATURES)
    assert name == "acme-flows"
    assert body["index_patterns"] == ["acme-flows-*"]
    assert body["composed_of"] == ["acme-settings", "acme-ecs-flow", "acme-raw-fields"]
    assert body["version"] == body["_meta"]["version"] == files["flows"].version
    _, settings_body = render_template(files["settings"], settings, NO_FEATURES)
    index = settings_body["template"]["settings"]["index"]
    assert (index["number_of_shards"], index["number_of_replicas"], index["refresh_interval"]) == (
        3,
        2,
        "30s",
    )
    assert "auto_expand_replicas" not in index


def test_api_templates_follow_the_api_prefix():
    """The flows API writes under api.index_prefix: its templates must match those indices whatever the node's
    own prefix is (the node passes both)."""
    files = {tf.path.stem: tf for tf in load_template_files(DEFAULT_TEMPLATE_DIR)}
    settings = TemplateSettings(name_prefix="acme", api_prefix="acme-apps")
    for stem in ("api-batches", "api-aggregates", "api-folds"):
        name, body = render_template(files[stem], settings, NO_FEATURES)
        assert name == f"acme-{stem}"
        assert all(p.startswith(f"acme-apps-{stem[4:]}") for p in body["index_patterns"]), body[
            "index_patterns"
        ]
    assert render_template(files["flows"], settings, NO_FEATURES)[1]["index_patterns"] == ["acme-flows-*"]
    unset = TemplateSettings(name_prefix="acme")
    assert render_template(files["api-batches"], unset, NO_FEATURES)[1]["index_patterns"] == [
        "acme-app-flows-batches*"
    ]


def test_render_uses_optional_features_only_where_present():
    files = {tf.path.stem: tf for tf in load_template_files(DEFAULT_TEMPLATE_DIR)}
    settings = TemplateSettings(retention_days=30)
    _, raw_without = render_template(files["raw-fields"], settings, NO_FEATURES)
    _, raw_with = render_template(files["raw-fields"], settings, ALL_FEATURES)
    assert '"unsigned_long"' not in json.dumps(raw_without) and '"unsigned_long"' in json.dumps(raw_with)
    _, flows_with = render_template(files["flows"], settings, ALL_FEATURES)
    _, flows_without = render_template(files["flows"], settings, NO_FEATURES)
    assert flows_with["template"]["settings"]["index"]["default_pipeline"] == "flowsink-geoip"
    assert "settings" not in flows_without["template"]
    _, settings_with = render_template(files["settings"], settings, ALL_FEATURES)
    assert settings_with["template"]["settings"]["index"]["lifecycle"]["name"] == "flowsink-retention"
    assert flows_with["_meta"]["digest"] != flows_without["_meta"]["digest"]


def test_features_are_those_every_node_has():
    response = {
        "nodes": {
            "a": {"modules": [{"name": "x-pack-ilm"}, {"name": "unsigned-long"}], "plugins": []},
            "b": {"modules": [{"name": "x-pack-ilm"}], "plugins": [{"name": "ingest-geoip"}]},
        }
    }
    features = ClusterFeatures.from_nodes_plugins(response)
    assert features.ilm and not features.unsigned_long and not features.geoip


# -- document profiles (pure) -----------------------------------------------------------------------------


def _rendered(settings: TemplateSettings, features: ClusterFeatures) -> dict[str, dict]:
    files = load_template_files(DEFAULT_TEMPLATE_DIR)
    profiles = [tf for tf in files if tf.profile]
    return {tf.path.stem: render_template(tf, settings, features, profiles)[1] for tf in files}


def test_lean_profile_joins_the_flows_template_last_and_only_when_chosen():
    lean = _rendered(TemplateSettings(name_prefix="acme", document_profile="lean"), NO_FEATURES)
    full = _rendered(TemplateSettings(name_prefix="acme"), NO_FEATURES)
    assert lean["flows"]["composed_of"] == [*full["flows"]["composed_of"], "acme-profile-lean"]
    assert lean["flows"]["_meta"]["digest"] != full["flows"]["_meta"]["digest"]  # switching profiles updates
    for stem in ("meta", "deadletter", "api-batches", "api-aggregates", "api-folds"):
        assert lean[stem] == full[stem]


def test_logsdb_only_where_the_cluster_gives_it_synthetic_source():
    """The fall-back: without synthetic _source LogsDB would only add sorting to a stored _source, so the lean
    profile then makes plain indices (its mappings still apply)."""
    settings = TemplateSettings(document_profile="lean")
    without = _rendered(settings, NO_FEATURES)["profile-lean"]["template"]
    with_logsdb = _rendered(settings, ClusterFeatures(logsdb=True))["profile-lean"]["template"]
    assert with_logsdb["settings"]["index"]["mode"] == "logsdb"
    assert "mode" not in without["settings"]["index"]
    assert without["mappings"] == with_logsdb["mappings"]


def test_profile_files_are_checked(tmp_path):
    folder = _copy_templates(tmp_path)
    lean = json.loads((folder / "profile-lean.json").read_text())
    (folder / "profile-lean.json").write_text(json.dumps({**lean, "_meta": {**lean["_meta"], "for": ["x"]}}))
    with pytest.raises(ConfigError, match=re.escape("profile-lean.json: a profile is a component template")):
        load_template_files(folder)
    (folder / "profile-lean.json").write_text(
        json.dumps({**lean, "_meta": {**lean["_meta"], "profile": "x"}})
    )
    with pytest.raises(ConfigError, match=re.escape("_meta.profile must be one of full, lean")):
        load_template_files(folder)
    with pytest.raises(ConfigError, match="document profile must be one of full, lean"):
        install_templates(None, TemplateSettings(document_profile="huge"))  # refused before any request


def test_lean_keeps_in_source_only_what_the_ecs_fields_repeat():
    fields = set(source_only_fields("lean"))
    assert {
        "flow.id",
        "netflow.source_ipv4_address",
        "netflow.octet_delta_count",
        "sflow.input_interface",
    } <= fields
    assert not fields & {
        "source.ip",
        "network.bytes",
        "observer.ingress.interface.id",
        "network.community_id",
    }
    assert source_only_fields("full") == []


@pytest.mark.parametrize("profile", ["full", "lean"])
def test_every_kibana_field_stays_aggregatable_in_each_profile(tmp_path, profile):
    """The dashboards' fields, checked against the templates as the installer renders them for each profile
    (tests/test_stack_config.py checks the files as shipped)."""
    folder = tmp_path / "rendered"
    folder.mkdir()
    for stem, body in _rendered(TemplateSettings(document_profile=profile), ALL_FEATURES).items():
        (folder / f"{stem}.json").write_text(json.dumps(body))
    templates = stack_checks.TemplateFields(folder)
    objects = stack_checks.kibana_objects()
    views = {obj["id"]: obj["attributes"]["title"] for obj in objects if obj["type"] == "index-pattern"}
    problems = []
    for use in stack_checks.kibana_field_uses(objects):
        index = views[use.data_view].replace("*", "2026.01.01" if views[use.data_view].endswith("-*") else "")
        found = templates.field_type(index, use.field)
        problem = stack_checks.aggregatable_problem(*(found or (None, {})), use.aggregation)
        if problem:
            problems.append(f"{use.object_id}: {use.aggregation}({use.field}): {problem}")
    assert not problems, "\n".join(problems)


# -- against the real node --------------------------------------------------------------------------------


@pytest.mark.integration
def test_install_is_idempotent_and_upgrades_only_forward(es, unique_prefix, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="flowsink.sinks.elasticsearch.index_templates")
    folder = _copy_templates(tmp_path)
    settings = TemplateSettings(template_dir=folder, name_prefix=unique_prefix)
    try:
        first = install_templates(es, settings)
        assert f"{unique_prefix}-flows installed" in first and f"{unique_prefix}-ecs-flow installed" in first
        again = install_templates(es, settings)
        assert all(line.endswith(" unchanged") for line in again), again

        _bump_version(folder / "flows.json", 7)
        upgraded = install_templates(es, settings)
        assert f"{unique_prefix}-flows upgraded" in upgraded
        installed = es.indices.get_index_template(name=f"{unique_prefix}-flows")["index_templates"][0]
        assert installed["index_template"]["_meta"]["version"] == 7
        assert installed["index_template"]["version"] == 7

        _bump_version(folder / "flows.json", 3)  # an older node starting after a newer one
        assert f"{unique_prefix}-flows unchanged" in install_templates(es, settings)
        installed = es.indices.get_index_template(name=f"{unique_prefix}-flows")["index_templates"][0]
        assert installed["index_template"]["_meta"]["version"] == 7

        changed = TemplateSettings(template_dir=folder, name_prefix=unique_prefix, refresh_interval="17s")
        assert f"{unique_prefix}-settings updated" in install_templates(es, changed)
        component = es.cluster.get_component_template(name=f"{unique_prefix}-settings")[
            "component_templates"
        ][0]
        assert component["component_template"]["template"]["settings"]["index"]["refresh_interval"] == "17s"
        assert "GeoIP enrichment skipped" in caplog.text  # the integ-test-zip has no ingest-geoip
    finally:
        remove_templates(es, settings)


@pytest.mark.integration
def test_mappings_type_ecs_and_raw_fields(es, flowsink_templates):
    index = f"{flowsink_templates}-flows-2026.11.23"
    doc = {
        "@timestamp": "2026-11-23T10:00:00.000Z",
        "source": {"ip": "10.0.0.1", "port": 51000, "bytes": 1200},
        "observer": {"ip": "192.0.2.1", "ingress": {"interface": {"id": "3"}}},
        "network": {"transport": "tcp", "community_id": "1:abc"},
        "netflow": {
            "octet_delta_count": 1200,
            "source_ipv6_address": "2001:db8::1",
            "source_mac_address": "00:11:22:33:44:55",
            "flow_start_milliseconds": 1795428000000,
            "flow_duration_milliseconds": 5000,
            "interface_name": "ge-0/0/1",
            "vendor_counter_total_count": 5,
            "exporter": {"address": "192.0.2.1:2055", "version": 9},
        },
        "sflow": {"agent_address": "192.0.2.9", "if_in_octets": 10},
    }
    es.index(index=index, id="one", document=doc, refresh=True)
    props = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    netflow = props["netflow"]["properties"]
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["source"]["properties"]["bytes"]["type"] == "long"
    assert props["@timestamp"]["type"] == "date"
    assert props["network"]["properties"]["transport"]["type"] == "keyword"
    assert netflow["octet_delta_count"]["type"] in ("long", "unsigned_long")
    assert netflow["source_ipv6_address"]["type"] == "ip"
    assert netflow["source_mac_address"]["type"] == "keyword"
    assert netflow["flow_start_milliseconds"]["type"] == "date"
    assert netflow["flow_duration_milliseconds"]["type"] == "long"
    assert netflow["interface_name"]["type"] == "keyword"
    assert netflow["exporter"]["properties"]["address"]["type"] == "keyword"
    assert props["sflow"]["properties"]["agent_address"]["type"] == "ip"
    found = es.search(index=index, query={"term": {"netflow.source_ipv6_address": "2001:db8::/32"}})
    assert found["hits"]["total"]["value"] == 1


@pytest.mark.integration
def test_odd_raw_value_does_not_reject_the_flow(es, flowsink_templates):
    """A vendor field whose value does not fit its type is kept in _source, and the flow is indexed."""
    index = f"{flowsink_templates}-flows-2026.11.23"
    es.index(index=index, id="a", document={"netflow": {"next_hop_ipv4_address": "10.0.0.1"}}, refresh=True)
    es.index(index=index, id="b", document={"netflow": {"next_hop_ipv4_address": "garbage"}}, refresh=True)
    assert es.get(index=index, id="b")["_source"]["netflow"]["next_hop_ipv4_address"] == "garbage"
    assert es.count(index=index)["count"] == 2


@pytest.mark.integration
def test_lean_profile_on_the_real_node(es, unique_prefix, fixtures_dir):
    """Real decoded flows in a lean index: LogsDB where the node has synthetic _source (this one does), the ECS
    copies searchable, the repeated raw ones not, and a replayed document still answered with 409."""
    from elasticsearch import BadRequestError, helpers

    from flowsink.decode import FlowDecoder

    settings = TemplateSettings(name_prefix=unique_prefix, refresh_interval="1s", document_profile="lean")
    install_templates(es, settings)
    try:
        decoder = FlowDecoder()
        data = fixtures_dir / "logstash-codec-netflow"
        for name in ("ipfix_test_mikrotik_tpl.dat", "ipfix_test_mikrotik_data258.dat"):
            documents = decoder.decode((data / name).read_bytes(), "192.0.2.7", 0).documents
        actions = [
            {
                "_op_type": "create",
                "_index": f"{unique_prefix}-flows-2026.01.01",
                "_id": d.pop("_id"),
                "_source": d,
            }
            for d in documents
        ]
        assert helpers.bulk(es, actions, refresh=True)[0] == len(actions) > 10
        index = f"{unique_prefix}-flows-2026.01.01"
        assert es.indices.get_settings(index=index)[index]["settings"]["index"]["mode"] == "logsdb"
        address = documents[0]["source"]["ip"]
        assert es.count(index=index, query={"term": {"source.ip": address}})["count"] >= 1
        with pytest.raises(BadRequestError, match=r"not indexed|failed to create query"):
            es.search(index=index, query={"term": {"netflow.source_ipv4_address": address}})
        replay = helpers.bulk(es, actions[:3], raise_on_error=False)[1]
        assert [item["create"]["status"] for item in replay] == [409, 409, 409]
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{unique_prefix}-*", expand_wildcards="all")
        remove_templates(es, settings)


# -- the command line: one clear line, non-zero exit ------------------------------------------------------


def _flowsink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowsink.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_malformed_template_is_one_line(tmp_path):
    folder = _copy_templates(tmp_path)
    (folder / "meta.json").write_text("{ not json")
    done = _flowsink("install-templates", "--template-dir", str(folder), "--es-url", "http://127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("flowsink: error: ") and "meta.json: invalid JSON at line 1" in done.stderr


def test_cli_unreachable_elasticsearch_is_one_line():
    done = _flowsink("install-templates", "--es-url", "http://127.0.0.1:1", "--timeout", "1")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "flowsink: error: cannot reach Elasticsearch at http://127.0.0.1:1: Connection refused"
    ], lines


def test_unreachable_elasticsearch_waits_only_briefly():

    from elasticsearch import Elasticsearch

    started = time.monotonic()
    with pytest.raises(UserError, match=re.escape("cannot reach Elasticsearch at http://127.0.0.1:1")):
        install_templates(Elasticsearch("http://127.0.0.1:1"), TemplateSettings(connect_timeout_s=1.5))
    assert time.monotonic() - started < 5
