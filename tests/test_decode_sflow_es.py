"""sFlow documents index cleanly into the real Elasticsearch under flowsink's own templates: no rejected document,
no field dropped as malformed, and ECS fields queryable with their mapped types."""

from __future__ import annotations

import struct

import pytest
from elasticsearch import helpers

from flowsink.decode import DecoderSettings, FlowDecoder
from test_decode_fixtures import LOGSTASH_SFLOW, TELEGRAF
from test_decode_sflow import (
    counter_sample,
    datagram,
    flow_sample,
    generic_counters,
    host_counter_datagram,
    raw_header,
    record,
    switch_record,
    tcp_frame,
    xdr_address,
    xdr_opaque,
)

pytestmark = pytest.mark.integration


def _every_kind_of_sample() -> list[bytes]:
    payloads = [p.read_bytes() for p in sorted(LOGSTASH_SFLOW.glob("*sample*.dat"))]
    payloads.append((LOGSTASH_SFLOW / "sflow_with_lag_counters.dat").read_bytes())
    payloads += [p.read_bytes() for p in sorted(TELEGRAF.glob("sflow_*/*.bin"))]
    gateway = record(
        1003,
        xdr_address("10.9.9.9")
        + struct.pack("!IIII", 64512, 64600, 64601, 1)
        + struct.pack("!II", 2, 2)
        + struct.pack("!II", 65001, 65002)
        + struct.pack("!II", 1, 7)
        + struct.pack("!I", 100),
    )
    router = record(1002, xdr_address("2001:db8::1") + struct.pack("!II", 64, 48))
    host = record(
        2000, xdr_opaque(b"switch-1") + bytes(range(16)) + struct.pack("!II", 3, 2) + xdr_opaque(b"5.10")
    )
    cpu = record(2003, struct.pack("!3f17I", 0.5, float("nan"), 1.5, *range(17)))
    memory = record(2004, struct.pack("!QQQQQQQIIII", *([2**40] * 7), 1, 2, 3, 4))
    payloads.append(host_counter_datagram())
    payloads.append(
        datagram(
            [
                flow_sample(
                    [raw_header(tcp_frame()), switch_record(1, 0, 2, 0), gateway, router], rate=2**20
                ),
                counter_sample([generic_counters(in_octets=2**62 + 5, out_octets=2**40), host, cpu, memory]),
            ],
            agent="2001:db8::99",
            seq=9,
        )
    )
    return payloads


def test_sflow_documents_index_without_rejections_or_dropped_fields(es, flowsink_templates):
    prefix = flowsink_templates
    decoder = FlowDecoder(DecoderSettings())
    actions = []
    for number, payload in enumerate(_every_kind_of_sample()):
        result = decoder.decode(payload, "192.0.2.10", 1_735_689_600_000_000_000 + number)
        assert result.errors == []
        for doc in result.documents:
            kind = "meta" if doc["event"]["action"] == "sflow_counter_sample" else "flows"
            doc_id = doc.pop("_id")
            actions.append(
                {"_op_type": "create", "_index": f"{prefix}-{kind}-2025.01.01", "_id": doc_id, "_source": doc}
            )
    indexed, errors = helpers.bulk(es, actions, raise_on_error=False, refresh="wait_for")
    assert errors == []
    assert indexed == len(actions) > 30
    dropped = es.search(
        index=f"{prefix}-*",
        query={"exists": {"field": "_ignored"}},
        size=5,
        source=False,
        fields=["_ignored"],
    )
    assert dropped["hits"]["total"]["value"] == 0, [hit.get("fields") for hit in dropped["hits"]["hits"]]
    flows = es.count(index=f"{prefix}-flows-*", query={"term": {"event.action": "sflow_flow_sample"}})[
        "count"
    ]
    assert flows == sum(a["_source"]["event"]["action"] == "sflow_flow_sample" for a in actions) >= 14
    by_agent = es.count(index=f"{prefix}-flows-*", query={"term": {"observer.ip": "192.168.227.2"}})["count"]
    assert by_agent == 6
    in_subnet = es.count(index=f"{prefix}-*", query={"term": {"sflow.agent_address": "2001:db8::/32"}})[
        "count"
    ]
    assert in_subnet == 2
    total = es.search(index=f"{prefix}-flows-*", size=0, aggs={"bytes": {"sum": {"field": "network.bytes"}}})
    expected = sum(
        a["_source"]["network"]["bytes"] for a in actions if a["_index"].startswith(f"{prefix}-flows")
    )
    assert total["aggregations"]["bytes"]["value"] == expected
    # host counter structures land in the meta index with their numbers and addresses queryable
    meta = f"{prefix}-meta-*"
    disk = {"range": {"sflow.counters.host_disk_io.bytes_written": {"gte": 2**34}}}
    assert es.count(index=meta, query=disk)["count"] == 1
    mac = {"term": {"sflow.counters.host_adapters.mac_addresses": "02:00:00:00:00:02"}}
    assert es.count(index=meta, query=mac)["count"] == 1
    dynamic_limit = {"term": {"sflow.counters.mib2_tcp_group.tcp_max_conn": -1}}
    assert es.count(index=meta, query=dynamic_limit)["count"] == 1
