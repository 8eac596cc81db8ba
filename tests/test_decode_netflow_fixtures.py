"""Every NetFlow v5/v9 and IPFIX capture in ../shared/fixtures decodes; Telegraf's own decode agrees with ours."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from flowsink.decode import FlowDecoder
from flowsink.decode.fields import field_info
from flowsink.normalize.netflow import iso_ms

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
LOGSTASH = FIXTURES / "logstash-codec-netflow"
TELEGRAF = FIXTURES / "telegraf"

pytestmark = pytest.mark.skipif(not LOGSTASH.is_dir(), reason="../shared/fixtures not present")

# Files that name their exporter's templates come first; the rest of the name after tpl/data says which ids.
_KIND = re.compile(r"_(?:opttpl|tplopt|tpldata|tpls|tpl|data)")


def exporter_groups() -> dict[str, list[Path]]:
    """Logstash fixtures grouped per exporter (same name before _tpl/_data), template files first."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(LOGSTASH.glob("*.dat")):
        if "_invalid" in path.name:
            continue
        groups[_KIND.split(path.stem)[0]].append(path)
    for files in groups.values():
        files.sort(key=lambda p: (0 if re.search(r"_(opttpl|tplopt|tpls?)(?!data)", p.stem) else 1, p.name))
    return groups


def test_every_logstash_fixture_decodes_with_its_templates() -> None:
    decoder = FlowDecoder()
    groups = exporter_groups()
    assert len(groups) > 40
    total_documents = 0
    for number, (group, files) in enumerate(sorted(groups.items())):
        exporter = f"192.0.2.{number + 1}"
        for path in files:
            result = decoder.decode(path.read_bytes(), exporter, 1_700_000_000_000_000_000)
            assert result.protocol in ("netflow_v5", "netflow_v9", "ipfix"), path.name
            assert not result.errors, (path.name, result.errors)
            if "_data" in path.name or result.protocol == "netflow_v5":
                assert result.documents, f"{path.name} ({group}) decoded no records"
            for document in result.documents:
                orjson.dumps(document)  # JSON-ready
                assert document["observer"]["ip"] == exporter
                assert document["event"]["action"] in ("netflow_flow", "ipfix_flow", "netflow_options")
            total_documents += len(result.documents)
    # Two captures carry data sets whose templates are not in any fixture (Netscaler 280, ipt_netflow 259/262):
    # they stay held, then expire as counted, never silently.
    assert decoder.pending.count() == 7
    expired = decoder.expire(1_700_000_000_000_000_000 + 61 * 10**9)
    assert expired.stats["expired"] == 7
    assert [reason for reason, _ in expired.errors] == ["template_missing"] * 7  # one per data set
    assert decoder.pending.count() == 0 and decoder.pending.bytes == 0
    assert total_documents >= 480


@pytest.mark.parametrize("name", ["netflow5_test_invalid01.dat", "netflow5_test_invalid02.dat"])
def test_invalid_v5_is_rejected_and_later_packets_still_decode(name: str) -> None:
    decoder = FlowDecoder()
    result = decoder.decode((LOGSTASH / name).read_bytes(), "192.0.2.9", 0)
    assert result.documents == []
    assert [reason for reason, _ in result.errors] == ["bad_count"]
    after = decoder.decode((LOGSTASH / "netflow5_test_juniper_mx80.dat").read_bytes(), "192.0.2.9", 0)
    assert len(after.documents) == 29 and not after.errors


def test_netflow9_invalid01_is_decoded_as_rfc3954_allows() -> None:
    """Logstash calls this capture invalid because its parser assumes 4-byte aligned flowsets; RFC 3954 only says
    they SHOULD be padded. The records in it are plausible flows, so they are kept."""
    result = FlowDecoder().decode((LOGSTASH / "netflow9_test_invalid01.dat").read_bytes(), "192.0.2.9", 0)
    flows = [d for d in result.documents if d["event"]["action"] == "netflow_flow"]
    assert [(d["source"]["ip"], d["source"]["port"]) for d in flows] == [
        ("2001:44b8:1118:7200::10", 123),
        ("192.168.0.1", 53),
    ]


def test_truncated_fixtures_never_raise_and_keep_whole_records() -> None:
    decoder = FlowDecoder()
    payload = (LOGSTASH / "netflow9_test_cisco_asa_1_tpl.dat").read_bytes()
    decoder.decode(payload, "192.0.2.50", 0)
    data = (LOGSTASH / "netflow9_test_cisco_asa_1_data.dat").read_bytes()
    full = len(decoder.decode(data, "192.0.2.50", 0).documents)
    for cut in range(0, len(data), 7):
        result = decoder.decode(data[:cut], "192.0.2.50", 0)
        assert len(result.documents) <= full
        assert result.errors or cut == 0 or result.documents


# ---- Telegraf's expected.out (Influx line protocol) against our documents ----------------------------------

_FIELD = re.compile(r'([a-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def parse_line_protocol(text: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        head, rest = line.split(" ", 1)
        measurement = head.split(",", 1)[0]
        rest = re.sub(r" \d+$", "", rest)
        fields: dict[str, Any] = {}
        for key, raw in _FIELD.findall(rest):
            if raw.startswith('"'):
                fields[key] = raw[1:-1]
            elif raw.endswith("u") or raw.endswith("i"):
                fields[key] = int(raw[:-1])
            else:
                fields[key] = raw
        rows.append((measurement, fields))
    return rows


def _get(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _hex_int(text: str) -> int:
    return int(text, 16)


# Telegraf field -> (our document path, how to turn Telegraf's value into ours)
MAPPING: dict[str, tuple[str, Any]] = {
    "src": ("source.ip", None),
    "dst": ("destination.ip", None),
    "src_port": ("source.port", None),
    "dst_port": ("destination.port", None),
    "protocol": ("network.transport", None),
    "in_bytes": ("netflow.octet_delta_count", None),
    "in_packets": ("netflow.packet_delta_count", None),
    "in_total_bytes": ("netflow.octet_total_count", None),
    "in_total_packets": ("netflow.packet_total_count", None),
    "flow_start_ms": ("netflow.flow_start_milliseconds", iso_ms),
    "flow_end_ms": ("netflow.flow_end_milliseconds", iso_ms),
    "flow_start": ("netflow.flow_start_seconds", lambda v: iso_ms(v * 1000)),
    "flow_end": ("netflow.flow_end_seconds", lambda v: iso_ms(v * 1000)),
    "first_switched": ("netflow.flow_start_sys_up_time", None),
    "last_switched": ("netflow.flow_end_sys_up_time", None),
    "sampling_interval": ("netflow.sampling_interval", None),
    "in_snmp": ("netflow.ingress_interface", None),
    "out_snmp": ("netflow.egress_interface", None),
    "interface": ("netflow.interface_name", None),
    "interface_desc": ("netflow.interface_description", None),
    "flows": ("netflow.delta_flow_count", None),
    "bgp_src_as": ("netflow.bgp_source_as_number", None),
    "bgp_dst_as": ("netflow.bgp_destination_as_number", None),
    "direction": ("network.direction", None),
    "next_hop": ("netflow.ip_next_hop_ipv4_address", None),
    "src_mask": ("netflow.source_ipv4_prefix_length", None),
    "dst_mask": ("netflow.destination_ipv4_prefix_length", None),
    "src_tos": ("netflow.ip_class_of_service", _hex_int),
    "engine_type": ("netflow.engine_type", int),
    "engine_id": ("netflow.engine_id", _hex_int),
    "sys_uptime": ("netflow.exporter.uptime_millis", None),
    "seq_number": ("netflow.flow_sequence", None),
    "vlan_src": ("netflow.vlan_id", None),
    "in_src_mac": ("netflow.source_mac_address", None),
    "out_dst_mac": ("netflow.post_destination_mac_address", None),
    "app_name": ("netflow.application_name", None),
    "app_desc": ("netflow.application_description", None),
    "app_id": ("netflow.application_id", lambda v: v[2:]),
    "system_init_ms": ("netflow.system_init_time_milliseconds", iso_ms),
    "exporting_pid": ("netflow.exporting_process_id", None),
}

# Telegraf values that are not the record field of the same name, so not compared:
SKIPPED = {
    # the exporter sent these with length 0: Telegraf prints 0, we leave them out (nothing was sent)
    ("issue_14370", "flow_start"),
    ("issue_14370", "flow_end"),
    # v5 "flows" is the header's record count, not a record field
    ("netflow_v5_example", "flows"),
}
# Telegraf reads the v9 options scope field of type 1 (System) as if it were field 1 (IN_BYTES).
OVERRIDES = {("netflow_v9_options", "in_bytes"): "netflow.scope_system"}


def _expected_pairs(case: str, fields: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs = []
    for key, value in fields.items():
        if (case, key) in SKIPPED:
            continue
        if (case, key) in OVERRIDES:
            pairs.append((OVERRIDES[case, key], value))
            continue
        if key in MAPPING:
            path, convert = MAPPING[key]
            pairs.append((path, convert(value) if convert else value))
            continue
        match = re.fullmatch(r"type_(\d+)_(\d+)", key)
        if match and isinstance(value, str) and value.startswith("0x"):
            pen, element = (
                int(match[1]),
                int(match[2]) & 0x7FFF,
            )  # Telegraf keeps the enterprise bit in the id
            if pen == 29305:  # RFC 5103 reverse elements: ours carry the IANA name with reverse_
                pairs.append(("netflow." + field_info(element, pen).name, int(value, 16)))
            else:
                pairs.append((f"netflow.enterprise_{pen}_{element}", value[2:]))
    return pairs


CASES = [
    "netflow_v5_example",
    "netflow_v9_example",
    "netflow_v9_options",
    "ipfix_example",
    "ipfix_options",
    "ipfix_pen_35632",
    "issue_13305",
    "issue_14370",
]


@pytest.mark.parametrize("case", CASES)
def test_telegraf_expected_values_agree(case: str) -> None:
    folder = TELEGRAF / case
    decoder = FlowDecoder()
    documents: list[dict[str, Any]] = []
    for path in sorted(
        folder.glob("*.bin"), key=lambda p: [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", p.name)]
    ):
        documents.extend(decoder.decode(path.read_bytes(), "127.0.0.1", 0).documents)
    expected = parse_line_protocol((folder / "expected.out").read_text())
    assert expected
    unused = list(documents)
    compared = 0
    for measurement, fields in expected:
        action = ("netflow_options",) if measurement == "netflow_options" else ("netflow_flow", "ipfix_flow")
        pairs = _expected_pairs(case, fields)
        assert pairs, fields
        match = next(
            (
                doc
                for doc in unused
                if doc["event"]["action"] in action and all(_get(doc, path) == value for path, value in pairs)
            ),
            None,
        )
        if match is None:
            closest = max(
                (d for d in unused if d["event"]["action"] in action),
                key=lambda d: sum(_get(d, p) == v for p, v in pairs),
                default=None,
            )
            diffs = [(p, v, _get(closest, p)) for p, v in pairs if closest is None or _get(closest, p) != v]
            pytest.fail(f"{case}: no document matches {fields}; closest differs in {diffs}")
        unused.remove(match)
        compared += len(pairs)
    flows_left = [d for d in unused if d["event"]["action"] != "netflow_options"]
    assert not flows_left, f"{case}: flows Telegraf did not report: {flows_left[:1]}"
    assert compared >= 3 * len(expected)
