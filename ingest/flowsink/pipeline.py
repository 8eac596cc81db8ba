"""Pipeline worker: one queue partition -> decode -> Elasticsearch, acking the queue only once data is safe.

One worker (a process of its own) per queue partition reads datagrams in arrival order, so NetFlow v9/IPFIX
templates are applied in the order the exporter sent them, also after a restart. A datagram is acknowledged
only when every record decoded from it is indexed, already there (409) or dead-lettered, which the sink's
``index`` call guarantees when it returns. Data that arrived before its template is held by the decoder; the
queue keeps such a datagram (and everything after it, the ack being a cursor) until the hold is resolved, so a
crash in between replays it: deterministic ``_id``\\ s turn the replayed copies into 409s, not duplicates.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsink import metrics
from flowsink.bulk import BulkFormat, index_name
from flowsink.config import Config, apply_reloadable, load_config
from flowsink.log import RateLimitedLog, get_logger, set_level, setup_logging

log = get_logger(__name__)


class AckCursor:
    """Which queue sequence number is safe to acknowledge.

    Datagrams whose data waits for a template are *held* until ``release_before`` (the decoder has then
    either decoded or expired that data); while any is held, the cursor stops just before the oldest one.
    """

    def __init__(self) -> None:
        self.processed: int | None = None  # highest seq whose records are all safe or held
        self._held: deque[tuple[int, float]] = deque()  # (seq, monotonic time held), seqs ascending
        self.acked: int | None = None

    def processed_up_to(self, seq: int) -> None:
        self.processed = seq

    def hold(self, seq: int, now: float) -> None:
        self._held.append((seq, now))

    def release_before(self, deadline: float) -> None:
        while self._held and self._held[0][1] <= deadline:
            self._held.popleft()

    def release_all(self) -> None:
        self._held.clear()

    @property
    def held(self) -> int:
        return len(self._held)

    def next_ack(self) -> int | None:
        """The seq to pass to ``queue.ack`` now, or None when nothing new is safe."""
        if self.processed is None:
            return None
        target = self._held[0][0] - 1 if self._held else self.processed
        if self.acked is not None and target <= self.acked:
            return None
        return target


@dataclass
class BatchReport:
    datagrams: int = 0
    documents: int = 0
    decode_errors: int = 0


class PipelineWorker:
    """Reads one partition, decodes, routes to indices, indexes through the sink, acks.

    ``queue``: a ``flowsink.queue.PersistentQueue`` (read/ack/stats); ``decoder``: a ``FlowDecoder``, made to
    write the bulk lines of ``bulk_format(config)``; ``sink``: anything with ``index_encoded(lines) ->
    BulkOutcome`` that returns only when every document is safe.

    One batch is indexed (in a helper thread: the sink waits on the network with the GIL released) while the
    next is decoded; batches are acked strictly in order, each only after its ``index`` call returned.
    """

    def __init__(self, queue: Any, decoder: Any, sink: Any, config: Config, partition: int = 0) -> None:
        self.queue = queue
        self.decoder = decoder
        self.sink = sink
        self.config = config
        self.partition = partition
        self.bulk = bulk_format(config)
        # the worker's decoder writes the worker's bulk lines (dicts it leaves are encoded in FlowDecoder)
        decoder.settings.bulk = self.bulk
        self.cursor = AckCursor()
        self.errors_log = RateLimitedLog(log, config.logging.rate_limit_interval_s)
        self._last_expire = time.monotonic()
        self._last_template_save = time.monotonic()
        self._last_gauges = 0.0
        self._skipped_seen: dict[str, int] = {}
        self._caught_up = (
            False  # the last read found less than a full batch: nothing older waits in the queue
        )
        self._indexer = ThreadPoolExecutor(1, thread_name_prefix="index")
        self._inflight: tuple[Future, int, float] | None = None  # (index call, last seq, perf_counter start)
        # count acks from the checkpoint an earlier run left
        self.cursor.acked = queue.stats()["acked_seq"]

    # -- one batch ------------------------------------------------------------------------------------

    def process_batch(self, timeout_s: float | None = None) -> BatchReport:
        settings = self.config.pipeline
        wait = settings.batch_max_wait_ms / 1000 if timeout_s is None else timeout_s
        entries = self.queue.read(settings.batch_max_datagrams, wait)
        self._caught_up = len(entries) < settings.batch_max_datagrams
        report = BatchReport(datagrams=len(entries))
        if not entries:
            self.finish_inflight()
            return report
        started = time.perf_counter()
        lines: list[bytes] = []
        now = time.monotonic()
        read_bytes = 0
        tally: Counter[tuple[str, ...]] = Counter()  # per-datagram counts, published once per batch
        for entry in entries:
            read_bytes += len(entry.payload)
            result = self._decode(entry)
            lines += result.encoded
            tally[("datagrams", metrics.protocol_label(result.protocol))] += 1
            report.decode_errors += self._account(result, entry.source, tally)
            if result.stats.get("pending"):
                self.cursor.hold(entry.seq, now)
        self._publish(tally)
        metrics.QUEUE_READ_DATAGRAMS.inc(len(entries))
        metrics.QUEUE_READ_BYTES.inc(read_bytes)
        report.documents = len(lines)
        self.finish_inflight()
        self._inflight = (self._indexer.submit(self._index, lines), entries[-1].seq, started)
        return report

    def _decode(self, entry: Any) -> Any:
        """Decode one queued datagram; a decoder bug costs that datagram (counted), never the worker.

        Without this a datagram that makes the decoder raise would crash the worker, be replayed from the
        queue on restart and crash it again, for ever.
        """
        try:
            return self.decoder.decode(entry.payload, entry.source, entry.arrival_ns)
        except Exception as exc:
            from flowsink.decode.result import DecodeResult

            result = DecodeResult()
            result.error(
                "decoder_exception", f"datagram from {entry.source} ({len(entry.payload)} bytes): {exc!r}"
            )
            return result

    def finish_inflight(self) -> None:
        """Wait for the batch being indexed, then ack it (raises the sink's ``SinkClosed`` if it was closed)."""
        if self._inflight is None:
            return
        future, last_seq, started = self._inflight
        self._inflight = None
        future.result()
        self.cursor.processed_up_to(last_seq)
        self._ack()
        metrics.PIPELINE_BATCH_DURATION.observe(time.perf_counter() - started)

    def _account(self, result: Any, exporter: str, tally: Counter[tuple[str, ...]] | None = None) -> int:
        """Metrics and rate-limited log lines for one decode result; returns its error count.

        The per-datagram counts go to ``tally`` (published by ``_publish`` once per batch: a labelled
        counter's ``labels()`` lookup per datagram cost 10% of a worker's time), or at once without one.
        """
        protocol = metrics.protocol_label(result.protocol)
        counts: Counter[tuple[str, ...]] = Counter() if tally is None else tally
        if result.protocol is not None:
            metrics.create_exporter_series(exporter, protocol)
        for reason, detail in result.errors:
            metrics.DECODE_ERRORS.labels(protocol=protocol, reason=reason).inc()
            self.errors_log.warning(f"decode:{reason}", "decode error (%s): %s", reason, detail)
        stats = result.stats
        if stats:
            for key, count in stats.items():
                if key.startswith("records.") and count:
                    counts[("records", protocol, key[8:])] += count
            gaps = stats.get("sequence_gaps", 0) + stats.get("sflow_datagram_gaps", 0)
            lost = stats.get("lost_records", 0)
            if gaps or lost:
                label = metrics.exporter_label(exporter)
                if gaps:
                    metrics.SEQUENCE_GAPS.labels(exporter=label, protocol=protocol).inc(gaps)
                if lost:
                    metrics.LOST_RECORDS.labels(exporter=label, protocol=protocol).inc(lost)
            if stats.get("expired"):
                metrics.EXPIRED_RECORDS.inc(stats["expired"])
        if tally is None:
            self._publish(counts)
        return len(result.errors)

    @staticmethod
    def _publish(tally: Counter[tuple[str, ...]]) -> None:
        for key, count in tally.items():
            if key[0] == "datagrams":
                metrics.DATAGRAMS_DECODED.labels(protocol=key[1]).inc(count)
            else:
                metrics.RECORDS_DECODED.labels(protocol=key[1], kind=key[2]).inc(count)

    def _index(self, lines: list[bytes]) -> int:
        if not lines:
            return 0
        outcome = self.sink.index_encoded(lines)
        metrics.DOCUMENTS_INDEXED.inc(outcome.indexed)
        if outcome.duplicates:
            metrics.DOCUMENTS_DUPLICATE.inc(outcome.duplicates)
        if outcome.retries:
            metrics.BULK_RETRIES.inc(outcome.retries)
        for reason, count in outcome.dead_letter_reasons.items():
            metrics.DOCUMENTS_DEAD_LETTERED.labels(reason=reason).inc(count)
        return outcome.indexed + outcome.duplicates

    def _ack(self) -> None:
        seq = self.cursor.next_ack()
        if seq is not None:
            self.queue.ack(seq)
            metrics.QUEUE_ACKED_DATAGRAMS.inc(seq - (self.cursor.acked or 0))
            self.cursor.acked = seq

    # -- timers: held-data expiry, template cache, gauges ----------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Run whatever timer is due; called between batches (the loop never blocks longer than a batch)."""
        now = time.monotonic() if now is None else now
        if now - self._last_expire >= self.config.decode.expire_interval_s:
            self._last_expire = now
            self.expire_held(now)
            self.close_sequence_holes()
        if now - self._last_template_save >= self.config.decode.template_save_interval_s:
            self._last_template_save = now
            self.save_templates()
        if now - self._last_gauges >= 1.0:
            self._last_gauges = now
            self.update_gauges()

    def close_sequence_holes(self) -> None:
        """Count exporters' sequence holes that stayed open past ``decode.sequence_hole_max_age_s`` (a quiet or
        stopped exporter never advances far enough for the reorder window to close them).

        Only when caught up with the queue: a hole's age runs from when it was decoded, so while a backlog is
        worked through, the export that fills it may still be waiting in the queue.
        """
        close = getattr(self.decoder, "close_stale_sequence_holes", None)
        if close is None or not self._caught_up:
            return
        for exporter, protocol, gaps, lost in close(self.config.decode.sequence_hole_max_age_s):
            label = metrics.exporter_label(exporter)
            if gaps:
                metrics.SEQUENCE_GAPS.labels(exporter=label, protocol=protocol).inc(gaps)
            if lost:
                metrics.LOST_RECORDS.labels(exporter=label, protocol=protocol).inc(lost)

    def expire_held(self, now: float) -> None:
        self.finish_inflight()
        result = self.decoder.expire(time.time_ns())
        self._account(result, "held")
        self._index(result.encoded)
        if self.decoder.pending_count() == 0:
            self.cursor.release_all()
        else:
            # After pending_max_seconds the decoder has decoded or expired whatever it held from then.
            self.cursor.release_before(
                now - self.config.decode.pending_max_seconds - self.config.decode.expire_interval_s
            )
        self._ack()

    def save_templates(self) -> None:
        path = self.config.template_cache_path(self.partition)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.decoder.save_templates(str(path))
        except OSError as exc:
            self.errors_log.error("template_save", "cannot save templates to %s: %s", path, exc)

    def load_templates(self) -> int:
        path = self.config.template_cache_path(self.partition)
        if not path.exists():
            return 0
        try:
            return self.decoder.load_templates(str(path))
        except Exception as exc:  # a damaged cache must not stop the node: exporters re-send templates
            log.warning("ignoring unreadable template cache %s: %s", path, exc)
            return 0

    def update_gauges(self) -> None:
        self.update_queue_gauges()
        metrics.TEMPLATES.set(self.decoder.template_count())
        metrics.PENDING_DATAGRAMS.set(self.decoder.pending_count())

    def update_queue_gauges(self) -> None:
        """Queue depth, bytes, oldest age; safe from another thread (``stats`` only reads)."""
        stats = self.queue.stats()
        metrics.QUEUE_DEPTH_DATAGRAMS.set(stats.get("depth_entries", 0))
        metrics.QUEUE_DEPTH_BYTES.set(stats.get("depth_bytes", 0))
        metrics.QUEUE_DISK_BYTES.set(stats.get("disk_bytes", 0))
        metrics.QUEUE_CAPACITY_BYTES.set(stats.get("max_bytes", 0))
        metrics.QUEUE_OLDEST_AGE_SECONDS.set(stats.get("oldest_age_seconds", 0.0))
        for reason in ("torn", "corrupt"):
            total = stats.get(f"{reason}_records", 0)
            new = total - self._skipped_seen.get(reason, 0)
            if new > 0:
                metrics.QUEUE_CORRUPT_RECORDS.labels(reason=reason).inc(new)
                self._skipped_seen[reason] = total

    def start_queue_gauges(self, stop: threading.Event, interval_s: float = 1.0) -> threading.Thread:
        """Keep the queue gauges fresh while a bulk waits for Elasticsearch (the loop is blocked then)."""

        def loop() -> None:
            while not stop.wait(interval_s):
                try:
                    self.update_queue_gauges()
                except Exception as exc:  # never let a metrics hiccup end the thread
                    self.errors_log.warning("queue_gauges", "cannot read queue stats: %s", exc)

        thread = threading.Thread(target=loop, name="queue-gauges", daemon=True)
        thread.start()
        return thread

    # -- loop -----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event, reload_requested: threading.Event | None = None) -> None:
        """Process batches until ``stop`` is set, then drain what is queued (up to the shutdown timeout)."""
        self.load_templates()
        while not stop.is_set():
            self.process_batch()
            self.tick()
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                _reload(self)
        self.drain(self.config.pipeline.shutdown_timeout_s)

    def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.process_batch(timeout_s=0.2).datagrams:
                break
            self.tick()
        self.finish_inflight()
        self.update_gauges()
        self.save_templates()

    def close(self) -> None:
        """Stop the indexing thread (after ``drain``, or after a ``SinkClosed``)."""
        self._indexer.shutdown(wait=False, cancel_futures=True)

    def apply_reload(self, new: Config) -> tuple[dict[str, Any], list[str]]:
        """Take the reloadable settings of ``new``; returns (applied, keys that need a restart instead)."""
        apply, restart = apply_reloadable(self.config, new)
        if "logging.level" in apply:
            set_level(self.config.logging.level)
        if "logging.rate_limit_interval_s" in apply:
            self.errors_log.interval_s = self.config.logging.rate_limit_interval_s
        sink_settings = getattr(self.sink, "settings", None)
        if sink_settings is not None:
            # the sink reads these per call, so batches after this one use the new sizes
            sink_settings.max_docs = self.config.elasticsearch.bulk_max_docs
            sink_settings.max_bytes = self.config.elasticsearch.bulk_max_bytes
        return apply, restart


# ---------------------------------------------------------------- building the parts from the config


def bulk_format(config: Config) -> BulkFormat:
    """How documents become bulk lines: the index prefix, and ``create`` with deterministic ids (replays are
    409s) unless ``pipeline.deterministic_ids`` is off (then ``index`` and ids chosen by Elasticsearch)."""
    keep_ids = config.pipeline.deterministic_ids
    return BulkFormat(config.elasticsearch.index_prefix, "create" if keep_ids else "index", keep_ids)


def decoder_settings(config: Config, partition: int) -> Any:
    """``DecoderSettings`` from the ``decode`` section (keys with the same name pass through), writing bulk
    lines in the format of ``bulk_format``."""
    from flowsink.decode import DecoderSettings

    names = {f.name for f in dataclasses.fields(DecoderSettings)}
    values = {k: v for k, v in dataclasses.asdict(config.decode).items() if k in names}
    if "template_cache_path" in names:
        values["template_cache_path"] = str(config.template_cache_path(partition))
    values["bulk"] = bulk_format(config)
    return DecoderSettings(**values)


def open_queue(config: Config, directory: Path) -> Any:
    """The queue of one partition; each gets an equal share of ``queue.max_bytes``."""
    from flowsink.queue import PersistentQueue

    share = config.queue.max_bytes // config.receiver_processes
    return PersistentQueue(
        directory,
        max_bytes=max(config.queue.segment_bytes, share),
        segment_bytes=config.queue.segment_bytes,
        fsync_interval_ms=config.queue.fsync_interval_ms,
        fsync_bytes=config.queue.fsync_bytes,
    )


def observe_bulk_request(seconds: float, documents: int, nbytes: int, result: str) -> None:
    """The sink's per-request observer: latency histogram, request results, Elasticsearch reachability."""
    metrics.BULK_REQUEST_DURATION.observe(seconds)
    metrics.BULK_REQUESTS.labels(result=result).inc()
    metrics.ELASTICSEARCH_UP.set(0 if result == "failed" else 1)


def sink_settings(config: Config) -> Any:
    """``SinkSettings`` from the ``elasticsearch`` and ``pipeline`` sections."""
    from flowsink.sinks.elasticsearch import SinkSettings

    es = config.elasticsearch
    return SinkSettings(
        op_type="create" if config.pipeline.deterministic_ids else "index",
        max_docs=es.bulk_max_docs,
        max_bytes=es.bulk_max_bytes,
        concurrency=es.bulk_concurrency,
        request_timeout_s=es.request_timeout_s,
        max_backoff_s=es.retry_max_backoff_s,
        dead_letter_path=str(config.dead_letter_path),
    )


def build_sink(config: Config) -> Any:
    """The Elasticsearch sink of one worker, with the auth/TLS options of ``elasticsearch`` and our metrics."""
    from flowsink.config import elasticsearch_client
    from flowsink.sinks.elasticsearch import CLIENT_SERIALIZERS, ElasticsearchSink

    client = elasticsearch_client(config, **CLIENT_SERIALIZERS)
    return ElasticsearchSink(client=client, settings=sink_settings(config), observer=observe_bulk_request)


# ---------------------------------------------------------------- the worker process


def worker_main(config: Config, partition: int, directory: str, ready: Any = None) -> None:
    """Entry point of the pipeline worker process of partition ``partition`` (queue ``directory``).

    SIGTERM: stop reading new batches once the queue is drained; if Elasticsearch keeps the last bulk
    waiting past ``pipeline.shutdown_timeout_s``, the sink is closed, the batch stays un-acked in the queue
    (indexed on the next start) and the process exits all the same.
    """
    from flowsink.decode import FlowDecoder
    from flowsink.sinks.elasticsearch import SinkClosed

    setup_logging(config.logging.level, config.logging.format, role=f"pipeline-{partition}")
    queue = open_queue(config, Path(directory))
    sink = build_sink(config)
    worker = PipelineWorker(queue, FlowDecoder(decoder_settings(config, partition)), sink, config, partition)
    stop = threading.Event()
    reload_requested = threading.Event()

    def on_sigterm(*_: Any) -> None:
        if not stop.is_set():
            stop.set()
            deadline = threading.Timer(config.pipeline.shutdown_timeout_s, sink.close)
            deadline.daemon = True
            deadline.start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    log.info("pipeline worker %d reading %s", partition, directory)
    gauges_stop = threading.Event()
    worker.start_queue_gauges(gauges_stop)
    if ready is not None:
        ready.set()
    try:
        worker.run(stop, reload_requested)
    except SinkClosed:
        log.warning(
            "pipeline worker %d: shutdown timeout reached with a bulk in flight; it stays queued", partition
        )
    gauges_stop.set()
    worker.close()
    _close(queue)
    _close(sink)
    log.info("pipeline worker %d stopped", partition)


def _reload(worker: PipelineWorker) -> None:
    if not worker.config.source:
        return
    try:
        new = load_config(worker.config.source)
    except Exception as exc:
        log.error("configuration reload failed, keeping the running settings: %s", exc)
        return
    apply, restart = worker.apply_reload(new)
    log.info("pipeline settings reloaded: %s", ", ".join(apply) or "nothing changed")
    if restart:
        log.warning("changed settings that need a restart were not applied: %s", ", ".join(restart))


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            log.warning("error while closing %s: %s", type(obj).__name__, exc)


__all__ = [
    "AckCursor",
    "PipelineWorker",
    "build_sink",
    "bulk_format",
    "decoder_settings",
    "index_name",
    "open_queue",
    "worker_main",
]
