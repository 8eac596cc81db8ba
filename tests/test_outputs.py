"""The sink seam proven with two real outputs: the same worker over Elasticsearch and over the file output
gets the same documents for the same datagrams, and those are what `flowsink decode` prints; a node with only
the file output runs, and is ready, with no Elasticsearch anywhere."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from flowsink.config import load_config
from flowsink.decode.capture import CaptureStats, read_file
from flowsink.generate.pcap import Datagram, write_pcap
from flowsink.processes import build_worker
from flowsink.sinks.file import FileSettings, FileSink, document_line
from support.node import NodeProcess, V5Exporter

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"

# (exporter, fixture files in the order the exporter sent them): templates before data, several protocols
CAPTURE = (
    ("192.0.2.11", ["logstash-codec-netflow/netflow5.dat"]),
    (
        "192.0.2.12",
        [
            "logstash-codec-netflow/netflow9_test_cisco_asa_1_tpl.dat",
            "logstash-codec-netflow/netflow9_test_cisco_asa_1_data.dat",
        ],
    ),
    (
        "192.0.2.13",
        [
            "logstash-codec-netflow/ipfix_test_mikrotik_tpl.dat",
            "logstash-codec-netflow/ipfix_test_mikrotik_data258.dat",
        ],
    ),
    (
        "192.0.2.14",
        ["logstash-codec-sflow/sflow_flow_sample.dat", "logstash-codec-sflow/sflow_counters_sample.dat"],
    ),
)


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A pcap of real devices' datagrams from four exporters (the shared fixtures)."""
    datagrams = []
    moment = 1_700_000_000.0
    for exporter, names in CAPTURE:
        for name in names:
            payload = (FIXTURES / name).read_bytes()
            datagrams.append(Datagram(moment, exporter, "192.0.2.1", 40000, 2055, payload))
            moment += 0.001
    path = tmp_path / "devices.pcap"
    write_pcap(path, datagrams)
    return path


def decode_lines(capture: Path) -> list[bytes]:
    """What `flowsink decode` prints for the capture: one document per line."""
    done = subprocess.run(
        [sys.executable, "-m", "flowsink.cli", "decode", str(capture)], capture_output=True, check=True
    )
    return done.stdout.splitlines(keepends=True)


def run_worker(config, capture: Path, sink=None) -> None:
    """The node's worker composition over ``capture``'s datagrams (exporter addresses and arrival times from
    the capture, as the receivers would have queued them)."""
    worker = build_worker(config, 0, sink=sink)
    for datagram in read_file(str(capture), CaptureStats()):
        worker.queue.append(datagram.payload, datagram.src_ip, datagram.timestamp_ns)
    while worker.process_batch(timeout_s=0.1).datagrams:
        pass
    worker.expire_held(time.monotonic())
    worker.finish_inflight()
    assert worker.queue.stats()["depth_entries"] == 0
    worker.close()
    worker.queue.close()
    worker.sink.close()


def test_document_line_puts_the_id_first_as_decode_does():
    line = b'{"create":{"_index":"p-flows-2024.01.01","_id":"abc-1.0"}}\n{"@timestamp":"x","n":1}\n'
    assert document_line(line) == b'{"_id":"abc-1.0","@timestamp":"x","n":1}\n'
    auto = b'{"index":{"_index":"p-flows-2024.01.01"}}\n{"n":1}\n'
    assert document_line(auto) == b'{"n":1}\n'


def test_file_output_writes_what_decode_prints(tmp_path: Path, capture: Path):
    expected = decode_lines(capture)
    assert len(expected) > 50
    out = tmp_path / "out" / "flows.ndjson"
    config = load_config(
        None,
        env={
            "FLOWSINK_NODE_RUN_DIR": str(tmp_path / "run"),
            "FLOWSINK_RECEIVE_PROCESSES": "1",
            "FLOWSINK_OUTPUT": "file",
            "FLOWSINK_FILE_PATH": str(out),
        },
    )
    run_worker(config, capture)
    assert sorted(out.read_bytes().splitlines(keepends=True)) == sorted(expected)


@pytest.mark.integration
def test_the_same_worker_over_elasticsearch_and_the_file_output_gets_the_same_documents(
    tmp_path: Path, capture: Path, es, es_url: str, flowsink_templates: str
):
    """Acceptance of the sink seam: one worker composition, two outputs, identical documents (ids included)."""
    prefix = flowsink_templates
    env = {
        "FLOWSINK_NODE_RUN_DIR": str(tmp_path / "run-es"),
        "FLOWSINK_RECEIVE_PROCESSES": "1",
        "FLOWSINK_ELASTICSEARCH_URL": es_url,
        "FLOWSINK_ELASTICSEARCH_INDEX_PREFIX": prefix,
    }
    run_worker(load_config(None, env=env), capture)
    out = tmp_path / "flows.ndjson"
    file_env = {**env, "FLOWSINK_NODE_RUN_DIR": str(tmp_path / "run-file"), "FLOWSINK_OUTPUT": "file"}
    file_env["FLOWSINK_FILE_PATH"] = str(out)
    run_worker(load_config(None, env=file_env), capture)
    es.indices.refresh(index=f"{prefix}-*")
    hits = es.search(index=f"{prefix}-flows-*,{prefix}-meta-*", size=10_000, query={"match_all": {}})["hits"]
    from_es = sorted(orjson.dumps({"_id": h["_id"], **h["_source"]}) for h in hits["hits"])
    from_file = sorted(orjson.dumps(orjson.loads(line)) for line in out.read_bytes().splitlines())
    from_decode = sorted(orjson.dumps(orjson.loads(line)) for line in decode_lines(capture))
    assert hits["total"]["value"] == len(from_file) == len(from_decode)
    assert from_es == from_file == from_decode


def test_file_output_rotates_by_size_and_keeps_the_newest(tmp_path: Path):
    path = tmp_path / "f.ndjson"
    sink = FileSink(FileSettings(path=str(path), max_bytes=1000, keep=2))
    line = b'{"create":{"_index":"i","_id":"x"}}\n{"pad":"' + b"p" * 200 + b'"}\n'
    for _ in range(21):  # 4 lines fill a file: five rotations, then one line in a new file
        assert sink.write([line]).written == 1
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["f.ndjson", "f.ndjson.1", "f.ndjson.2"]
    for name in files:
        size = (tmp_path / name).stat().st_size
        assert size < 1000 + 250
    assert all(json.loads(x)["_id"] == "x" for x in (tmp_path / "f.ndjson.1").read_text().splitlines())


def test_file_output_hands_a_batch_back_when_it_cannot_write(tmp_path: Path):
    """A write error (here: the folder replaced by a file) keeps the batch queued, counted by reason."""
    from flowsink import metrics

    folder = tmp_path / "out"
    sink = FileSink(FileSettings(path=str(folder / "f.ndjson")))
    line = b'{"create":{"_index":"i","_id":"y"}}\n{"n":1}\n'
    assert sink.write([line]).written == 1
    for leftover in folder.iterdir():  # the file and its lock file
        leftover.unlink()
    folder.rmdir()
    folder.write_text("not a folder")
    errors = metrics.FILE_WRITE_ERRORS.labels(reason="io_error")
    before = errors._value.get()
    outcome = sink.write([line])
    assert outcome.written == 0 and outcome.retry_later == [line]
    assert errors._value.get() == before + 1
    sink.close()


def _unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.integration
def test_a_node_with_only_the_file_output_needs_no_elasticsearch(tmp_path: Path):
    """`flowsink run` with output: file and no cluster anywhere: ready, receives UDP, writes every flow."""
    out = tmp_path / "flows.ndjson"
    node = NodeProcess(
        tmp_path,
        _unused_url(),  # nothing listens there
        "unused",
        settings={"output": ["file"], "file": {"path": str(out)}},
    )
    node.start()  # waits for /readyz to answer 200
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        exporter = V5Exporter()
        for _ in range(100):
            sender.sendto(exporter.datagram(30), ("127.0.0.1", node.udp_port))
            time.sleep(0.002)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 3000):
        time.sleep(0.2)
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/readyz", timeout=5) as ready:
        assert json.loads(ready.read())["status"] == "ready"
    assert node.stop() == 0
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(docs) == 3000
    assert len({(d["source"]["ip"], d["source"]["port"]) for d in docs}) == 3000
    assert "cannot reach" not in node.log()
