"""The Elasticsearch output: bulk lines into Elasticsearch, never losing one and never blocking on a bad one.

``ElasticsearchSink.write(lines)`` (the ``Sink`` seam, ``flowsink.sinks.base``) returns once every document is
indexed, found already indexed (``create`` answered 409: a replay after a crash) or dead-lettered
(Elasticsearch rejected it: mapping or parse error), or, after ``give_back_after_s`` of failing requests,
hands the documents not placed yet back to the worker (``retry_later``), which keeps its batch queued and
offers them again: the worker's timers and configuration reloads (a new API key) run meanwhile. Whatever
goes wrong is retried with capped exponential backoff and jitter, the backoff carried over between offers:
429 and 503 items, whole requests that fail with 429/5xx or cannot reach the cluster. Other 5xx items are
retried ``retry_max_item_attempts`` times (one poisonous document must not hold a pipeline for ever) and then
dead-lettered with the reason.

A request whose items all succeed costs no per-document Python work at all: the body is the decoders' bulk
lines joined; only items that fail are split out of their lines to be retried or dead-lettered, and the
response is trimmed with ``filter_path`` to the per-item status and error. bench/bench_sink.py measures this
against elasticsearch-py's ``streaming_bulk``/``parallel_bulk``. ``index(docs)`` takes dicts (each with
``_index`` and optionally ``_id``) for callers that have no bulk lines. Thread-safe; the chunks of one call
are sent ``bulk_concurrency`` at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError

from flowsink.bulk import split_encoded
from flowsink.sinks.base import SinkClosed, SinkOutcome
from flowsink.sinks.elasticsearch.client import CLIENT_SERIALIZERS, short_reason
from flowsink.sinks.elasticsearch.dead_letters import DeadLetters
from flowsink.sinks.elasticsearch.settings import ElasticsearchSettings

log = logging.getLogger(__name__)

# Trims each response item to what the retry logic reads (the full item is ~10x larger to parse).
_FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason,items.*.error.caused_by.reason"
_INDEXED, _DUPLICATE, _DEAD, _LATER = 1, 2, 3, 4

T = TypeVar("T")
R = TypeVar("R")

# (seconds, documents, bytes, result) of each bulk request: result is "ok", "item_errors" or "failed"
RequestObserver = Callable[[float, int, int, str], None]


class _GiveBack(Exception):
    """The batch's time is up: what is still pending goes back to the worker."""


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


class ElasticsearchSink:
    """Bulk indexing with per-item retry, dead letters and deterministic-id dedup (docs/design.md, the sink seam).

    ``settings`` (default ``ElasticsearchSettings()``) with keyword ``overrides`` of its fields; ``client``
    replaces the one built from ``settings.url`` (tests script one); ``observer`` sees every request and
    ``on_outcome`` every call's outcome (``flowsink.sinks.elasticsearch.output`` turns both into metrics).
    """

    name = "elasticsearch"

    def __init__(
        self,
        settings: ElasticsearchSettings | None = None,
        *,
        client: Elasticsearch | None = None,
        observer: RequestObserver | None = None,
        on_outcome: Callable[[SinkOutcome], None] | None = None,
        **overrides: Any,
    ) -> None:
        known = {f.name for f in dataclasses.fields(ElasticsearchSettings)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown sink settings: {', '.join(sorted(unknown))}")
        self.settings = dataclasses.replace(settings or ElasticsearchSettings(), **overrides)
        self.settings.validate()
        if client is None:
            client = Elasticsearch(self.settings.url, **self.settings.client_kwargs(**CLIENT_SERIALIZERS))
            self._owns_client = True
        else:
            self._owns_client = False
        self._client = client.options(request_timeout=self.settings.request_timeout_s, max_retries=0)
        self._observer = observer
        self._on_outcome = on_outcome
        self._dead_letters = DeadLetters(
            self.settings.dead_letter_path or None, self.settings.dead_letter_index or None, client
        )
        self._pool = ThreadPoolExecutor(self.settings.bulk_concurrency, thread_name_prefix="bulk")
        self._closing = threading.Event()
        self._throttle = _Throttle()
        self._totals = SinkOutcome()
        self._totals_lock = threading.Lock()
        # backoff rounds reached when a batch was last handed back: an outage's waits keep growing across offers
        self._carried_round = 0

    # -- the seam -----------------------------------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> SinkOutcome:
        """Index documents given as bulk lines (``action\nsource\n`` each, ``flowsink.bulk``); return once each
        has a final outcome, or hand the rest back in ``retry_later`` after ``give_back_after_s`` of failures."""
        if self._closing.is_set():
            raise SinkClosed("sink is closed")
        deadline = time.monotonic() + self.settings.give_back_after_s
        outcome = SinkOutcome()
        for part in self._each_chunk(
            lambda chunk: self._send_encoded(chunk, deadline), self._chunks(lines, len)
        ):
            outcome.add(part)
        return self._counted(outcome)

    def reload(self, sections: Mapping[str, Any]) -> list[str]:
        """Bulk sizes change live: the chunks of the next ``write`` use them."""
        settings = sections[self.name]
        applied = []
        for name in ("bulk_max_docs", "bulk_max_bytes"):
            if getattr(self.settings, name) != getattr(settings, name):
                setattr(self.settings, name, getattr(settings, name))
                applied.append(f"elasticsearch.{name}")
        return applied

    def close(self) -> None:
        """Stop: calls still retrying raise ``SinkClosed`` (their documents stay un-acked in the queue)."""
        self._closing.set()
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

    # -- beside the seam ----------------------------------------------------------------------------------

    def index(self, docs: Iterable[dict[str, Any]]) -> SinkOutcome:
        """Index ``docs`` (each with ``_index`` and optionally ``_id``); block until each has a final outcome
        (never hands anything back: for callers with no queue behind them)."""
        if self._closing.is_set():
            raise SinkClosed("sink is closed")
        items, rejected = self._prepare(docs)
        if rejected:
            self._dead_letter(rejected)
        self._each_chunk(lambda chunk: self._send(chunk, None), self._chunks(items, lambda item: item.size))
        return self._counted(self._outcome(items, rejected))

    def totals(self) -> SinkOutcome:
        """Everything this sink did since it was created (a copy, without the lines handed back)."""
        with self._totals_lock:
            copy = SinkOutcome()
            copy.add(self._totals)
            return copy

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
        """Requests of at most ``bulk_max_docs`` entries and ``bulk_max_bytes`` bytes (one entry may exceed it)."""
        max_docs, max_bytes = self.settings.bulk_max_docs, self.settings.bulk_max_bytes
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
        """``send`` each chunk, ``bulk_concurrency`` at a time when there are several; their results in order."""
        if len(chunks) > 1 and self.settings.bulk_concurrency > 1:
            return [future.result() for future in [self._pool.submit(send, chunk) for chunk in chunks]]
        return [send(chunk) for chunk in chunks]

    def _counted(self, outcome: SinkOutcome) -> SinkOutcome:
        with self._totals_lock:
            self._totals.add(dataclasses.replace(outcome, retry_later=[]))
        if self._on_outcome is not None:
            self._on_outcome(outcome)
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

    def _send_encoded(self, lines: list[bytes], deadline: float | None) -> SinkOutcome:
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
                self._split_or_reject(items, exc, deadline)
            else:
                kind = "unreachable" if not isinstance(exc, ApiError) else "request"
                self._send(items, deadline, failed=(kind, f"bulk request failed: {short_reason(exc)}"))
            return self._outcome(items, [])
        if not response.get("errors"):
            self._recovered()
            self._observe(started, lines, len(body), "ok")
            return SinkOutcome(written=len(lines))
        self._observe(started, lines, len(body), "item_errors")
        items = self._items_from_encoded(lines)
        for item in items:
            item.attempts = 1
        pending = self._classify(items, results)
        if pending:
            self._send(pending, deadline, failed=("item_retry", "retrying items refused with 429/5xx"))
        return self._outcome(items, [])

    def _send(
        self, items: Sequence[_Item], deadline: float | None, failed: tuple[str, str] | None = None
    ) -> None:
        """Send ``items`` until every one has a final status (indexed, duplicate or dead), or until ``deadline``
        (None: no deadline), when the ones still pending are marked to be handed back.

        ``failed``: the items were just sent and failed for this (throttle key, message): wait first.
        """
        pending = list(items)
        round_ = self._carried_round
        try:
            if failed is not None:
                self._wait(round_, failed[0], failed[1], len(pending), deadline)
                round_ += 1
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
                        self._split_or_reject(pending, exc, deadline)
                        return
                    self._wait(
                        round_, "request", f"bulk request failed: {short_reason(exc)}", len(pending), deadline
                    )
                    round_ += 1
                    continue
                except (TransportError, ValueError) as exc:
                    self._observe(started, pending, len(body), "failed")
                    self._wait(
                        round_,
                        "unreachable",
                        f"Elasticsearch unreachable: {short_reason(exc)}",
                        len(pending),
                        deadline,
                    )
                    round_ += 1
                    continue
                self._recovered(round_)
                self._observe(started, pending, len(body), "item_errors" if response.get("errors") else "ok")
                pending = self._classify(pending, results)
                if pending:
                    self._wait(
                        round_, "item_retry", "retrying items refused with 429/5xx", len(pending), deadline
                    )
                    round_ += 1
        except _GiveBack:
            self._carried_round = max(self._carried_round, round_)
            for item in pending:
                item.status = _LATER

    def _recovered(self, round_: int = 0) -> None:
        if self._carried_round or round_:
            self._carried_round = 0
            if self._throttle.due("recovered"):
                log.info("Elasticsearch accepts bulk requests again")

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
            elif status in (429, 503) or (
                status >= 500 and item.attempts < self.settings.retry_max_item_attempts
            ):
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

    def _split_or_reject(self, pending: list[_Item], exc: ApiError, deadline: float | None) -> None:
        """A whole request refused as malformed or too large: halve it until the culprit stands alone."""
        if len(pending) == 1:
            pending[0].reject(exc.meta.status, "request_rejected", short_reason(exc))
            self._dead_letter(pending)
            return
        half = len(pending) // 2
        self._send(pending[:half], deadline)
        self._send(pending[half:], deadline)

    def _wait(self, round_: int, key: str, message: str, waiting: int, deadline: float | None) -> None:
        delay = min(self.settings.retry_max_backoff_s, self.settings.retry_initial_backoff_s * 2**round_)
        delay *= random.uniform(0.5, 1.0)  # jitter: nodes that failed together must not retry together
        if deadline is not None and time.monotonic() + delay > deadline:
            if self._throttle.due(key):
                log.warning("%s; %d documents handed back to be offered again", message, waiting)
            raise _GiveBack
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
    def _outcome(items: list[_Item], rejected: list[_Item]) -> SinkOutcome:
        outcome = SinkOutcome()
        for item in items:
            outcome.retries += item.attempts - 1
            if item.status == _INDEXED:
                outcome.written += 1
            elif item.status == _DUPLICATE:
                outcome.already_present += 1
            elif item.status == _LATER:
                outcome.retry_later.append(b"%b\n%b\n" % (item.action, item.source))
        for item in [*items, *rejected]:
            if item.status == _DEAD:
                outcome.dead_lettered += 1
                outcome.dead_letter_reasons[item.error_type] += 1
        return outcome
