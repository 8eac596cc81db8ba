"""The flows API service: request handling, the write-ahead queue, the applier and the compactor.

POST path: authenticate -> read the body (size-limited, gzip-aware) -> validate and aggregate per key ->
rate limit -> append to the persistent queue and fsync -> apply to Elasticsearch (refreshed: read-your-writes) -> 202.
The queue is the write-ahead log: an entry is acknowledged once its batch is applied; entries left by a crash
are applied again at start-up (idempotently, see store.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from flowsink import metrics
from flowsink.api.ratelimit import RateLimiter
from flowsink.api.settings import ApiSettings
from flowsink.api.store import (
    AggregateStore,
    PendingBatch,
    decode_cursor,
    doc_id,
    encode_cursor,
    packed_int,
)
from flowsink.api.validate import Batch, RequestError, decompress, parse_hour, parse_limit, parse_rows
from flowsink.log import RateLimitedLog
from flowsink.queue import PersistentQueue, QueueFull

log = logging.getLogger(__name__)
limited_log = RateLimitedLog(log)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
JSON = "application/json"
MAX_PAGE = 100_000
QUEUE_SOURCE = "api"
APPLIERS = 4  # group applications in flight at once: while some wait for a refresh, others gather batches
MAX_GROUP = 64  # batches per group application


def dumps(value: Any) -> bytes:
    """orjson, except for sums beyond 64 bits (orjson refuses them; the standard library does not)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type=JSON, headers=headers)


def error_response(error: RequestError) -> web.Response:
    metrics.API_REQUESTS_REJECTED.labels(reason=error.reason).inc()
    return json_response(error.body(), status=error.status, headers=error.headers())


class FlowsApi:
    """One node's flows API; ``start``/``stop`` run from the aiohttp app's start-up and clean-up hooks."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.store = AggregateStore(
            settings.es_hosts,
            settings.index_prefix,
            refresh_on_write=settings.read_your_writes,
            refresh_interval=settings.refresh_interval,
            node_id=settings.node_id,
            client_kwargs=settings.es_client_kwargs,
        )
        self.limiter = RateLimiter(settings.rate_limit_rows_per_s, settings.rate_limit_burst_rows)
        self.tokens = [t.encode() for t in settings.tokens]
        # The queue is not thread-safe; one thread owns it so that appends, fsyncs and acks never interleave.
        self._queue_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="api-queue"
        )
        self.queue: PersistentQueue | None = None
        self._pending: dict[int, PendingBatch] = {}  # queue seq -> durable batch not yet applied
        self._applied: set[int] = set()  # applied, waiting for the seqs before them to be acknowledged
        # One application per batch at a time (a second could rewrite deltas a fold just removed); concurrent
        # POSTs are applied together, several batches per Elasticsearch request.
        self._in_flight: dict[int, asyncio.Future] = {}
        self._apply_requests: asyncio.Queue[int] = asyncio.Queue()
        self._next_ack = 0
        self._tasks: list[asyncio.Task] = []
        self._retry_wakeup = asyncio.Event()

    # ------------------------------------------------------------------ life cycle

    async def start(self, _app: web.Application | None = None) -> None:
        await self.store.ensure_indices()
        self.queue = PersistentQueue(self.settings.queue_dir, max_bytes=self.settings.queue_max_bytes)
        self._tasks = [asyncio.create_task(self._applier_loop()) for _ in range(APPLIERS)]
        await self._replay()
        self._tasks += [asyncio.create_task(self._retry_loop()), asyncio.create_task(self._compact_loop())]

    async def stop(self, _app: web.Application | None = None) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.queue is not None:
            await self._in_queue_thread(self.queue.close)
        self._queue_thread.shutdown(wait=True)
        await self.store.close()

    async def _in_queue_thread(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._queue_thread, func, *args)

    async def _replay(self) -> None:
        """Apply every batch a previous run made durable but did not acknowledge (crash, ES outage)."""
        assert self.queue is not None
        replayed = 0
        while True:
            entries = await self._in_queue_thread(self.queue.read, 1000, 0.0)
            if not entries:
                break
            for entry in entries:
                self._pending[entry.seq] = decode_entry(entry.payload)
                replayed += 1
        stats = await self._in_queue_thread(self.queue.stats)
        self._next_ack = int(stats["acked_seq"]) + 1
        metrics.API_PENDING_BATCHES.set(len(self._pending))
        if replayed:
            log.info("flows API: re-applying %d batches left in %s", replayed, self.settings.queue_dir)
            await self._apply_all_pending()

    # ------------------------------------------------------------------ apply

    async def _apply(self, seq: int) -> bool:
        """Apply one durable batch (joining an application already under way); raises when it failed."""
        future = self._in_flight.get(seq)
        if future is None:
            if seq not in self._pending:
                return True
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_ignore_result)
            self._in_flight[seq] = future
            self._apply_requests.put_nowait(seq)
        return await asyncio.shield(future)

    async def _apply_all_pending(self) -> bool:
        """Apply every pending batch; False when some could not be applied yet."""
        results = await asyncio.gather(
            *(self._apply(seq) for seq in sorted(self._pending)), return_exceptions=True
        )
        return not any(isinstance(result, BaseException) for result in results)

    async def _applier_loop(self) -> None:
        while True:
            seqs = [await self._apply_requests.get()]
            while not self._apply_requests.empty() and len(seqs) < MAX_GROUP:
                seqs.append(self._apply_requests.get_nowait())
            await self._apply_group(seqs)

    async def _apply_group(self, seqs: list[int]) -> None:
        live = [seq for seq in seqs if seq in self._pending]
        try:
            outcomes = await self.store.apply_many([self._pending[seq] for seq in live])
        except Exception as exc:
            for seq in live:
                # the attempt may have got as far as the marker: later attempts must look for it
                self._pending[seq].check_marker = True
            metrics.API_APPLY_ERRORS.inc()
            limited_log.error(
                "api_apply", "flows API: %d batches not applied yet (%s); retrying", len(live), exc
            )
            self._retry_wakeup.set()
            self._settle(seqs, exc)
            return
        for seq, outcome in zip(live, outcomes, strict=True):
            self._pending.pop(seq, None)
            metrics.API_BATCHES_APPLIED.labels(outcome="duplicate" if outcome.duplicate else "applied").inc()
            self._applied.add(seq)
        metrics.API_PENDING_BATCHES.set(len(self._pending))
        self._settle(seqs, None)
        await self._ack_applied()

    def _settle(self, seqs: list[int], error: Exception | None) -> None:
        for seq in seqs:
            future = self._in_flight.pop(seq, None)
            if future is not None and not future.done():
                if error is None:
                    future.set_result(True)
                else:
                    future.set_exception(error)

    async def _ack_applied(self) -> None:
        """Acknowledge the longest run of applied seqs (the queue's ack means "everything <= seq")."""
        last = None
        while self._next_ack in self._applied:
            self._applied.discard(self._next_ack)
            last = self._next_ack
            self._next_ack += 1
        if last is not None and self.queue is not None:
            await self._in_queue_thread(self.queue.ack, last)

    async def _retry_loop(self) -> None:
        """Re-apply batches whose application failed (Elasticsearch down, overloaded), with capped backoff."""
        delay = 0.5
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._retry_wakeup.wait(), timeout=5.0)
            self._retry_wakeup.clear()
            await asyncio.sleep(delay)
            delay = 0.5 if await self._apply_all_pending() else min(30.0, delay * 2)

    async def _compact_loop(self) -> None:
        interval = self.settings.compact_interval_s
        while True:
            # jitter: nodes started together should not all fold the same hour at the same instant
            await asyncio.sleep(interval * (0.5 + random.random()))
            try:
                outcome = await self.store.compact()
                metrics.API_DELTAS_FOLDED.inc(outcome["folded"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                limited_log.error("api_compact", "flows API: compaction failed (%s); retrying later", exc)

    # ------------------------------------------------------------------ HTTP

    def _credential(self, request: web.Request) -> str:
        """The caller's credential (for the rate limit); raises 401 when auth is on and it is not valid."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not self.settings.auth_enabled:
            return token.strip() or (request.remote or "unknown")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestError(401, "unauthorized", "missing bearer token (Authorization: Bearer <token>)")
        presented = token.strip().encode()
        # compare_digest against every token: no early exit that would leak which prefix matched
        if not any([hmac.compare_digest(presented, known) for known in self.tokens]):
            raise RequestError(401, "unauthorized", "bearer token not accepted")
        return hashlib.sha256(presented).hexdigest()[:16]

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.body_limit_bytes
        if request.content_length is not None and request.content_length > limit:
            raise RequestError(
                413, "body_too_large", f"body of {request.content_length} bytes exceeds {limit}"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "body_too_large", f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return decompress(b"".join(chunks), request.headers.get("Content-Encoding", ""), limit)

    async def post_flows(self, request: web.Request) -> web.Response:
        return await self._respond("POST", self._post, request)

    async def get_flows(self, request: web.Request) -> web.Response:
        return await self._respond("GET", self._get, request)

    async def _respond(self, method: str, handler: Any, request: web.Request) -> web.Response:
        """Run a handler; refusals become JSON errors; every answer is timed by method and status class."""
        started = time.perf_counter()
        try:
            response = await handler(request)
        except RequestError as error:
            response = error_response(error)
        metrics.API_REQUEST_DURATION.labels(method=method, status=f"{response.status // 100}xx").observe(
            time.perf_counter() - started
        )
        return response

    async def _post(self, request: web.Request) -> web.Response:
        credential = self._credential(request)
        media = request.content_type  # aiohttp: "application/octet-stream" when the header is missing
        if "Content-Type" in request.headers and media != JSON and not media.endswith("+json"):
            raise RequestError(415, "unsupported_media_type", f"Content-Type must be {JSON}, got {media!r}")
        body = await self._read_body(request)
        batch = parse_rows(body, self.settings.rows_limit)
        wait = self.limiter.take(credential, batch.rows)
        if wait > 0:
            raise RequestError(
                429,
                "rate_limited",
                f"rate limit exceeded; retry in {wait:.1f} s",
                retry_after=max(1, math.ceil(wait)),
            )
        if batch.rows == 0:
            return json_response({"accepted": 0, "applied": True}, status=202)
        batch_id = self._batch_id(request, body)
        # shield: a client hanging up mid-append must not leave a durable batch unknown to the applier
        seq = await asyncio.shield(self._make_durable(batch_id, batch, "Idempotency-Key" in request.headers))
        metrics.API_ROWS_ACCEPTED.inc(batch.rows)
        applied = await self._apply_within_timeout(seq)
        return json_response({"accepted": batch.rows, "applied": applied, "batch_id": batch_id}, status=202)

    def _batch_id(self, request: web.Request, body: bytes) -> str:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return uuid.uuid4().hex
        # The body is part of the id: reusing a key for different rows must not silently drop them.
        return doc_id("idempotency", key, hashlib.sha256(body).hexdigest())

    async def _make_durable(self, batch_id: str, batch: Batch, request_has_key: bool) -> int:
        assert self.queue is not None
        rows = [(*key, tx, rx) for key, (tx, rx) in batch.sums.items()]
        # sums of one batch can pass 64 bits: those are queued as decimal strings (orjson writes 64 bits)
        queued = [(*key, packed_int(tx), packed_int(rx)) for key, (tx, rx) in batch.sums.items()]
        payload = orjson.dumps({"id": batch_id, "n": batch.rows, "rows": queued})
        queue = self.queue

        def append_and_sync() -> int:
            seq = queue.append(payload, QUEUE_SOURCE, time.time_ns())
            queue.sync()
            return seq

        try:
            seq = await self._in_queue_thread(append_and_sync)
        except QueueFull as exc:
            raise RequestError(
                503, "queue_full", f"the node's queue is full ({exc}); retry later", retry_after=5
            ) from None
        # a random batch id cannot have been applied before: no marker look-up on its first attempt
        self._pending[seq] = PendingBatch(batch_id, rows, batch.rows, check_marker=request_has_key)
        metrics.API_PENDING_BATCHES.set(len(self._pending))
        return seq

    async def _apply_within_timeout(self, seq: int) -> bool:
        # shield: a timeout (or the client hanging up) must not cancel an application half way through
        task = asyncio.ensure_future(self._apply(seq))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.settings.apply_timeout_s)
        except Exception as exc:
            task.add_done_callback(_ignore_result)
            limited_log.warning("api_apply_late", "flows API: batch durable, not applied yet: %r", exc)
            return False
        return True

    async def _get(self, request: web.Request) -> web.Response:
        self._credential(request)
        hour = parse_hour(request.query.get("hour"))
        limit = parse_limit(request.query.get("limit"), MAX_PAGE)
        after = None
        if "after" in request.query:
            try:
                after = decode_cursor(request.query["after"])
            except ValueError as exc:
                raise RequestError(400, "bad_cursor", f"'after': {exc}") from None
        try:
            rows, last = await self.store.read_hour(hour, limit, after)
        except Exception as exc:
            limited_log.error("api_read", "flows API: GET hour=%d failed: %s", hour, exc)
            raise RequestError(
                503, "elasticsearch_unavailable", f"aggregates cannot be read now: {exc}", retry_after=5
            ) from None
        headers = {}
        if last is not None:
            cursor = encode_cursor(last)
            headers["X-Next-After"] = cursor
            headers["Link"] = f'</flows?hour={hour}&limit={limit}&after={cursor}>; rel="next"'
        if isinstance(rows, bytes):  # already JSON (a folded hour)
            return web.Response(body=rows, content_type=JSON, headers=headers)
        return json_response(rows, headers=headers)

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI_PATH.read_bytes(), content_type=JSON)


def _ignore_result(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the retry loop owns the failure


def decode_entry(payload: bytes) -> PendingBatch:
    """A queued batch, as :meth:`FlowsApi._make_durable` wrote it; replays always look for its marker."""
    entry = orjson.loads(payload)
    rows = [(hour, src, dst, vpc, int(tx), int(rx)) for hour, src, dst, vpc, tx, rx in entry["rows"]]
    return PendingBatch(entry["id"], rows, entry["n"], check_marker=True)
