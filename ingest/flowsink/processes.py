"""The node's child processes, composed from the configuration: each component gets its own settings here.

- receivers: ``flowsink.receive.receiver_main`` (given the ``receive``, ``queue`` and ``logging`` sections);
- pipeline workers: :func:`pipeline_main`, one per queue partition: the partition's queue, a decoder that
  writes the documents in the outputs' format with the ``enrich`` section's additions, the outputs' sink, and the
  worker that runs them;
- the enrichment process: :func:`enrich_main`, when GeoIP databases or SNMP targets are configured: watches the
  databases' files and polls the exporters, publishing both in ``<run_dir>/enrich/`` for the workers
  (``flowsink.enrich.sources``).

``build_worker`` is the same composition without the process around it (tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from pathlib import Path
from typing import Any

from flowsink.bulk import BulkFormat
from flowsink.config import Config, apply_reloadable, load_config
from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.enrich.enricher import build_enricher
from flowsink.enrich.sources import DatabasePublisher, publish_snmp_names, sources_dir, sources_for
from flowsink.log import get_logger, set_level, setup_logging
from flowsink.pipeline.worker import PipelineWorker
from flowsink.queue import PersistentQueue, open_partition
from flowsink.sinks import Sink, SinkClosed, build_sink

log = get_logger(__name__)


def bulk_format(config: Config) -> BulkFormat:
    """How documents become bulk lines: the index prefix, and ``create`` with deterministic ids (replays are
    409s) unless ``pipeline.deterministic_ids`` is off (then ``index`` and ids chosen by the output)."""
    keep_ids = config.pipeline.deterministic_ids
    return BulkFormat(config.elasticsearch.index_prefix, "create" if keep_ids else "index", keep_ids)


def decoder_settings(config: Config, partition: int) -> DecoderSettings:
    """The ``decode`` section for one partition's decoder: its template cache, writing the outputs' format, with
    the ``enrich`` section's enricher (its own: each worker process keeps its own caches)."""
    return dataclasses.replace(
        config.decode,
        template_cache_path=str(config.template_cache_path(partition)),
        bulk=bulk_format(config),
        enricher=build_enricher(config.enrich, sources_for(config.run_dir, config.enrich)),
    )


def open_queue(config: Config, directory: Path) -> PersistentQueue:
    """The queue of one partition (the partitions share ``queue.max_bytes``)."""
    return open_partition(config.queue, directory, config.receiver_processes)


def build_worker(
    config: Config,
    partition: int = 0,
    directory: str | Path | None = None,
    *,
    sink: Sink | None = None,
    decoder: FlowDecoder | None = None,
) -> PipelineWorker:
    """A pipeline worker for ``partition`` reading ``directory`` (default ``<queue dir>/rx-<partition>``), its
    parts built from ``config`` unless given (a decoder given is made to write the outputs' format)."""
    from flowsink.queue import partition_dirs, receiver_dir

    queue = open_queue(config, Path(directory) if directory else receiver_dir(config.queue_dir, partition))
    if decoder is None:
        decoder = FlowDecoder(decoder_settings(config, partition))
    else:
        decoder.settings.bulk = bulk_format(config)
    if sink is None:
        sink = build_sink(config.output, config.output_sections(), config.output_context(partition))
    return PipelineWorker(
        queue,
        decoder,
        sink,
        dataclasses.replace(config.pipeline),
        partition=partition,
        template_cache=config.template_cache_path(partition),
        log_interval_s=config.logging.rate_limit_interval_s,
        sibling_caches=[
            config.template_cache_path(other)
            for other in range(len(partition_dirs(config.queue_dir, config.receiver_processes)))
            if other != partition
        ],
    )


def pipeline_main(config: Config, partition: int, directory: str, ready: Any = None) -> None:
    """Entry point of the pipeline worker process of partition ``partition`` (queue ``directory``).

    SIGTERM: stop reading new batches once the queue is drained; if the output keeps the last batch waiting
    past ``pipeline.shutdown_timeout_s``, the sink is closed, the batch stays un-acked in the queue (written
    on the next start) and the process exits all same. SIGHUP: read the configuration file again and apply
    what can change live.
    """
    setup_logging(config.logging.level, config.logging.format, role=f"pipeline-{partition}")
    worker = build_worker(config, partition, directory)
    queue, sink = worker.queue, worker.sink
    worker.on_reload = lambda w: reload_worker(w, config)
    stop = threading.Event()

    def on_sigterm(*_: Any) -> None:
        if not stop.is_set():
            stop.set()
            deadline = threading.Timer(config.pipeline.shutdown_timeout_s, sink.close)
            deadline.daemon = True
            deadline.start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, lambda *_: worker.reload_requested.set())
    log.info("pipeline worker %d reading %s, writing to %s", partition, directory, ", ".join(config.output))
    gauges_stop = threading.Event()
    worker.start_queue_gauges(gauges_stop)
    if ready is not None:
        ready.set()
    try:
        worker.run(stop)
    except SinkClosed:
        log.warning(
            "pipeline worker %d: shutdown timeout reached with a batch in flight; it stays queued", partition
        )
    gauges_stop.set()
    worker.close()
    _close(queue)
    _close(sink)
    log.info("pipeline worker %d stopped", partition)


def reload_worker(worker: PipelineWorker, config: Config) -> None:
    """SIGHUP in a worker: read the file again, apply what may change live (``config`` is updated in place, so
    the next reload compares with what runs), say what needs a restart."""
    if not config.source:
        return
    try:
        new = load_config(config.source)
    except Exception as exc:
        log.error("configuration reload failed, keeping the running settings: %s", exc)
        return
    applied, restart = apply_reloadable(config, new)
    if "logging.level" in applied:
        set_level(config.logging.level)
    if any(key.startswith("enrich.") for key in applied):
        # a new enricher: what is added changes from the next datagram on, and its caches start empty
        old = worker.decoder.settings.enricher
        worker.decoder.settings.enricher = build_enricher(
            config.enrich, sources_for(config.run_dir, config.enrich)
        )
        if old is not None:
            old.close()
    worker.reload(config.pipeline, config.output_sections(), config.logging.rate_limit_interval_s)
    log.info("pipeline settings reloaded: %s", ", ".join(applied) or "nothing changed")
    if restart:
        log.warning("changed settings that need a restart were not applied: %s", ", ".join(restart))


# ---------------------------------------------------------------- the enrichment process


def needs_enrich_process(config: Config) -> bool:
    """GeoIP files to watch or exporters to poll: what only one process per node should do."""
    return bool(config.enrich.geoip_databases or config.enrich.snmp_targets)


def publish_enrichment_sources(config: Config) -> None:
    """At the node's start, before the workers: the configured databases published as they are (an earlier run's
    snapshots kept where the files did not change), so the first datagrams are enriched as the later ones."""
    if config.enrich.configured():
        DatabasePublisher(sources_dir(config.run_dir)).update(config.enrich.geoip_databases, first=True)


def enrich_main(config: Config, ready: Any = None) -> None:
    """Entry point of the node's enrichment process: every ``enrich.geoip_check_interval_s`` the databases' files
    checked (a new version published once it stopped changing), every ``enrich.snmp_refresh_interval_s`` the
    exporters polled; SIGHUP re-reads the configuration (targets, credentials, paths, intervals)."""
    import asyncio

    setup_logging(config.logging.level, config.logging.format, role="enrich")
    directory = sources_dir(config.run_dir)
    publisher = DatabasePublisher(directory)
    reload = threading.Event()
    stop = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    async def run() -> None:
        from flowsink.enrich.snmp import poll_all

        names: dict[str, Any] = {}
        next_check = next_poll = 0.0
        loop = asyncio.get_running_loop()
        if ready is not None:
            ready.set()
        while not stop.is_set():
            if reload.is_set():
                reload.clear()
                try:
                    applied, _ = apply_reloadable(config, load_config(config.source))
                except Exception as exc:
                    log.error("configuration reload failed, keeping the running settings: %s", exc)
                else:
                    if any(key.startswith("enrich.snmp") for key in applied):
                        next_poll = 0.0
                    next_check = 0.0
            now = loop.time()
            settings = config.enrich
            if now >= next_check:
                next_check = now + settings.geoip_check_interval_s
                await loop.run_in_executor(None, publisher.update, settings.geoip_databases)
            if now >= next_poll and settings.snmp_targets:
                next_poll = now + settings.snmp_refresh_interval_s
                names = await poll_all(settings, names)
                publish_snmp_names(directory, names)
            elif names and not settings.snmp_targets:  # polling turned off: the names go with it
                names = {}
                publish_snmp_names(directory, names)
            await asyncio.sleep(0.2)

    log.info(
        "enrichment process watching %d database(s), polling %d exporter(s)",
        len(config.enrich.geoip_databases),
        len(config.enrich.snmp_targets),
    )
    asyncio.run(run())
    log.info("enrichment process stopped")


def _close(obj: Any) -> None:
    close = getattr(obj, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            log.warning("error while closing %s: %s", type(obj).__name__, exc)
