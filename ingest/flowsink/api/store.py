"""Hourly aggregates of the flows API in Elasticsearch: exact, idempotent per batch, bounded read cost.

Three indices (``<prefix>-aggregates``, ``<prefix>-batches``, ``<prefix>-folds``), see docs/flows-api.md:

* Applying a batch writes one *delta* document per hour it touches, id ``hash(batch id, hour)``, holding that
  hour's rows of the batch packed in one non-indexed field; then a *marker* ``<prefix>-batches/<batch id>``.
  A batch whose marker exists is skipped, so a retried or replayed batch is never counted twice; an
  interrupted one is rewritten whole (same ids). The marker is the batch's commit: reads and folds count only
  deltas whose batch has one, so a batch becomes visible all at once.
* Per hour, a *fold state* document names the current totals generation (``fold``) and the deltas folded
  into it (``folded``, ids). A read sums that generation's totals plus every delta of the hour not in
  ``folded``, in Python (exact integers: Elasticsearch's ``sum`` aggregation is a double). Totals are packed
  ``TOTALS_CHUNK`` keys per document, so an hour of 10k keys is a handful of documents.
* The compactor folds the deltas of marked (fully applied) batches: it first deletes the deltas the current
  state lists (folded last time), then writes a new totals generation, then switches the fold state with
  ``if_seq_no``/``if_primary_term`` (one atomic document write), then deletes what it replaced. Readers see
  the old view before the switch and the new one after it, whatever the timing, so a crash or a slow node at
  any step neither loses nor double counts; leftovers are deleted by the next fold.

No scripts, no ``_delete_by_query``: this works on any Elasticsearch 8/9 distribution.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError
from elasticsearch.serializer import OrjsonSerializer

from flowsink import assets
from flowsink.api.validate import INT64_MAX

log = logging.getLogger(__name__)

TEMPLATE_DIR = assets.path("elasticsearch")
PAGE_SIZE = 200  # documents per search page: each packs up to TOTALS_CHUNK rows
MAX_FOLD_DELTAS = 5000  # deltas folded at once: bounds the fold state document (their ids)
TOTALS_CHUNK = 5000  # keys per totals document
READ_ATTEMPTS = 5

# one aggregated row of a batch: (hour, src_app, dest_app, vpc_id, bytes_tx, bytes_rx)
DeltaRow = tuple[int, str, str, str, int, int]
# a packed row inside a document: [src_app, dest_app, vpc_id, bytes_tx, bytes_rx]; a sum beyond 64 bits is
# stored as decimal digits (orjson would turn it into a float)
PackedRow = list[str | int]


@dataclass
class PendingBatch:
    """A batch to apply: its id, rows aggregated per key, rows posted, whether it may be applied already."""

    batch_id: str
    rows: list[DeltaRow]
    row_count: int
    check_marker: bool = True


@dataclass
class ApplyOutcome:
    """What applying one batch did: ``duplicate`` when its marker was already there."""

    duplicate: bool
    deltas: int


def doc_id(*parts: object) -> str:
    """A short deterministic document id (``_id`` is limited to 512 bytes; keys may be 3 x 256)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=18)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")


def encode_cursor(key: tuple[str, str, str]) -> str:
    """The opaque ``after`` cursor of a page: the last key returned."""
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    """Inverse of :func:`encode_cursor`; raises ``ValueError`` on anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = orjson.loads(raw)
    except Exception as exc:
        raise ValueError(f"not a cursor returned by this API: {exc}") from None
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(part, str) for part in key)):
        raise ValueError("not a cursor returned by this API")
    return key[0], key[1], key[2]


def load_template(name: str) -> dict[str, Any]:
    """The ``template`` part (settings, mappings) of ``elasticsearch/api-<name>.json``."""
    return orjson.loads((TEMPLATE_DIR / f"api-{name}.json").read_bytes())["template"]


class AggregateStore:
    """Writes batches as deltas, reads exact hourly sums, folds old deltas into totals."""

    def __init__(
        self,
        hosts: list[str],
        index_prefix: str,
        *,
        refresh_on_write: bool = True,
        refresh_interval: str = "200ms",
        node_id: str = "",
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        kwargs = {"request_timeout": 30, **(client_kwargs or {})}
        self.es = AsyncElasticsearch(hosts, serializer=OrjsonSerializer(), **kwargs)
        self.aggregates = f"{index_prefix}-aggregates"
        self.batches = f"{index_prefix}-batches"
        self.folds = f"{index_prefix}-folds"
        self.refresh_on_write = refresh_on_write
        self.refresh_interval = refresh_interval
        self.node_id = node_id

    async def close(self) -> None:
        await self.es.close()

    # ------------------------------------------------------------------ set-up

    async def ensure_indices(self) -> None:
        """Create the three indices with their mappings unless they exist (any index prefix works)."""
        for index, name in (
            (self.aggregates, "aggregates"),
            (self.batches, "batches"),
            (self.folds, "folds"),
        ):
            if await self.es.indices.exists(index=index):
                continue
            template = load_template(name)
            settings = template.get("settings", {})
            if name == "aggregates":
                settings = {"index": {**settings.get("index", {}), "refresh_interval": self.refresh_interval}}
            try:
                await self.es.indices.create(index=index, settings=settings, mappings=template["mappings"])
            except Exception as exc:  # another node created it first
                if "resource_already_exists" not in str(exc):
                    raise
        await self.es.cluster.health(
            index=[self.aggregates, self.batches, self.folds], wait_for_status="yellow"
        )

    # ------------------------------------------------------------------ write

    async def apply_many(self, batches: list[PendingBatch]) -> list[ApplyOutcome]:
        """Apply batches idempotently: their deltas in one bulk request, then their markers in another.

        Batches with ``check_marker`` are looked up first and skipped when applied already; the others carry a
        fresh random id that cannot have been applied. Several batches per request: under load the cost of an
        Elasticsearch request, not its size, is what limits the rate.
        """
        to_check = [b.batch_id for b in batches if b.check_marker]
        applied = await self._applied_batches(set(to_check)) if to_check else set()
        outcomes: list[ApplyOutcome] = []
        lines: list[bytes] = []
        markers: list[bytes] = []
        now_ms = int(time.time() * 1000)
        for batch in batches:
            if batch.batch_id in applied:
                outcomes.append(ApplyOutcome(duplicate=True, deltas=0))
                continue
            by_hour: dict[int, list[PackedRow]] = {}
            for hour, src, dst, vpc, tx, rx in batch.rows:
                by_hour.setdefault(hour, []).append([src, dst, vpc, packed_int(tx), packed_int(rx)])
            for hour, packed in by_hour.items():
                delta_id = doc_id(batch.batch_id, hour)
                lines.append(orjson.dumps({"index": {"_index": self.aggregates, "_id": delta_id}}))
                document = {
                    "kind": "d",
                    "hour": hour,
                    "batch": batch.batch_id,
                    "tie": delta_id,
                    "rows": packed,
                }
                lines.append(orjson.dumps(document))
            markers.append(orjson.dumps({"create": {"_index": self.batches, "_id": batch.batch_id}}))
            markers.append(
                orjson.dumps({"applied_ms": now_ms, "rows": batch.row_count, "node": self.node_id})
            )
            outcomes.append(ApplyOutcome(duplicate=False, deltas=len(by_hour)))
        if lines:
            # refresh now, not wait_for: the index holds few documents (compaction), so a refresh is cheap and
            # the POST does not wait for the next scheduled one (measured: 1.4-1.7x the rows/s of wait_for)
            await self._bulk(lines, refresh=self.refresh_on_write)
        if markers:
            # 409: a concurrent retry of the same batch finished first (same deltas, same ids)
            await self._bulk(markers)
        return outcomes

    async def _bulk(self, lines: list[bytes], refresh: Any = False) -> dict:
        body = b"\n".join(lines) + b"\n"
        response = await self.es.bulk(operations=body, refresh=refresh)
        if response.get("errors"):
            failed = [
                item for item in response["items"] for op in item.values() if op.get("status", 200) >= 300
            ]
            bad = [f for f in failed if next(iter(f.values())).get("status") not in (404, 409)]
            if bad:
                first = next(iter(bad[0].values()))
                raise RuntimeError(
                    f"{len(bad)} bulk items failed, first: {first.get('status')} {first.get('error')}"
                )
        return response

    # ------------------------------------------------------------------ read

    async def fold_state(self, hour: int) -> tuple[dict | None, int | None, int | None]:
        """The hour's fold state document with its seq_no and primary term (None, None, None when unfolded)."""
        try:
            doc = await self.es.get(index=self.folds, id=str(hour))
        except NotFoundError:
            return None, None, None
        return doc["_source"], doc["_seq_no"], doc["_primary_term"]

    def _visible_query(self, hour: int, state: dict | None) -> dict:
        deltas: dict = {"bool": {"filter": [{"term": {"kind": "d"}}]}}
        clauses = [deltas]
        if state is not None:
            if state["folded"]:
                deltas["bool"]["must_not"] = [{"ids": {"values": state["folded"]}}]
            clauses.append({"bool": {"filter": [{"term": {"kind": "t"}}, {"term": {"fold": state["fold"]}}]}})
        return {"bool": {"filter": [{"term": {"hour": hour}}], "should": clauses, "minimum_should_match": 1}}

    async def _hits(self, query: dict) -> AsyncIterator[dict]:
        """Every document matching ``query``, page by page (``search_after`` on the unique ``_id``-like order)."""
        search_after: list | None = None
        while True:
            response = await self.es.search(
                index=self.aggregates,
                query=query,
                sort=["_doc"],
                size=PAGE_SIZE,
                search_after=search_after,
                track_total_hits=False,
            )
            hits = response["hits"]["hits"]
            for hit in hits:
                yield hit
            if len(hits) < PAGE_SIZE:
                return
            search_after = hits[-1]["sort"]

    async def read_hour(
        self, hour: int, limit: int | None = None, after: tuple[str, str, str] | None = None
    ) -> tuple[list[dict] | bytes, tuple[str, str, str] | None]:
        """Exact sums per key for one hour, sorted by key (objects, or their JSON when read from totals);
        with ``limit``, one page and its last key.

        Retried when a fold switched the hour's generation during the read (the pages would mix two views).
        """
        for _ in range(READ_ATTEMPTS):
            state, seq_no, _ = await self.fold_state(hour)
            hits = [hit["_source"] async for hit in self._hits(self._visible_query(hour, state))]
            hits = await self._committed(hits)
            # A fold that switched the hour meanwhile may have deleted what we were reading: check, in
            # parallel with the summing.
            recheck = asyncio.ensure_future(self.fold_state(hour))
            result = _sum_hour(hits, hour, limit, after)
            _, seq_after, _ = await recheck
            if seq_after == seq_no:
                return result
        raise RuntimeError(f"hour {hour} was re-folded during {READ_ATTEMPTS} reads in a row")

    async def _committed(self, sources: list[dict]) -> list[dict]:
        """The documents of batches whose marker exists: the marker is a batch's commit, one document written
        after all its deltas, so a batch interrupted in between (a crash, an Elasticsearch error) shows nothing
        until its retry or the node's replay writes the marker, then every hour of it at once. Markers are read by
        id (``mget`` is real-time: no refresh needed, so read-your-writes holds)."""
        batches = {source["batch"] for source in sources if source["kind"] == "d"}
        if not batches:
            return sources
        applied = await self._applied_batches(batches)
        if len(applied) == len(batches):
            return sources
        return [source for source in sources if source["kind"] != "d" or source["batch"] in applied]

    # ------------------------------------------------------------------ compaction

    async def hours_to_fold(self) -> list[int]:
        """Hours that have delta documents (nothing else needs folding)."""
        response = await self.es.search(
            index=self.aggregates,
            size=0,
            query={"term": {"kind": "d"}},
            aggs={"hours": {"terms": {"field": "hour", "size": 10_000}}},
        )
        return [int(bucket["key"]) for bucket in response["aggregations"]["hours"]["buckets"]]

    async def fold_hour(self, hour: int) -> dict[str, int]:
        """Fold the hour's deltas of fully applied batches into a new totals generation (see the module doc)."""
        state, seq_no, primary_term = await self.fold_state(hour)
        base_fold = state["fold"] if state else None
        previously_folded = list(state["folded"]) if state else []
        # Deltas folded last time go first: the new state will no longer list them for readers to skip.
        await self._delete_ids(previously_folded)
        await self.es.indices.refresh(index=self.aggregates)
        totals: dict[tuple[str, str, str], list[int]] = {}
        obsolete: list[str] = []  # totals documents the new generation replaces: deleted after the switch
        candidates: list[dict] = []
        async for hit in self._hits({"term": {"hour": hour}}):
            source = hit["_source"]
            if source["kind"] == "t":
                obsolete.append(hit["_id"])
                if source["fold"] == base_fold:
                    _add_packed(totals, _source_rows(source))
            elif len(candidates) < MAX_FOLD_DELTAS:
                candidates.append(hit)
        applied = await self._applied_batches({hit["_source"]["batch"] for hit in candidates})
        # Deltas of a batch still being applied (no marker yet) stay visible as deltas: folded next time.
        folding = [hit for hit in candidates if hit["_source"]["batch"] in applied]
        if not folding and not previously_folded:
            return {"folded": 0, "deleted": 0}
        for hit in folding:
            _add_packed(totals, hit["_source"]["rows"])
        new_fold = uuid.uuid4().hex
        new_ids = await self._write_totals(hour, new_fold, totals)
        folded_ids = [hit["_id"] for hit in folding]
        if not await self._switch(hour, new_fold, folded_ids, seq_no, primary_term):
            await self._delete_ids(new_ids)
            return {"folded": 0, "deleted": 0}
        await self._delete_ids(folded_ids + obsolete)
        return {"folded": len(folding), "deleted": len(folded_ids) + len(obsolete)}

    async def _applied_batches(self, batch_ids: set[str]) -> set[str]:
        applied: set[str] = set()
        ids = sorted(batch_ids)
        for start in range(0, len(ids), 1000):
            response = await self.es.mget(index=self.batches, ids=ids[start : start + 1000], source=False)
            applied.update(doc["_id"] for doc in response["docs"] if doc.get("found"))
        return applied

    async def _write_totals(
        self, hour: int, fold: str, totals: dict[tuple[str, str, str], list[int]]
    ) -> list[str]:
        """Write the new generation in chunks of ``TOTALS_CHUNK`` keys; returns the document ids."""
        packed = [[*key, tx, rx] for key, (tx, rx) in sorted(totals.items())]
        lines: list[bytes] = []
        ids: list[str] = []
        for chunk, start in enumerate(range(0, len(packed), TOTALS_CHUNK)):
            ids.append(doc_id(fold, hour, chunk))
            lines.append(orjson.dumps({"index": {"_index": self.aggregates, "_id": ids[-1]}}))
            rendered, big = render_rows(packed[start : start + TOTALS_CHUNK], hour)
            document = {
                "kind": "t",
                "hour": hour,
                "fold": fold,
                "chunk": chunk,
                "tie": ids[-1],
                "rendered": rendered,
                "big": big,
            }
            lines.append(orjson.dumps(document))
        for start in range(0, len(lines), 2 * 20):
            await self._bulk(lines[start : start + 2 * 20])
        # Readers must see the whole new generation the instant the fold state names it.
        await self.es.indices.refresh(index=self.aggregates)
        return ids

    async def _switch(
        self, hour: int, fold: str, folded: list[str], seq_no: int | None, primary_term: int | None
    ) -> bool:
        document = {"fold": fold, "folded": folded, "folded_ms": int(time.time() * 1000)}
        try:
            if seq_no is None:
                await self.es.create(index=self.folds, id=str(hour), document=document, refresh=True)
            else:
                await self.es.index(
                    index=self.folds,
                    id=str(hour),
                    document=document,
                    if_seq_no=seq_no,
                    if_primary_term=primary_term,
                    refresh=True,
                )
        except ConflictError:
            return False  # another node folded this hour first; our generation is discarded
        return True

    async def _delete_ids(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 5000):
            lines = [
                orjson.dumps({"delete": {"_index": self.aggregates, "_id": i}})
                for i in ids[start : start + 5000]
            ]
            await self._bulk(lines)

    async def compact(self) -> dict[str, int]:
        """One compaction pass over every hour that has deltas."""
        folded = deleted = 0
        for hour in await self.hours_to_fold():
            outcome = await self.fold_hour(hour)
            folded += outcome["folded"]
            deleted += outcome["deleted"]
        return {"folded": folded, "deleted": deleted}


def packed_int(value: int) -> int | str:
    """A sum as stored: a JSON number while it fits 64 bits (parsed back as int), else decimal digits."""
    return value if value <= INT64_MAX else str(value)


def render_rows(rows: list[list], hour: int) -> tuple[str, bool]:
    """The GET answer's objects for sorted totals rows, as JSON text without the brackets.

    Totals are stored rendered so that reading a folded hour is string concatenation, not 10k objects built
    and serialised per GET. ``big``: some sum passes 64 bits (orjson cannot write or read it exactly).
    """
    objects = [
        {"src_app": src, "dest_app": dst, "vpc_id": vpc, "bytes_tx": tx, "bytes_rx": rx, "hour": hour}
        for src, dst, vpc, tx, rx in rows
    ]
    try:
        return orjson.dumps(objects).decode()[1:-1], False
    except TypeError:
        return json.dumps(objects, ensure_ascii=False, separators=(",", ":"))[1:-1], True


def _source_rows(source: dict) -> list[PackedRow]:
    """Packed rows of a delta, or of a totals chunk (parsed back from its rendered JSON)."""
    if source["kind"] == "d":
        return source["rows"]
    text = "[" + source["rendered"] + "]"
    objects = json.loads(text) if source.get("big") else orjson.loads(text)
    return [[o["src_app"], o["dest_app"], o["vpc_id"], o["bytes_tx"], o["bytes_rx"]] for o in objects]


def _sum_hour(
    sources: list[dict], hour: int, limit: int | None, after: tuple[str, str, str] | None
) -> tuple[list[dict] | bytes, tuple[str, str, str] | None]:
    """The hour's rows from its visible documents: totals chunks, plus deltas to merge in.

    A folded hour (totals only) asked for whole comes back as ready JSON bytes.
    """
    if any(source["kind"] != "t" for source in sources):
        sums: dict[tuple[str, str, str], list[int]] = {}
        for source in sources:
            _add_packed(sums, _source_rows(source))
        return _page(sums, hour, limit, after)
    # Totals only (the usual case once folded): chunks hold sorted, distinct keys; no merge, no sort.
    chunks = sorted(sources, key=lambda s: s["chunk"])
    if limit is None and after is None:
        return ("[" + ",".join(c["rendered"] for c in chunks if c["rendered"]) + "]").encode(), None
    rows = [row for chunk in chunks for row in _source_rows(chunk)]
    start = bisect.bisect_right(rows, after, key=lambda row: (row[0], row[1], row[2])) if after else 0
    end = len(rows) if limit is None else min(len(rows), start + limit)
    page = [
        {
            "src_app": src,
            "dest_app": dst,
            "vpc_id": vpc,
            "bytes_tx": int(tx),
            "bytes_rx": int(rx),
            "hour": hour,
        }
        for src, dst, vpc, tx, rx in rows[start:end]
    ]
    last = (rows[end - 1][0], rows[end - 1][1], rows[end - 1][2]) if end < len(rows) else None
    return page, last


def _add_packed(sums: dict[tuple[str, str, str], list[int]], rows: list[PackedRow]) -> None:
    for src, dst, vpc, tx, rx in rows:
        key = (src, dst, vpc)
        acc = sums.get(key)
        if acc is None:
            sums[key] = [int(tx), int(rx)]
        else:
            acc[0] += int(tx)
            acc[1] += int(rx)


def _page(
    sums: dict[tuple[str, str, str], list[int]],
    hour: int,
    limit: int | None,
    after: tuple[str, str, str] | None,
) -> tuple[list[dict], tuple[str, str, str] | None]:
    """Sorted rows after ``after``, at most ``limit`` of them, and the last key when more follow."""
    # Python orders str by code point, as Elasticsearch orders keywords by UTF-8 bytes: same order.
    keys = sorted(key for key in sums if after is None or key > after)
    more = limit is not None and len(keys) > limit
    if limit is not None:
        keys = keys[:limit]
    rows = [
        {
            "src_app": k[0],
            "dest_app": k[1],
            "vpc_id": k[2],
            "bytes_tx": sums[k][0],
            "bytes_rx": sums[k][1],
            "hour": hour,
        }
        for k in keys
    ]
    return rows, (keys[-1] if more else None)
