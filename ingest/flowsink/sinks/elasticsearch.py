"""Bulk sink: ECS documents into Elasticsearch, never losing one and never blocking on a bad one.

``ElasticsearchSink.index(docs)`` blocks until every document is indexed, found already indexed (``create``
answered 409: a replay after a crash) or dead-lettered (Elasticsearch rejected it: mapping or parse error).
Whatever else goes wrong is retried with capped exponential backoff and jitter, forever: 429 and 503 items,
whole requests that fail with 429/5xx or cannot reach the cluster. The caller blocks meanwhile, and the
persistent queue behind it keeps buffering. Other 5xx items are retried ``max_item_attempts`` times (one
poisonous document must not hold a pipeline for ever) and then dead-lettered with the reason.

Bodies are NDJSON serialised with orjson and sent with ``client.bulk``: bench/bench_sink.py measures this
against elasticsearch-py's ``streaming_bulk``/``parallel_bulk`` (which re-serialise every action through the
client's serializer), and the response is trimmed with ``filter_path`` to the per-item status and error.

Each document names its target with ``_index`` and may carry a deterministic ``_id``; both go to the action
line, never into the stored source. ``index_encoded(lines)`` takes documents already written as bulk lines
(``flowsink.bulk``; the decoders write them): a request whose items all succeed costs no per-document Python
work at all; only items that fail are split out of their lines to be retried or dead-lettered. Thread-safe:
several pipeline threads may call ``index`` at once; the chunks of one call are sent ``concurrency`` at a time.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from flowsink.bulk import split_encoded
from flowsink.sinks.templates import short_reason

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# Trims each response item to what the retry logic reads (the full item is ~10x larger to parse).
_FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.reason"
_INDEXED, _DUPLICATE, _DEAD = 1, 2, 3

T = TypeVar("T")
R = TypeVar("R")

# (seconds, documents, bytes, result) of each bulk request: result is "ok", "item_errors" or "failed"
RequestObserver = Callable[[float, int, int, str], None]


class BulkBodySerializer(NdjsonSerializer):
    """Sends a ready NDJSON body as it is.

    The stock serializer copies a bytes body into a bytearray and that into new bytes: two copies of every
    request (10 MiB each), 13% of a pipeline worker's time in bench/bench_end_to_end.py's profile.
    """

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


# what the sink's clients are built with: orjson for JSON, bulk bodies passed through
CLIENT_SERIALIZERS = {
    "serializers": {
        OrjsonSerializer.mimetype: OrjsonSerializer(),
        NdjsonSerializer.mimetype: BulkBodySerializer(),
    }
}


class SinkClosed(Exception):
    """``close()`` was called while ``index`` was still retrying; the caller must not ack its batch."""


@dataclass
class SinkSettings:
    """Batching, retry and dead-letter settings (names follow ``flowsink.config.ElasticsearchConfig``)."""

    op_type: str = "create"
    max_docs: int = 5000
    max_bytes: int = 10 * MIB
    concurrency: int = 2
    request_timeout_s: float = 60.0
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 30.0
    max_item_attempts: int = 10
    dead_letter_path: str | Path | None = None
    dead_letter_index: str | None = None
    refresh: str | None = None

    def __post_init__(self) -> None:
        if self.op_type not in ("create", "index"):
            raise ValueError(f"op_type must be 'create' or 'index', not {self.op_type!r}")
        if self.max_docs < 1 or self.max_bytes < 1024 or self.concurrency < 1:
            raise ValueError("max_docs and concurrency must be >= 1, max_bytes >= 1024")


@dataclass
class BulkOutcome:
    """What became of a batch; ``retries`` counts document re-sends (item retries and whole-request retries)."""

    indexed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)

    def add(self, other: BulkOutcome) -> None:
        self.indexed += other.indexed
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.retries += other.retries
        self.dead_letter_reasons.update(other.dead_letter_reasons)

    @property
    def total(self) -> int:
        return self.indexed + self.duplicates + self.dead_lettered


class _Item:
    """One prepared document: its action and source lines, and what happened to it."""

    __slots__ = (
        "action",
        "attempts",
        "doc_id",
        "error_type",
        "http_status",
        "index",
        "reason",
        "size",
        "source",
        "status",
    )

    def __init__(self, index: str, doc_id: str | None, action: bytes, source: bytes) -> None:
        self.index, self.doc_id, self.action, self.source = index, doc_id, action, source
        self.size = len(action) + len(source) + 2
        self.attempts = 0
        self.status = 0
        self.http_status = 0
        self.error_type = ""
        self.reason = ""

    def reject(self, http_status: int, error_type: str, reason: str) -> None:
        """Mark as dead-lettered: ``error_type`` is a short bounded label (a metric label), ``reason`` the detail."""
        self.status, self.http_status, self.error_type, self.reason = _DEAD, http_status, error_type, reason


class _Throttle:
    """At most one log line per key per interval (an outage must not turn into a log line per request)."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s, self._last, self._lock = interval_s, {}, threading.Lock()

    def due(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.interval_s:
                return False
            self._last[key] = now
            return True


class DeadLetters:
    """Where rejected documents go: a JSON-lines file and/or a daily dead-letter index (file as fallback)."""

    def __init__(self, path: str | Path | None, index: str | None, client: Elasticsearch) -> None:
        self.path = Path(path) if path else None
        self.index, self._client = index, client
        self._lock = threading.Lock()
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path and not index:
            log.warning("no dead-letter file or index configured: rejected documents are only logged")

    def write(self, records: list[dict[str, Any]]) -> None:
        indexed = bool(self.index) and self._index_records(records)
        if self.path:
            lines = b"".join(orjson.dumps(r, default=repr) + b"\n" for r in records)
            with self._lock, open(self.path, "ab") as out:
                out.write(lines)
                out.flush()
                os.fsync(
                    out.fileno()
                )  # rare, and the queue entry is acked right after: make it durable first
        elif not indexed:
            for record in records:
                log.error(
                    "rejected document lost (no dead-letter place): %s",
                    orjson.dumps(record, default=repr)[:2000],
                )

    def _index_records(self, records: list[dict[str, Any]]) -> bool:
        day = datetime.now(UTC).strftime("%Y.%m.%d")
        operations: list[Any] = []
        for record in records:
            operations.append({"index": {"_index": f"{self.index}-{day}"}})
            operations.append(
                {
                    "@timestamp": record["@timestamp"],
                    "error": {"type": record["error"]["type"], "message": record["error"]["reason"]},
                    "http": {"response": {"status_code": record["status"]}},
                    "flowsink": {"index": record["index"], "id": record["id"], "op_type": record["op_type"]},
                    "event": {"original": orjson.dumps(record["document"], default=repr).decode()},
                }
            )
        try:
            response = self._client.bulk(operations=operations, filter_path="errors")
            if response.get("errors"):
                raise RuntimeError("dead-letter index rejected some records")
            return True
        except (ApiError, TransportError, RuntimeError) as exc:
            log.error(
                "dead-letter index %s unavailable (%s); using the dead-letter file",
                self.index,
                short_reason(exc),
            )
            return False


class ElasticsearchSink:
    """Bulk indexing with per-item retry, dead letters and deterministic-id dedup (docs/design.md, seam 3)."""

    def __init__(
        self,
        hosts: str | list[str] | None = None,
        *,
        client: Elasticsearch | None = None,
        observer: RequestObserver | None = None,
        settings: SinkSettings | None = None,
        **overrides: Any,
    ) -> None:
        known = {f.name for f in fields(SinkSettings)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown sink settings: {', '.join(sorted(unknown))}")
        base = settings or SinkSettings()
        self.settings = SinkSettings(**{**{k: getattr(base, k) for k in known}, **overrides})
        if client is None:
            if hosts is None:
                raise ValueError("give hosts or client")
            client = Elasticsearch(hosts, **CLIENT_SERIALIZERS)
            self._owns_client = True
        else:
            self._owns_client = False
        self._client = client.options(request_timeout=self.settings.request_timeout_s, max_retries=0)
        self._observer = observer
        self._dead_letters = DeadLetters(
            self.settings.dead_letter_path, self.settings.dead_letter_index, client
        )
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="bulk")
        self._closing = threading.Event()
        self._throttle = _Throttle()
        self._totals = BulkOutcome()
        self._totals_lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------------------

    def index(self, docs: Iterable[dict[str, Any]]) -> BulkOutcome:
        """Index ``docs`` (each with ``_index`` and optionally ``_id``); block until each has a final outcome."""
        if self._closing.is_set():
            raise SinkClosed("sink is closed")
        items, rejected = self._prepare(docs)
        if rejected:
            self._dead_letter(rejected)
        self._each_chunk(self._send, self._chunks(items, lambda item: item.size))
        return self._counted(self._outcome(items, rejected))

    def index_encoded(self, lines: Sequence[bytes]) -> BulkOutcome:
        """Index documents given as bulk lines (``action\nsource\n`` each, ``flowsink.bulk.encode_document``);
        block until each has a final outcome, as ``index`` does."""
        if self._closing.is_set():
            raise SinkClosed("sink is closed")
        outcome = BulkOutcome()
        for part in self._each_chunk(self._send_encoded, self._chunks(lines, len)):
            outcome.add(part)
        return self._counted(outcome)

    def totals(self) -> BulkOutcome:
        """Everything this sink did since it was created (a copy)."""
        with self._totals_lock:
            copy = BulkOutcome()
            copy.add(self._totals)
            return copy

    def close(self) -> None:
        """Stop: calls still retrying raise ``SinkClosed`` (their documents stay un-acked in the queue)."""
        self._closing.set()
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> ElasticsearchSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- preparing ----------------------------------------------------------------------------------------

    def _prepare(self, docs: Iterable[dict[str, Any]]) -> tuple[list[_Item], list[_Item]]:
        op, items, rejected = self.settings.op_type, [], []
        for doc in docs:
            source = dict(doc)
            index = source.pop("_index", None)
            doc_id = source.pop("_id", None)
            meta = {"_index": index, "_id": doc_id} if doc_id is not None else {"_index": index}
            try:
                item = _Item(index, doc_id, orjson.dumps({op: meta}), orjson.dumps(source))
            except TypeError as exc:
                # Only a decoder bug makes an unserialisable document; keep it (repr) rather than crash.
                item = _Item(str(index), doc_id, b"", orjson.dumps(source, default=repr))
                item.reject(0, "serialization_error", str(exc))
                rejected.append(item)
                continue
            if not isinstance(index, str) or not index:
                item.reject(0, "missing_index", "the document has no _index")
                rejected.append(item)
                continue
            items.append(item)
        return items, rejected

    def _chunks(self, entries: Sequence[T], size_of: Callable[[T], int]) -> list[list[T]]:
        """Requests of at most ``max_docs`` entries and ``max_bytes`` bytes (one entry may exceed it alone)."""
        max_docs, max_bytes = self.settings.max_docs, self.settings.max_bytes
        chunks: list[list[T]] = []
        chunk: list[T] = []
        size = 0
        for entry in entries:
            entry_size = size_of(entry)
            if chunk and (len(chunk) >= max_docs or size + entry_size > max_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(entry)
            size += entry_size
        if chunk:
            chunks.append(chunk)
        return chunks

    def _each_chunk(self, send: Callable[[list[T]], R], chunks: list[list[T]]) -> list[R]:
        """``send`` each chunk, ``concurrency`` at a time when there are several; their results in order."""
        if len(chunks) > 1 and self.settings.concurrency > 1:
            return [future.result() for future in [self._pool.submit(send, chunk) for chunk in chunks]]
        return [send(chunk) for chunk in chunks]

    def _counted(self, outcome: BulkOutcome) -> BulkOutcome:
        with self._totals_lock:
            self._totals.add(outcome)
        return outcome

    @staticmethod
    def _items_from_encoded(lines: Sequence[bytes]) -> list[_Item]:
        items = []
        for line in lines:
            meta, source = split_encoded(line)
            items.append(
                _Item(str(meta.get("_index", "")), meta.get("_id"), line[: line.index(b"\n")], source)
            )
        return items

    # -- sending ------------------------------------------------------------------------------------------

    def _send_encoded(self, lines: list[bytes]) -> BulkOutcome:
        """One request for ``lines``; when anything in it fails, the per-item path (``_send``) takes over."""
        body = b"".join(lines)
        started = time.monotonic()
        try:
            response = self._client.bulk(body=body, filter_path=_FILTER_PATH, refresh=self.settings.refresh)
            results = response["items"]
            if len(results) != len(lines):
                raise ValueError(f"{len(results)} results for {len(lines)} documents")
        except (ApiError, TransportError, ValueError) as exc:
            self._observe(started, lines, len(body), "failed")
            items = self._items_from_encoded(lines)
            for item in items:
                item.attempts = 1
            if isinstance(exc, ApiError) and exc.meta.status in (400, 413):
                self._split_or_reject(items, exc)
            else:
                self._wait(
                    0,
                    "unreachable" if not isinstance(exc, ApiError) else "request",
                    f"bulk request failed: {short_reason(exc)}",
                    len(items),
                )
                self._send(items, first_round=1)
            return self._outcome(items, [])
        if not response.get("errors"):
            self._observe(started, lines, len(body), "ok")
            return BulkOutcome(indexed=len(lines))
        self._observe(started, lines, len(body), "item_errors")
        items = self._items_from_encoded(lines)
        for item in items:
            item.attempts = 1
        pending = self._classify(items, results)
        if pending:
            self._wait(0, "item_retry", "retrying items refused with 429/5xx", len(pending))
            self._send(pending, first_round=1)
        return self._outcome(items, [])

    def _send(self, items: Sequence[_Item], first_round: int = 0) -> None:
        """Send ``items`` until every one has a final status (indexed, duplicate or dead)."""
        pending = list(items)
        round_ = first_round
        while pending:
            body = b"".join(b"%b\n%b\n" % (item.action, item.source) for item in pending)
            for item in pending:
                item.attempts += 1
            started = time.monotonic()
            try:
                response = self._client.bulk(
                    body=body, filter_path=_FILTER_PATH, refresh=self.settings.refresh
                )
                results = response["items"]
                if len(results) != len(pending):
                    raise ValueError(f"{len(results)} results for {len(pending)} documents")
            except ApiError as exc:
                self._observe(started, pending, len(body), "failed")
                if exc.meta.status in (400, 413):
                    self._split_or_reject(pending, exc)
                    return
                self._wait(round_, "request", f"bulk request failed: {short_reason(exc)}", len(pending))
                round_ += 1
                continue
            except (TransportError, ValueError) as exc:
                self._observe(started, pending, len(body), "failed")
                self._wait(
                    round_, "unreachable", f"Elasticsearch unreachable: {short_reason(exc)}", len(pending)
                )
                round_ += 1
                continue
            if round_ and self._throttle.due("recovered"):
                log.info("Elasticsearch accepts bulk requests again")
            self._observe(started, pending, len(body), "item_errors" if response.get("errors") else "ok")
            pending = self._classify(pending, results)
            if pending:
                self._wait(round_, "item_retry", "retrying items refused with 429/5xx", len(pending))
                round_ += 1

    def _classify(self, pending: list[_Item], results: list[dict[str, Any]]) -> list[_Item]:
        """Give each item its final status from the bulk response; return the ones to send again."""
        again, dead = [], []
        create = self.settings.op_type == "create"
        for item, entry in zip(pending, results, strict=True):
            result = next(iter(entry.values()))
            status = result["status"]
            if status < 300:
                item.status = _INDEXED
            elif status == 409 and create:
                item.status = _DUPLICATE
            elif status in (429, 503) or (status >= 500 and item.attempts < self.settings.max_item_attempts):
                again.append(item)
            else:
                error = result.get("error") or {}
                reason = str(error.get("reason", ""))
                caused_by = (error.get("caused_by") or {}).get("reason")
                if caused_by:
                    reason += f" (caused by: {caused_by})"
                item.reject(status, str(error.get("type", f"http_{status}")), reason)
                dead.append(item)
        if dead:
            self._dead_letter(dead)
        return again

    def _split_or_reject(self, pending: list[_Item], exc: ApiError) -> None:
        """A whole request refused as malformed or too large: halve it until the culprit stands alone."""
        if len(pending) == 1:
            pending[0].reject(exc.meta.status, "request_rejected", short_reason(exc))
            self._dead_letter(pending)
            return
        half = len(pending) // 2
        self._send(pending[:half])
        self._send(pending[half:])

    def _wait(self, round_: int, key: str, message: str, waiting: int) -> None:
        delay = min(self.settings.max_backoff_s, self.settings.initial_backoff_s * 2**round_)
        delay *= random.uniform(0.5, 1.0)  # jitter: nodes that failed together must not retry together
        if self._throttle.due(key):
            log.warning(
                "%s; %d documents waiting, retrying in %.1f s (retries never give up)",
                message,
                waiting,
                delay,
            )
        if self._closing.wait(delay):
            raise SinkClosed("sink closed while retrying")

    def _observe(self, started: float, items: Sequence[Any], nbytes: int, result: str) -> None:
        if self._observer is not None:
            self._observer(time.monotonic() - started, len(items), nbytes, result)

    # -- outcome ------------------------------------------------------------------------------------------

    def _dead_letter(self, items: list[_Item]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        records = [
            {
                "@timestamp": now,
                "index": item.index,
                "id": item.doc_id,
                "op_type": self.settings.op_type,
                "status": item.http_status,
                "error": {"type": item.error_type, "reason": item.reason},
                "document": orjson.loads(item.source),
            }
            for item in items
        ]
        first = items[0]
        if self._throttle.due(f"dead:{first.error_type}"):
            log.warning(
                "%d document(s) dead-lettered: %s %s: %s",
                len(items),
                first.http_status or "",
                first.error_type,
                first.reason[:500],
            )
        self._dead_letters.write(records)

    @staticmethod
    def _outcome(items: list[_Item], rejected: list[_Item]) -> BulkOutcome:
        outcome = BulkOutcome()
        for item in items:
            outcome.retries += item.attempts - 1
            if item.status == _INDEXED:
                outcome.indexed += 1
            elif item.status == _DUPLICATE:
                outcome.duplicates += 1
        for item in [*items, *rejected]:
            if item.status == _DEAD:
                outcome.dead_lettered += 1
                outcome.dead_letter_reasons[item.error_type] += 1
        return outcome
