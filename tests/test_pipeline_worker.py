"""Pipeline worker with the real queue and decoders, and a recording sink: what gets acked, and when."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from flowsink.bulk import split_encoded
from flowsink.config import load_config
from flowsink.decode import FlowDecoder
from flowsink.processes import build_worker, decoder_settings
from flowsink.sinks import Sink, SinkOutcome

ASA = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "logstash-codec-netflow"


class RecordingSink:
    """Stands in for an output: every document is 'written' and kept (parsed back) for inspection."""

    name = "recording"

    def __init__(self) -> None:
        self.docs: list[dict] = []

    def write(self, lines: list[bytes]) -> SinkOutcome:
        for line in lines:
            meta, source = split_encoded(line)
            self.docs.append({**orjson.loads(source), "_index": meta["_index"], "_id": meta.get("_id")})
        return SinkOutcome(written=len(lines))

    def reload(self, sections) -> list[str]:
        return []

    def close(self) -> None:
        pass


class UnreliableSink(RecordingSink):
    """Hands the first ``refusals`` offers back whole, as an output does during an outage."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals
        self.offers = 0

    def write(self, lines: list[bytes]) -> SinkOutcome:
        self.offers += 1
        if self.offers <= self.refusals:
            return SinkOutcome(retry_later=list(lines))
        return super().write(lines)


class ExplodingDecoder(FlowDecoder):
    """A decoder with a bug: raises on one payload."""

    def decode(self, payload: bytes, exporter: str, arrival_ns: int):
        if payload == b"boom":
            raise ZeroDivisionError("decoder bug")
        return super().decode(payload, exporter, arrival_ns)


def node_config(tmp_path, **env):
    return load_config(
        None,
        env={
            "FLOWSINK_NODE_RUN_DIR": str(tmp_path),
            "FLOWSINK_RECEIVE_PROCESSES": "1",
            "FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS": "1",
            **env,
        },
    )


def make_worker(tmp_path, decoder=None, sink=None, **env):
    config = node_config(tmp_path, **env)
    sink = sink or RecordingSink()
    worker = build_worker(config, 0, sink=sink, decoder=decoder)
    return worker, worker.queue, sink


def test_data_before_template_is_not_acked_until_decoded(tmp_path):
    worker, queue, sink = make_worker(tmp_path)
    data = (ASA / "netflow9_test_cisco_asa_1_data.dat").read_bytes()
    template = (ASA / "netflow9_test_cisco_asa_1_tpl.dat").read_bytes()
    for payload in (data, b"\x00\x63junk", template, data):
        queue.append(payload, "192.0.2.5", time.time_ns())
    worker.process_batch(0.5)  # data: held by the decoder
    worker.process_batch(0.5)  # junk
    worker.finish_inflight()
    assert queue.stats()["acked_seq"] == 0  # the held datagram and everything after it stay queued
    worker.process_batch(0.5)  # template: the held data is decoded with it
    worker.finish_inflight()
    assert len(sink.docs) == 14
    assert queue.stats()["acked_seq"] == 0  # not until the expiry timer has seen the decoder empty
    worker.expire_held(time.monotonic())
    assert queue.stats()["acked_seq"] == 3
    worker.process_batch(0.5)
    worker.finish_inflight()
    assert len(sink.docs) == 28
    assert queue.stats()["acked_seq"] == 4


def test_held_data_is_released_after_pending_max_seconds(tmp_path):
    worker, queue, sink = make_worker(tmp_path, FLOWSINK_DECODE_PENDING_MAX_SECONDS="0")
    queue.append((ASA / "netflow9_test_cisco_asa_1_data.dat").read_bytes(), "192.0.2.6", time.time_ns())
    worker.process_batch(0.5)
    worker.finish_inflight()
    assert queue.stats()["acked_seq"] == 0
    time.sleep(1.1)  # past pending_max_seconds + expire_interval_s
    worker.expire_held(time.monotonic())
    assert queue.stats()["acked_seq"] == 1
    assert sink.docs == []


def test_decoder_exception_costs_one_datagram_not_the_worker(tmp_path):
    from flowsink import metrics

    worker, queue, sink = make_worker(
        tmp_path, ExplodingDecoder(), FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS="10"
    )
    v5 = (ASA / "netflow5.dat").read_bytes()
    for payload in (v5, b"boom", v5):
        queue.append(payload, "192.0.2.7", time.time_ns())
    before = metrics.DECODE_ERRORS.labels(protocol="unknown", reason="decoder_exception")._value.get()
    report = worker.process_batch(0.5)
    worker.finish_inflight()
    assert report.decode_errors == 1
    assert (
        metrics.DECODE_ERRORS.labels(protocol="unknown", reason="decoder_exception")._value.get()
        == before + 1
    )
    assert len(sink.docs) == 2 * len(FlowDecoder().decode(v5, "192.0.2.7", 0).documents)
    assert queue.stats()["acked_seq"] == 3


def test_decoder_writing_bulk_lines_gives_the_documents_of_the_dict_path(tmp_path):
    """The node's decoders write bulk lines themselves (``decoder_settings`` sets the format): same documents,
    daily index from @timestamp, deterministic ids; with deterministic ids off, ``index`` without ids."""
    payloads = [
        (ASA / name).read_bytes()
        for name in (
            "netflow5.dat",
            "netflow9_test_cisco_asa_1_tpl.dat",
            "netflow9_test_cisco_asa_1_data.dat",
        )
    ]
    arrival = time.time_ns()
    reference = FlowDecoder()
    expected = [
        doc for payload in payloads for doc in reference.decode(payload, "192.0.2.9", arrival).documents
    ]
    for deterministic in ("true", "false"):
        run = tmp_path / deterministic
        worker, queue, sink = make_worker(
            run, FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS="10", FLOWSINK_PIPELINE_DETERMINISTIC_IDS=deterministic
        )
        config = load_config(None, env={"FLOWSINK_PIPELINE_DETERMINISTIC_IDS": deterministic})
        worker.decoder = FlowDecoder(decoder_settings(config, 0))
        assert worker.decoder.settings.bulk.keep_ids == (deterministic == "true")
        for payload in payloads:
            queue.append(payload, "192.0.2.9", arrival)
        worker.process_batch(0.5)
        worker.finish_inflight()
        assert len(sink.docs) == len(expected) == 16
        for got, want in zip(sink.docs, expected, strict=True):
            day = want["@timestamp"][:10].replace("-", ".")
            kind = "meta" if want["event"]["action"] == "netflow_options" else "flows"
            assert got.pop("_index") == f"flowsink-{kind}-{day}"
            assert got.pop("_id") == (want["_id"] if deterministic == "true" else None)
            assert got == {k: v for k, v in want.items() if k != "_id"}


def test_sequence_holes_of_a_quiet_exporter_are_counted_once_caught_up(tmp_path):
    import struct

    from flowsink import metrics

    def v5(sequence: int) -> bytes:
        return struct.pack("!HHIIIIBBH", 5, 1, 1000, 1_700_000_000, 0, sequence, 0, 0, 0) + bytes(48)

    worker, queue, _ = make_worker(
        tmp_path, FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS="10", FLOWSINK_DECODE_SEQUENCE_HOLE_MAX_AGE_S="0.1"
    )
    for sequence in (0, 1, 5):  # 2..4 never arrive, then the exporter goes quiet
        queue.append(v5(sequence), "192.0.2.44", time.time_ns())
    lost = metrics.LOST_RECORDS.labels(exporter="192.0.2.44", protocol="netflow_v5")
    before = lost._value.get()
    worker.process_batch(0.5)
    worker.finish_inflight()
    worker.close_sequence_holes()
    assert lost._value.get() == before  # young: a late datagram may still fill it
    time.sleep(0.2)
    worker.tick(time.monotonic() + 10)  # the expiry timer is due
    assert lost._value.get() == before + 3
    gaps = metrics.SEQUENCE_GAPS.labels(exporter="192.0.2.44", protocol="netflow_v5")._value.get()
    assert gaps >= 1


def test_expiry_timer_counts_no_datagrams(tmp_path):
    """Only datagrams read from the queue are counted as decoded, not the expiry timer's runs."""
    from flowsink import metrics

    worker, _, _ = make_worker(tmp_path)
    unknown = metrics.DATAGRAMS_DECODED.labels(protocol="unknown")
    before = unknown._value.get()
    for _ in range(3):
        worker.expire_held(time.monotonic())
    assert unknown._value.get() == before


def _imports_of(module: str, seen: set[str]) -> set[str]:
    """Every module ``module`` imports, transitively within flowsink (any import statement anywhere in it)."""
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # "from package.module import name": a name, not a module
        return seen
    if spec is None or spec.origin is None or not spec.origin.endswith(".py") or module in seen:
        return seen
    seen.add(module)
    for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] == "elasticsearch":
                seen.add(name)
            elif name.startswith("flowsink"):
                _imports_of(name, seen)
    return seen


def test_the_worker_depends_on_the_sink_seam_only(tmp_path):
    """The worker is written against ``flowsink.sinks.base``: no Elasticsearch module anywhere below it."""
    _, _, sink = make_worker(tmp_path)
    assert isinstance(sink, Sink)
    imported = _imports_of("flowsink.pipeline.worker", set())
    assert "flowsink.sinks.base" in imported
    assert not [m for m in imported if "elasticsearch" in m]


def test_lines_handed_back_are_offered_again_and_the_batch_acked_only_then(tmp_path):
    """An output in an outage hands the batch back: it stays un-acked, the worker applies a reload requested
    meanwhile, and offers the same lines again until they are placed; nothing is lost or written twice."""
    sink = UnreliableSink(refusals=3)
    worker, queue, _ = make_worker(tmp_path, sink=sink, FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS="10")
    reloads = []
    worker.on_reload = lambda w: reloads.append(queue.stats()["acked_seq"])
    worker.reload_requested.set()
    v5 = (ASA / "netflow5.dat").read_bytes()
    for _ in range(3):
        queue.append(v5, "192.0.2.8", time.time_ns())
    worker.process_batch(0.5)
    worker.finish_inflight()
    per_datagram = len(FlowDecoder().decode(v5, "192.0.2.8", 0).documents)
    assert sink.offers == 4 and worker.handed_back == 3 * 3 * per_datagram
    assert reloads == [0]  # applied while the batch was still queued
    assert len(sink.docs) == 3 * per_datagram
    assert queue.stats()["acked_seq"] == 3


def test_an_exporter_moved_to_another_partition_is_decoded_with_the_templates_the_first_one_learned(tmp_path):
    """After a receiver restart SO_REUSEPORT may hash an exporter to another receiver: its datagrams then land in
    another partition, whose worker never saw the exporter's templates. The partitions hand templates over
    through their template caches, so no data waits for a template the node already knew."""
    config = node_config(tmp_path, FLOWSINK_RECEIVE_PROCESSES="2", FLOWSINK_PIPELINE_BATCH_MAX_DATAGRAMS="10")
    sinks = [RecordingSink(), RecordingSink()]
    first, second = (build_worker(config, partition, sink=sinks[partition]) for partition in (0, 1))
    template = (ASA / "netflow9_test_cisco_asa_1_tpl.dat").read_bytes()
    data = (ASA / "netflow9_test_cisco_asa_1_data.dat").read_bytes()
    first.queue.append(template, "192.0.2.5", time.time_ns())
    first.queue.append(data, "192.0.2.5", time.time_ns())
    first.process_batch(0.5)
    first.finish_inflight()
    assert len(sinks[0].docs) == 14
    # the exporter moves before the first worker's timers ran: its data waits in the second partition...
    second.queue.append(data, "192.0.2.5", time.time_ns())
    second.process_batch(0.5)
    second.finish_inflight()
    assert sinks[1].docs == [] and second.decoder.pending_count() == 1
    # ... only until both workers' timers ran once (a second apart, between batches), far sooner than the
    # periodic template save (decode.template_save_interval_s, 30 s) or the exporter's next template
    first.tick(time.monotonic() + 1.5)
    second.tick(time.monotonic() + 1.5)
    assert len(sinks[1].docs) == 14
    assert second.decoder.pending_count() == 0 and second.queue.stats()["acked_seq"] == 1
    assert [d["_id"] for d in sinks[1].docs] == [d["_id"] for d in sinks[0].docs]
    # the second partition keeps what it was handed: the exporter's next data is decoded at once, even with
    # the first partition's cache gone
    config.template_cache_path(0).unlink()
    second.queue.append(data, "192.0.2.5", time.time_ns())
    second.process_batch(0.5)
    second.finish_inflight()
    assert len(sinks[1].docs) == 28


def test_a_damaged_sibling_cache_is_ignored_with_a_log_line(tmp_path, caplog):
    config = node_config(tmp_path, FLOWSINK_RECEIVE_PROCESSES="2")
    config.template_cache_path(0).write_bytes(b"{not json")
    worker = build_worker(config, 1, sink=RecordingSink())
    worker.queue.append(
        (ASA / "netflow9_test_cisco_asa_1_data.dat").read_bytes(), "192.0.2.8", time.time_ns()
    )
    worker.process_batch(0.5)
    worker.finish_inflight()
    worker.process_batch(0.1)  # a second miss does not parse the unchanged file again
    assert worker.decoder.pending_count() == 1
    assert "ignoring template cache" in caplog.text and str(config.template_cache_path(0)) in caplog.text


def test_sflow_counter_records_of_an_unknown_format_are_logged_by_format(tmp_path, caplog):
    sflow = ASA.parent / "logstash-codec-sflow" / "sflow_counters_sample.dat"
    worker, queue, sink = make_worker(tmp_path)
    queue.append(sflow.read_bytes(), "192.0.2.12", time.time_ns())
    worker.process_batch(0.5)
    worker.finish_inflight()
    assert len(sink.docs) == 12  # the samples themselves are indexed, the unknown records skipped
    assert "sFlow counter records of (enterprise:format) 0:2201 from 192.0.2.12 skipped" in caplog.text
    assert "(2 in this datagram)" in caplog.text
