"""Pipeline worker: one queue partition -> decode -> Elasticsearch, acking the queue only once data is safe.

One worker (a process of its own) per queue partition reads datagrams in arrival order, so NetFlow v9/IPFIX
templates are applied in the order the exporter sent them, also after a restart. A datagram is acknowledged
only when every record decoded from it is indexed, already there (409) or dead-lettered, which the sink's
``index`` call guarantees when it returns. Data that arrived before its template is held by the decoder; the
queue keeps such a datagram (and everything after it, the ack being a cursor) until the hold is resolved, so a
crash in between replays it: deterministic ``_id``\\ s turn the replayed copies into 409s, not duplicates.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsink import metrics
from flowsink.decode.result import UNKNOWN_COUNTER_FORMAT, DecodeResult
from flowsink.log import RateLimitedLog, get_logger
from flowsink.pipeline.handover import SiblingTemplates
from flowsink.pipeline.settings import PipelineSettings
from flowsink.sinks.base import Sink, SinkOutcome

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
    """Reads one partition, decodes, hands the documents to the sink, acks.

    ``queue``: a ``flowsink.queue.PersistentQueue`` (read/ack/stats); ``decoder``: a ``FlowDecoder`` whose
    settings name the bulk format of the documents it writes; ``sink``: a ``flowsink.sinks.Sink``;
    ``template_cache``: where this partition's NetFlow v9/IPFIX templates are saved (None: not saved);
    ``sibling_caches``: where the node's other partitions save theirs, for templates an exporter moved here by
    SO_REUSEPORT brings no copy of (``flowsink.pipeline.handover``).

    One batch is written (in a helper thread: the sink waits on the network with the GIL released) while the
    next is decoded; batches are acked strictly in order, each only once the sink settled every line of it.
    Lines the sink hands back are offered again, the batch staying un-acked; between offers the worker keeps
    its gauges and template cache fresh and applies a configuration reload (``reload_requested``).
    """

    def __init__(
        self,
        queue: Any,
        decoder: Any,
        sink: Sink,
        settings: PipelineSettings | None = None,
        partition: int = 0,
        template_cache: Path | None = None,
        log_interval_s: float = 10.0,
        sibling_caches: Sequence[Path] = (),
    ) -> None:
        self.queue = queue
        self.decoder = decoder
        self.sink = sink
        self.settings = settings or PipelineSettings()
        self.partition = partition
        self.template_cache = template_cache
        self.cursor = AckCursor()
        self.errors_log = RateLimitedLog(log, log_interval_s)
        self.reload_requested = threading.Event()
        # set by whoever runs the worker: applies a configuration read again (SIGHUP)
        self.on_reload: Callable[[PipelineWorker], None] | None = None
        self._last_expire = time.monotonic()
        self._last_template_save = time.monotonic()
        # a template was learned or adopted since the last save: saved at the next expiry tick, so that a sibling
        # partition finds it within about a second
        self._templates_changed = False
        store = getattr(decoder, "templates", None)
        if sibling_caches and store is not None:
            store.fallback = SiblingTemplates(sibling_caches, decoder.settings, log_interval_s)
        self._last_gauges = 0.0
        self._skipped_seen: dict[str, int] = {}
        # the last read found less than a full batch: nothing older waits in the queue
        self._caught_up = False
        self._indexer = ThreadPoolExecutor(1, thread_name_prefix="index")
        self._inflight: tuple[Future, int, float] | None = None  # (sink write, last seq, perf_counter start)
        self.handed_back = 0  # lines the sink handed back and the worker offered again (tests watch it)
        # count acks from the checkpoint an earlier run left
        self.cursor.acked = queue.stats()["acked_seq"]

    @property
    def decode_settings(self) -> Any:
        return self.decoder.settings

    # -- one batch ------------------------------------------------------------------------------------

    def process_batch(self, timeout_s: float | None = None) -> BatchReport:
        settings = self.settings
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
        self._inflight = (self._indexer.submit(self._write, lines), entries[-1].seq, started)
        return report

    def _decode(self, entry: Any) -> Any:
        """Decode one queued datagram; a decoder bug costs that datagram (counted), never the worker.

        Without this a datagram that makes the decoder raise would crash the worker, be replayed from the
        queue on restart and crash it again, for ever.
        """
        try:
            return self.decoder.decode(entry.payload, entry.source, entry.arrival_ns)
        except Exception as exc:
            result = DecodeResult()
            result.error(
                "decoder_exception", f"datagram from {entry.source} ({len(entry.payload)} bytes): {exc!r}"
            )
            return result

    def finish_inflight(self) -> None:
        """Wait for the batch being written, offering again what the sink hands back, then ack it (raises the
        sink's ``SinkClosed`` if it was closed meanwhile: the batch then stays queued)."""
        if self._inflight is None:
            return
        future, last_seq, started = self._inflight
        self._inflight = None
        outcome = future.result()
        while outcome.retry_later:
            self.between_offers()
            self.handed_back += len(outcome.retry_later)
            outcome = self._write(outcome.retry_later)
        self.cursor.processed_up_to(last_seq)
        self._ack()
        metrics.PIPELINE_BATCH_DURATION.observe(time.perf_counter() - started)

    def between_offers(self) -> None:
        """While the sink cannot take a batch: what must not wait for it (gauges, the template cache, a reload)."""
        now = time.monotonic()
        if now - self._last_template_save >= self.decode_settings.template_save_interval_s:
            self._last_template_save = now
            self.save_templates()
        self.update_gauges()
        self.apply_requested_reload()

    def apply_requested_reload(self) -> None:
        if self.reload_requested.is_set():
            self.reload_requested.clear()
            if self.on_reload is not None:
                self.on_reload(self)

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
                elif key.startswith(UNKNOWN_COUNTER_FORMAT) and count:
                    # one reason for every format: formats come from the network, and the limiter keeps one entry per reason
                    self.errors_log.warning(
                        "sflow_unknown_counter_format",
                        "sFlow counter records of (enterprise:format) %s from %s skipped: a structure flowsink "
                        "does not decode (%d in this datagram)",
                        key[len(UNKNOWN_COUNTER_FORMAT) :],
                        exporter,
                        count,
                    )
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
            if stats.get("templates") or stats.get("templates_adopted"):
                self._templates_changed = True
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

    def _write(self, lines: list[bytes]) -> SinkOutcome:
        if not lines:
            return SinkOutcome()
        return self.sink.write(lines)

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
        decode = self.decode_settings
        if now - self._last_expire >= decode.expire_interval_s:
            self._last_expire = now
            self.expire_held(now)
            self.close_sequence_holes()
            if self._templates_changed:
                self._last_template_save = now
                self.save_templates()
        if now - self._last_template_save >= decode.template_save_interval_s:
            self._last_template_save = now
            self.save_templates()
        if now - self._last_gauges >= 1.0:
            self._last_gauges = now
            self.update_gauges()
        enricher = getattr(self.decode_settings, "enricher", None)
        if enricher is not None:  # its cache counters to the metrics, new databases or SNMP names taken
            enricher.maintain(now)

    def close_sequence_holes(self) -> None:
        """Count exporters' sequence holes that stayed open past ``decode.sequence_hole_max_age_s`` (a quiet or
        stopped exporter never advances far enough for the reorder window to close them).

        Only when caught up with the queue: a hole's age runs from when it was decoded, so while a backlog is
        worked through, the export that fills it may still be waiting in the queue.
        """
        close = getattr(self.decoder, "close_stale_sequence_holes", None)
        if close is None or not self._caught_up:
            return
        for exporter, protocol, gaps, lost in close(self.decode_settings.sequence_hole_max_age_s):
            label = metrics.exporter_label(exporter)
            if gaps:
                metrics.SEQUENCE_GAPS.labels(exporter=label, protocol=protocol).inc(gaps)
            if lost:
                metrics.LOST_RECORDS.labels(exporter=label, protocol=protocol).inc(lost)

    def expire_held(self, now: float) -> None:
        self.finish_inflight()
        result = self.decoder.expire(time.time_ns())
        self._account(result, "held")
        self._deliver(result.encoded)
        if self.decoder.pending_count() == 0:
            self.cursor.release_all()
        else:
            # After pending_max_seconds the decoder has decoded or expired whatever it held from then.
            self.cursor.release_before(
                now - self.decode_settings.pending_max_seconds - self.decode_settings.expire_interval_s
            )
        self._ack()

    def _deliver(self, lines: list[bytes]) -> None:
        """Write ``lines`` now (outside the batch flow), offering again what the sink hands back."""
        outcome = self._write(lines)
        while outcome.retry_later:
            self.between_offers()
            self.handed_back += len(outcome.retry_later)
            outcome = self._write(outcome.retry_later)

    def save_templates(self) -> None:
        self._templates_changed = False
        path = self.template_cache
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.decoder.save_templates(str(path))
        except OSError as exc:
            self.errors_log.error("template_save", "cannot save templates to %s: %s", path, exc)

    def load_templates(self) -> int:
        path = self.template_cache
        if path is None or not path.exists():
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

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set, then drain what is queued (up to the shutdown timeout)."""
        self.load_templates()
        while not stop.is_set():
            self.process_batch()
            self.tick()
            self.apply_requested_reload()
        self.drain(self.settings.shutdown_timeout_s)

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
        """Stop the writing thread (after ``drain``, or after a ``SinkClosed``)."""
        self._indexer.shutdown(wait=False, cancel_futures=True)

    def reload(
        self, settings: PipelineSettings, sections: Mapping[str, Any], log_interval_s: float
    ) -> list[str]:
        """Take the reloadable settings of a configuration read again; returns the keys applied.

        ``sections``: output name -> its settings, for the sink."""
        applied = []
        for name in ("batch_max_datagrams", "batch_max_wait_ms"):
            if getattr(self.settings, name) != getattr(settings, name):
                setattr(self.settings, name, getattr(settings, name))
                applied.append(f"pipeline.{name}")
        self.errors_log.interval_s = log_interval_s
        return applied + self.sink.reload(sections)


__all__ = ["AckCursor", "BatchReport", "PipelineSettings", "PipelineWorker"]
