"""Bulk lines written by the C decoders equal the reference encoding of the pure-Python documents, byte for byte.

With a ``BulkFormat`` the decoders hand the sink ``action\\nsource\\n`` bytes (``DecodeResult.encoded``). The
same corpus (every fixture, generated NetFlow v5 and sFlow, mutated fixtures) is decoded in this process (C
extension) and in a child started with FLOWSINK_NO_EXTENSION=1 (Python dicts + ``flowsink.bulk.encode_document``);
every datagram's lines (as a set: the C writers put the documents they leave to Python last), errors and
counters must be equal: without enrichment, and with the enrichment of ``support.enrichment`` (exporter names,
tags, labels and interfaces, internal networks), which every writer applies at the same places.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from flowsink import native
from flowsink.bulk import BulkFormat, encode_document, index_name, split_encoded
from flowsink.decode import DecoderSettings, FlowDecoder
from support.enrichment import enricher
from test_decode_fast import FIXTURES, corpus
from test_decode_fast_sflow import _generated_payloads

ARRIVAL_NS = 1_700_000_000_123_456_789
FORMATS = {
    "create": BulkFormat("flowsink", "create", True),
    "index-no-ids": BulkFormat('fs"odd\\prefix', "index", False),
}

needs_extension = pytest.mark.skipif(
    native.EXTENSION is None, reason="C extension not built (pip install -e . builds it)"
)


def bulk_corpus() -> list[tuple[str, bytes]]:
    sflow = [(f"203.0.113.{n % 5}", payload) for n, payload in enumerate(_generated_payloads(400))]
    return corpus() + sflow


# (bulk format, enrichment mode): without enrichment in both formats, with each kind of enrichment in one
RUNS = {
    "create": ("create", None),
    "index-no-ids": ("index-no-ids", None),
    "create-enriched": ("create", "all"),
    "index-no-ids-enriched": ("index-no-ids", "all"),
    "create-exporters-only": ("create", "exporters-only"),
    "index-no-ids-networks-only": ("index-no-ids", "networks-only"),
    "create-geoip-only": ("create", "geoip-only"),
}


def decode_corpus(
    datagrams: list[tuple[str, bytes]], fmt: BulkFormat, enrichment: str | None = None
) -> tuple[list[bytes], int]:
    """One line per datagram (its bulk lines, errors and counters), and how many the Python reference wrote."""
    decoder = FlowDecoder(DecoderSettings(bulk=fmt, enricher=enricher(enrichment)))
    lines = []
    for exporter, payload in datagrams:
        result = decoder.decode(payload, exporter, ARRIVAL_NS)
        assert not result.documents
        lines.append(
            orjson.dumps(
                {
                    "encoded": sorted(line.decode() for line in result.encoded),
                    "errors": result.errors,
                    "stats": dict(sorted(result.stats.items())),
                }
            )
        )
    return lines, decoder.reference_encoded


@needs_extension
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is not beside the checkout")
@pytest.mark.parametrize("name", sorted(RUNS))
def test_c_bulk_lines_equal_the_python_reference(tmp_path: Path, name: str) -> None:
    fmt, enrichment = RUNS[name]
    datagrams = bulk_corpus()
    source = tmp_path / "corpus.pickle"
    source.write_bytes(pickle.dumps(datagrams))
    python_out = tmp_path / "python.jsonl"
    env = {**os.environ, "FLOWSINK_NO_EXTENSION": "1"}
    subprocess.run(
        [sys.executable, __file__, str(source), str(python_out), name], env=env, check=True, timeout=600
    )
    fast_lines, by_reference = decode_corpus(datagrams, FORMATS[fmt], enrichment)
    python_lines = python_out.read_bytes().split(b"\n")
    assert len(python_lines) == len(fast_lines)
    differing = [i for i, (a, b) in enumerate(zip(fast_lines, python_lines, strict=True)) if a != b]
    assert not differing, (
        f"{len(differing)} datagrams differ, first {differing[0]} "
        f"{datagrams[differing[0]]!r}:\nC:      {fast_lines[differing[0]][:3000]!r}\n"
        f"Python: {python_lines[differing[0]][:3000]!r}"
    )
    documents = sum(line.count(b'"_index') for line in fast_lines)
    assert documents > 30_000
    # the C writers wrote (nearly) all of them: only options records and odd values are left to Python
    assert by_reference < documents * 0.05, (by_reference, documents)
    body = b"".join(fast_lines)
    for line in (
        fast_lines
    ):  # valid JSON, and no key twice in any object (enrichment writes into the writers' objects)
        for encoded in orjson.loads(line)["encoded"]:
            for part in encoded.splitlines():
                json.loads(part, object_pairs_hook=_no_duplicate_keys)
    if enrichment is None:  # no key of enrichment at all
        for key in (b"locality", b"related", b"labels", b"tags", b"alias", b"speed"):
            assert b'\\"' + key + b'\\":' not in body, key
    if enrichment in ("all", "networks-only"):
        assert body.count(b'\\"related\\":{\\"ip\\":[') > documents * 0.5
        for direction in (b"inbound", b"outbound", b"internal", b"external"):
            assert body.count(b'\\"direction\\":\\"' + direction) > 100, direction
    if enrichment in ("all", "geoip-only"):
        # GeoIP and AS from support.geoip's databases, on both ends and both families
        for key in (b"geo", b"as", b"country_iso_code", b"location", b"organization"):
            assert body.count(b'\\"' + key + b'\\":') > documents * 0.1, key
        assert body.count(b'\\"location\\":{\\"lat\\":') > 100
    if (
        enrichment == "geoip-only"
    ):  # per-address additions without internal networks: no locality, no direction
        assert b'\\"locality\\":' not in body and b'\\"related\\":{\\"ip\\":[' in body
    if enrichment in ("all", "exporters-only"):
        # the configured name of ifIndex 87 won over the options records' TenGigE0_1_0_1; 110's did not exist
        assert b'\\"id\\":\\"87\\",\\"name\\":\\"uplink-1\\",\\"alias\\":' in body
        assert b'\\"name\\":\\"TenGigE0_6_1_0\\",\\"alias\\":\\"alias only' in body
        assert b'\\"name\\":\\"configured-eno1\\",\\"speed\\":1000000000' in body
        assert body.count(b'\\"observer\\":{\\"ip\\":\\"10.0.0.1\\"') > 100
        assert b'\\"name\\":\\"generated-agent\\"}' in body and b'\\"name\\":\\"sflow-agent\\"}' in body


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    assert len(set(keys)) == len(keys), f"a key written twice: {keys}"
    return dict(pairs)


def test_encode_document_moves_the_id_into_the_action_line() -> None:
    doc = {
        "_id": "abc.0",
        "@timestamp": "2023-11-14T22:13:20.000Z",
        "event": {"action": "netflow_flow"},
        "source": {"ip": "10.0.0.1"},
    }
    line = encode_document(dict(doc), BulkFormat("fs"))
    assert line == (
        b'{"create":{"_index":"fs-flows-2023.11.14","_id":"abc.0"}}\n'
        b'{"@timestamp":"2023-11-14T22:13:20.000Z","event":{"action":"netflow_flow"},'
        b'"source":{"ip":"10.0.0.1"}}\n'
    )
    meta, source = split_encoded(line)
    assert meta == {"_index": "fs-flows-2023.11.14", "_id": "abc.0"}
    assert orjson.loads(source) == {k: v for k, v in doc.items() if k != "_id"}
    plain = encode_document(dict(doc), BulkFormat("fs", "index", keep_ids=False))
    assert plain.startswith(b'{"index":{"_index":"fs-flows-2023.11.14"}}\n')


def test_meta_documents_go_to_the_meta_index() -> None:
    for action in ("netflow_options", "sflow_counter_sample"):
        doc = {"@timestamp": "2024-02-29T00:00:00.000Z", "event": {"action": action}}
        assert index_name(doc, "p") == "p-meta-2024.02.29"
        assert encode_document(doc, BulkFormat("p")).startswith(
            b'{"create":{"_index":"p-meta-2024.02.29"}}\n'
        )


def test_index_day_from_iso_text_or_epoch_milliseconds() -> None:
    flow = {"event": {"action": "ipfix_flow"}}
    assert index_name({**flow, "@timestamp": "2026-11-23T23:59:59.999Z"}, "fs") == "fs-flows-2026.11.23"
    assert index_name({**flow, "@timestamp": "2026-11-24T01:00:00+02:00"}, "fs") == "fs-flows-2026.11.23"
    meta = {"event": {"action": "netflow_options"}, "@timestamp": 1795478399999}
    assert index_name(meta, "fs") == "fs-meta-2026.11.23"


def test_bulk_format_refuses_an_unknown_operation() -> None:
    with pytest.raises(ValueError, match="op_type"):
        BulkFormat("fs", "update")


def test_python_path_encodes_every_document_the_dict_path_gives() -> None:
    """Whatever the path, the bulk source lines are the dict documents (as a set: documents a C writer leaves
    to Python follow the ones it wrote) and the ids are the documents' ids."""
    rng = random.Random(3)
    datagrams = [d for d in corpus() if rng.random() < 0.2]
    plain, bulk = FlowDecoder(), FlowDecoder(DecoderSettings(bulk=BulkFormat("x")))
    for exporter, payload in datagrams:
        docs = plain.decode(payload, exporter, ARRIVAL_NS).documents
        encoded = bulk.decode(payload, exporter, ARRIVAL_NS).encoded
        got = sorted((meta["_id"], orjson.loads(source)) for meta, source in map(split_encoded, encoded))
        want = sorted((doc["_id"], {k: v for k, v in doc.items() if k != "_id"}) for doc in docs)
        assert got == want


if __name__ == "__main__":  # the child process: decode the corpus with whatever path this environment gives
    if os.environ.get("FLOWSINK_NO_EXTENSION") and native.EXTENSION is not None:
        sys.exit("FLOWSINK_NO_EXTENSION is set but the extension was loaded")
    fmt, enrichment = RUNS[sys.argv[3]]
    lines, _ = decode_corpus(pickle.loads(Path(sys.argv[1]).read_bytes()), FORMATS[fmt], enrichment)
    Path(sys.argv[2]).write_bytes(b"\n".join(lines))
