"""Every Prometheus metric of an ingest node, defined once.

The node runs several processes (receivers, pipeline workers, the HTTP server), so prometheus-client runs in
multiprocess mode: ``flowsink.node`` sets ``PROMETHEUS_MULTIPROC_DIR`` (under the node's run dir, emptied at
start) *before* this module is imported anywhere, and ``/metrics`` aggregates the per-process files.
Without that variable (unit tests, ``flowsink decode``) the metrics are ordinary in-process ones.

Names follow ``../shared/CONTRACTS.md``: prefix ``flowsink_``, counters end in ``_total``, units in the names,
labels from bounded sets: ``exporter`` (capped by :func:`exporter_label`), ``protocol``, ``reason``, ``kind``,
``port``. ``docs/operations.md`` lists them for dashboards and alerts; keep the two in step.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import Counter, Gauge, Histogram

# ---------------------------------------------------------------- bounded labels

MAX_EXPORTERS = 1000
OTHER_EXPORTER = "other"
_exporters_seen: set[str] = set()
_exporters_lock = threading.Lock()


def exporter_label(address: str) -> str:
    """The exporter's address as a label, for the first ``MAX_EXPORTERS`` exporters a process sees, else "other".

    A network with more routers than that still gets totals right; only the per-exporter split is coarser.
    """
    if address in _exporters_seen:
        return address
    with _exporters_lock:
        if address in _exporters_seen:
            return address
        if len(_exporters_seen) >= MAX_EXPORTERS:
            return OTHER_EXPORTER
        _exporters_seen.add(address)
        return address


PROTOCOLS = ("netflow_v5", "netflow_v9", "ipfix", "sflow", "unknown")


def protocol_label(protocol: str | None) -> str:
    return protocol if protocol in PROTOCOLS else "unknown"


# ---------------------------------------------------------------- receive (receive.py)

DATAGRAMS_RECEIVED = Counter(
    "flowsink_datagrams_received_total", "UDP datagrams read from the sockets", ["exporter"]
)
BYTES_RECEIVED = Counter(
    "flowsink_received_bytes_total", "UDP payload bytes read from the sockets", ["exporter"]
)
UDP_RECEIVE_DROPS = Gauge(
    "flowsink_udp_receive_drops",
    "datagrams the kernel dropped on the node's UDP sockets (/proc/net/udp{,6} drops column), since the sockets opened",
    ["port"],
    multiprocess_mode="mostrecent",
)
UDP_RECEIVE_QUEUE_BYTES = Gauge(
    "flowsink_udp_receive_queue_bytes",
    "bytes waiting in the kernel receive buffers of the node's UDP sockets (/proc/net/udp{,6} rx_queue)",
    ["port"],
    multiprocess_mode="mostrecent",
)
RECEIVE_BUFFER_BYTES = Gauge(
    "flowsink_udp_receive_buffer_bytes",
    "SO_RCVBUF the kernel granted (compare with receive.rcvbuf_bytes)",
    multiprocess_mode="min",
)

# ---------------------------------------------------------------- persistent queue (queue/)

QUEUE_WRITTEN_DATAGRAMS = Counter("flowsink_queue_written_datagrams_total", "datagrams appended to the queue")
QUEUE_WRITTEN_BYTES = Counter("flowsink_queue_written_bytes_total", "payload bytes appended to the queue")
QUEUE_READ_DATAGRAMS = Counter("flowsink_queue_read_datagrams_total", "datagrams read from the queue")
QUEUE_READ_BYTES = Counter("flowsink_queue_read_bytes_total", "payload bytes read from the queue")
QUEUE_ACKED_DATAGRAMS = Counter(
    "flowsink_queue_acked_datagrams_total", "datagrams acknowledged (every record indexed or dead-lettered)"
)
QUEUE_DROPPED = Counter(
    "flowsink_queue_dropped_total",
    "datagrams not accepted into the queue, by reason (full: max_bytes reached; disk_full: ENOSPC; error)",
    ["reason"],
)
QUEUE_CORRUPT_RECORDS = Counter(
    "flowsink_queue_corrupt_records_total",
    "queue records skipped by the reader (torn tail or checksum mismatch)",
    ["reason"],
)
QUEUE_DEPTH_DATAGRAMS = Gauge(
    "flowsink_queue_depth_datagrams",
    "datagrams in the queue not yet acknowledged",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH_BYTES = Gauge(
    "flowsink_queue_depth_bytes",
    "bytes on disk of the queue not yet acknowledged",
    multiprocess_mode="livesum",
)
QUEUE_DISK_BYTES = Gauge(
    "flowsink_queue_disk_bytes",
    "bytes the queue's segments take on disk (acknowledged ones until their segment is deleted)",
    multiprocess_mode="livesum",
)
QUEUE_CAPACITY_BYTES = Gauge(
    "flowsink_queue_capacity_bytes",
    "queue.max_bytes over every partition: disk_bytes reaching it means new datagrams are dropped (reason full)",
    multiprocess_mode="livesum",
)
QUEUE_OLDEST_AGE_SECONDS = Gauge(
    "flowsink_queue_oldest_age_seconds",
    "age of the oldest unacknowledged datagram (0 when the queue is empty)",
    multiprocess_mode="livemax",
)

# ---------------------------------------------------------------- decode (decode/, run by pipeline.py)

DATAGRAMS_DECODED = Counter(
    "flowsink_datagrams_decoded_total", "datagrams handed to the decoder", ["protocol"]
)
DECODE_ERRORS = Counter(
    "flowsink_decode_errors_total",
    "datagrams or records the decoder rejected, by reason",
    ["protocol", "reason"],
)
RECORDS_DECODED = Counter(
    "flowsink_records_decoded_total",
    "records decoded, by kind (flow, options, flow_sample, counter_sample, ...)",
    ["protocol", "kind"],
)
TEMPLATES = Gauge(
    "flowsink_templates", "NetFlow v9 / IPFIX templates known to the decoders", multiprocess_mode="livesum"
)
SEQUENCE_GAPS = Counter(
    "flowsink_sequence_gaps_total", "gaps in exporters' sequence numbers", ["exporter", "protocol"]
)
LOST_RECORDS = Counter(
    "flowsink_lost_records_total",
    "records estimated lost before they reached the node (from sequence numbers)",
    ["exporter", "protocol"],
)
PENDING_DATAGRAMS = Gauge(
    "flowsink_pending_datagrams",
    "data sets held waiting for their template",
    multiprocess_mode="livesum",
)
EXPIRED_RECORDS = Counter(
    "flowsink_expired_total",
    "data sets whose template never came within decode.pending_max_seconds (or beyond pending_max_bytes)",
)

# ---------------------------------------------------------------- file output (sinks/file.py)

FILE_DOCUMENTS_WRITTEN = Counter("flowsink_file_documents_written_total", "documents the file output wrote")
FILE_WRITTEN_BYTES = Counter("flowsink_file_written_bytes_total", "bytes the file output wrote")
FILE_ROTATIONS = Counter("flowsink_file_rotations_total", "files the file output rotated (file.max_bytes)")
FILE_WRITE_ERRORS = Counter(
    "flowsink_file_write_errors_total",
    "batches the file output could not write (disk_full, io_error); they stay queued and are offered again",
    ["reason"],
)

# ---------------------------------------------------------------- Elasticsearch output (sinks/elasticsearch/)

BULK_REQUEST_DURATION = Histogram(
    "flowsink_bulk_request_duration_seconds",
    "duration of one bulk request to Elasticsearch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
DOCUMENTS_INDEXED = Counter("flowsink_documents_indexed_total", "documents Elasticsearch stored")
DOCUMENTS_DUPLICATE = Counter(
    "flowsink_documents_duplicate_total",
    "documents already in Elasticsearch (create answered 409): replays skipped",
)
BULK_RETRIES = Counter(
    "flowsink_bulk_retries_total",
    "document re-sends after 429, 5xx or an unreachable cluster (retries never give up)",
)
BULK_REQUESTS = Counter(
    "flowsink_bulk_requests_total",
    "bulk requests sent, by result (ok, item_errors: some items failed, failed: no answer or 429/5xx)",
    ["result"],
)
DOCUMENTS_DEAD_LETTERED = Counter(
    "flowsink_documents_dead_lettered_total",
    "documents Elasticsearch rejected, written to the dead-letter file",
    ["reason"],
)

# ---------------------------------------------------------------- pipeline and node

PIPELINE_BATCH_DURATION = Histogram(
    "flowsink_pipeline_batch_duration_seconds",
    "read -> decode -> index -> ack of one batch of datagrams",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
ELASTICSEARCH_UP = Gauge(
    "flowsink_elasticsearch_up",
    "1 when the last request to Elasticsearch got an answer, else 0",
    multiprocess_mode="livemin",
)
PROCESS_RESTARTS = Counter(
    "flowsink_process_restarts_total", "child processes of the node restarted after they died", ["role"]
)
LOG_LINES_SUPPRESSED = Counter(
    "flowsink_log_lines_suppressed_total", "log lines dropped by the per-reason rate limit", ["reason"]
)
CONFIG_RELOADS = Counter("flowsink_config_reloads_total", "configuration reloads (SIGHUP)", ["result"])

# ---------------------------------------------------------------- enrichment (enrich/)

ENRICH_CACHE_LOOKUPS = Counter(
    "flowsink_enrich_address_cache_lookups_total",
    "per-address enrichment lookups of the pipeline workers' address caches, by result (hit, miss: the "
    "internal networks and GeoIP databases asked)",
    ["result"],
)
ENRICH_CACHE_EVICTIONS = Counter(
    "flowsink_enrich_address_cache_evictions_total",
    "addresses the full address caches replaced (enrich.address_cache_size too small for the traffic's mix)",
)
ENRICH_GEOIP_ERRORS = Counter(
    "flowsink_enrich_geoip_errors_total",
    "GeoIP databases left out or lookups that failed, by reason (missing, unreadable, corrupt, unknown_kind, "
    "wrong_family, lookup_error, no_extension); the flows are indexed without those fields",
    ["reason"],
)
ENRICH_GEOIP_UPDATES = Counter(
    "flowsink_enrich_geoip_updates_total",
    "new versions of the GeoIP databases' files taken by the node (ok) or refused, the last good one kept (error)",
    ["result"],
)
ENRICH_GEOIP_BUILD_TIMESTAMP = Gauge(
    "flowsink_enrich_geoip_build_timestamp_seconds",
    "when the oldest GeoIP database of each kind in use was built (its metadata): alert when it gets old",
    ["kind"],
    multiprocess_mode="min",
)
ENRICH_RELOADS = Counter(
    "flowsink_enrich_reloads_total",
    "new versions of the enrichment sources a pipeline worker took (source: geoip, snmp)",
    ["source"],
)
ENRICH_SNMP_POLLS = Counter(
    "flowsink_enrich_snmp_polls_total",
    "SNMP polls of the exporters (enrich.snmp_targets), by result (ok, timeout, auth, error); a failed poll "
    "keeps the names found before",
    ["exporter", "result"],
)

# ---------------------------------------------------------------- flows API (api/)

API_ROWS_ACCEPTED = Counter("flowsink_api_rows_accepted_total", "rows of POST /flows durable in the queue")
API_REQUESTS_REJECTED = Counter(
    "flowsink_api_requests_rejected_total",
    "flows API requests refused, by reason (invalid_rows, malformed_json, body_too_large, unauthorized, ...)",
    ["reason"],
)
API_REQUEST_DURATION = Histogram(
    "flowsink_api_request_duration_seconds",
    "flows API request latency, by method and status class (2xx, 4xx, 5xx)",
    ["method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
API_BATCHES_APPLIED = Counter(
    "flowsink_api_batches_applied_total",
    "accepted batches written to Elasticsearch (outcome: applied, duplicate = retry of an applied batch)",
    ["outcome"],
)
API_APPLY_ERRORS = Counter(
    "flowsink_api_apply_errors_total", "failed attempts to apply a durable batch (retried until it succeeds)"
)
API_PENDING_BATCHES = Gauge(
    "flowsink_api_pending_batches",
    "durable batches not yet applied to Elasticsearch",
    multiprocess_mode="livesum",
)
API_DELTAS_FOLDED = Counter(
    "flowsink_api_deltas_folded_total", "delta documents folded into per-key totals by the compactor"
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


# ---------------------------------------------------------------- series known in advance

# Label values known before anything happens. Their series are created at 0 when the node starts: Prometheus's
# increase() needs a sample before the first event, so a series born at 500 drops would never fire the
# FlowsinkDatagramsDropped alert for that first burst, and dashboards would say "no data" where the truth is 0.
_KNOWN_SERIES: tuple[tuple[Counter, tuple[dict[str, str], ...]], ...] = (
    (QUEUE_DROPPED, tuple({"reason": r} for r in ("full", "disk_full", "io_error"))),
    (QUEUE_CORRUPT_RECORDS, tuple({"reason": r} for r in ("torn", "corrupt"))),
    (DATAGRAMS_DECODED, tuple({"protocol": p} for p in PROTOCOLS)),
    (
        DECODE_ERRORS,
        (
            *({"protocol": p, "reason": "truncated"} for p in PROTOCOLS[:4]),
            {"protocol": "unknown", "reason": "unknown_version"},
            {"protocol": "netflow_v9", "reason": "template_missing"},
            {"protocol": "ipfix", "reason": "template_missing"},
        ),
    ),
    (
        RECORDS_DECODED,
        tuple(
            {"protocol": p, "kind": k}
            for p, k in (
                ("netflow_v5", "flow"),
                ("netflow_v9", "flow"),
                ("netflow_v9", "options"),
                ("ipfix", "flow"),
                ("ipfix", "options"),
                ("sflow", "flow_sample"),
                ("sflow", "counter_sample"),
            )
        ),
    ),
    (BULK_REQUESTS, tuple({"result": r} for r in ("ok", "item_errors", "failed"))),
    (FILE_WRITE_ERRORS, tuple({"reason": r} for r in ("disk_full", "io_error"))),
    (
        DOCUMENTS_DEAD_LETTERED,
        tuple(
            {"reason": r}
            for r in (
                "document_parsing_exception",
                "mapper_parsing_exception",
                "illegal_argument_exception",
                "request_rejected",
                "serialization_error",
            )
        ),
    ),
    (PROCESS_RESTARTS, tuple({"role": r} for r in ("receiver", "pipeline", "enrich"))),
    (ENRICH_CACHE_LOOKUPS, tuple({"result": r} for r in ("hit", "miss"))),
    (
        ENRICH_GEOIP_ERRORS,
        tuple(
            {"reason": r}
            for r in (
                "missing",
                "unreadable",
                "corrupt",
                "unknown_kind",
                "wrong_family",
                "lookup_error",
                "no_extension",
            )
        ),
    ),
    (ENRICH_GEOIP_UPDATES, tuple({"result": r} for r in ("ok", "error"))),
    (CONFIG_RELOADS, tuple({"result": r} for r in ("ok", "error"))),
    (
        API_REQUESTS_REJECTED,
        tuple(
            {"reason": r}
            for r in (
                "invalid_rows",
                "malformed_json",
                "body_too_large",
                "unauthorized",
                "too_many_rows",
                "queue_full",
                "elasticsearch_unavailable",
            )
        ),
    ),
)


def create_known_series() -> None:
    """Create every series of ``_KNOWN_SERIES`` at 0 (idempotent); the node calls it once at start."""
    for counter, label_sets in _KNOWN_SERIES:
        for labels in label_sets:
            counter.labels(**labels)


_exporter_series_made: set[tuple[str, str]] = set()


def create_exporter_series(exporter: str, protocol: str) -> None:
    """Sequence-gap and lost-record series of an exporter (its address) at 0, the first time a process sees it;
    called per datagram, so a repeat costs one set lookup."""
    key = (exporter, protocol)
    if key in _exporter_series_made:
        return
    if len(_exporter_series_made) > 100_000:  # spoofed sources must not grow it for ever
        _exporter_series_made.clear()
    _exporter_series_made.add(key)
    label = exporter_label(exporter)
    SEQUENCE_GAPS.labels(exporter=label, protocol=protocol)
    LOST_RECORDS.labels(exporter=label, protocol=protocol)
