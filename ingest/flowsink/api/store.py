"""Hourly aggregates of the flows API in Elasticsearch: exact, idempotent per batch, bounded read cost.

Three indices (``<prefix>-aggregates``, ``<prefix>-batches``, ``<prefix>-folds``), see docs/flows-api.md:

* Applying a batch writes one *delta* document per key with id ``hash(batch id, key)`` and ``epoch`` = the
  writer's clock, then a *marker* ``<prefix>-batches/<batch id>``. A batch whose marker exists is skipped, so a
  retried or replayed batch is never counted twice; an interrupted one is rewritten whole (same ids).
* Per hour, a *fold state* document says which totals generation is current (``fold``) and up to which
  ``epoch`` deltas are inside it (``through``). A read sums the current totals plus the deltas newer than
  ``through``, in Python (exact integers: Elasticsearch's ``sum`` aggregation is a double).
* The compactor folds deltas older than ``compact_grace_s`` into a new totals generation, switches the fold
  state with ``if_seq_no``/``if_primary_term`` (one atomic document write), then deletes what the new
  generation replaced. Before the switch readers see the old generation, after it the new one, so a crash
  at any step neither loses nor double counts; leftovers are deleted by the next fold.

No scripts, no ``_delete_by_query``: this works on any Elasticsearch 8/9 distribution.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch, ConflictError, NotFoundError
from elasticsearch.serializer import OrjsonSerializer

from flowsink.api.validate import Key

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "elasticsearch"
PAGE_SIZE = 10_000  # hits per search page (the default index.max_result_window)
READ_ATTEMPTS = 5
KEY_SORT = [{"src_app": "asc"}, {"dest_app": "asc"}, {"vpc_id": "asc"}, {"tie": "asc"}]

# one aggregated row of a batch: (hour, src_app, dest_app, vpc_id, bytes_tx, bytes_rx)
DeltaRow = tuple[int, str, str, str, int, int]


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
        compact_grace_s: float = 120.0,
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
        self.grace_ms = int(compact_grace_s * 1000)
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

    async def apply(self, batch_id: str, rows: Iterable[DeltaRow], row_count: int) -> ApplyOutcome:
        """Apply one batch idempotently: deltas first, then the marker that makes retries skip it."""
        if await self._marker_exists(batch_id):
            return ApplyOutcome(duplicate=True, deltas=0)
        epoch = int(time.time() * 1000)
        lines: list[bytes] = []
        for hour, src, dst, vpc, tx, rx in rows:
            delta_id = doc_id(batch_id, hour, src, dst, vpc)
            lines.append(orjson.dumps({"index": {"_index": self.aggregates, "_id": delta_id}}))
            lines.append(
                orjson.dumps(
                    {
                        "kind": "d",
                        "hour": hour,
                        "src_app": src,
                        "dest_app": dst,
                        "vpc_id": vpc,
                        "tie": delta_id,
                        "epoch": epoch,
                        "batch": batch_id,
                        "tx": str(tx),
                        "rx": str(rx),
                    }
                )
            )
        if lines:
            await self._bulk(lines, refresh="wait_for" if self.refresh_on_write else False)
        await self._write_marker(batch_id, row_count)
        elapsed_ms = int(time.time() * 1000) - epoch
        if elapsed_ms > self.grace_ms // 2:
            # The compactor assumes a batch is applied well within the grace; say so loudly when it was not.
            log.error(
                "applying batch %s took %d ms, more than half of compact_grace_s; raise api.compact_grace_s",
                batch_id,
                elapsed_ms,
            )
        return ApplyOutcome(duplicate=False, deltas=len(lines) // 2)

    async def _marker_exists(self, batch_id: str) -> bool:
        # GET by id is real-time: no refresh needed to see a marker written an instant ago.
        return bool(await self.es.exists(index=self.batches, id=batch_id))

    async def _write_marker(self, batch_id: str, row_count: int) -> None:
        # ConflictError: a concurrent retry of the same batch finished first (same deltas, same ids)
        with contextlib.suppress(ConflictError):
            await self.es.create(
                index=self.batches,
                id=batch_id,
                document={"applied_ms": int(time.time() * 1000), "rows": row_count, "node": self.node_id},
            )

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
            deltas["bool"]["filter"].append({"range": {"epoch": {"gt": state["through"]}}})
            clauses.append({"bool": {"filter": [{"term": {"kind": "t"}}, {"term": {"fold": state["fold"]}}]}})
        return {"bool": {"filter": [{"term": {"hour": hour}}], "should": clauses, "minimum_should_match": 1}}

    async def _hits(
        self, query: dict, after: tuple[str, str, str] | None = None, sort: list | None = None
    ) -> AsyncIterator[dict]:
        """Documents matching ``query`` in ``sort`` order (default: key order), page by page (``search_after``)."""
        search_after: list | None = [*after, "\U0010ffff"] if after else None
        while True:
            response = await self.es.search(
                index=self.aggregates,
                query=query,
                sort=sort or KEY_SORT,
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
    ) -> tuple[list[dict], tuple[str, str, str] | None]:
        """Exact sums per key for one hour, sorted by key; with ``limit``, one page and the last key of it.

        Retried when a fold switched the hour's generation during the read (the pages would mix two views).
        """
        for _ in range(READ_ATTEMPTS):
            state, seq_no, _ = await self.fold_state(hour)
            rows, last = await self._read_view(hour, state, limit, after)
            _, seq_after, _ = await self.fold_state(hour)
            if seq_after == seq_no:
                return rows, last
        raise RuntimeError(f"hour {hour} was re-folded during {READ_ATTEMPTS} reads in a row")

    async def _read_view(
        self, hour: int, state: dict | None, limit: int | None, after: tuple[str, str, str] | None
    ) -> tuple[list[dict], tuple[str, str, str] | None]:
        rows: list[dict] = []
        current: tuple[str, str, str] | None = None
        tx = rx = 0
        async for hit in self._hits(self._visible_query(hour, state), after):
            source = hit["_source"]
            key = (source["src_app"], source["dest_app"], source["vpc_id"])
            if key != current:
                if current is not None:
                    rows.append(_row(current, tx, rx, hour))
                    if limit is not None and len(rows) >= limit:
                        return rows, current
                current, tx, rx = key, 0, 0
            tx += int(source["tx"])
            rx += int(source["rx"])
        if current is not None:
            rows.append(_row(current, tx, rx, hour))
        return rows, None

    # ------------------------------------------------------------------ compaction

    async def hours_to_fold(self) -> list[int]:
        """Hours that have deltas older than the grace (nothing else needs folding)."""
        cutoff = int(time.time() * 1000) - self.grace_ms
        response = await self.es.search(
            index=self.aggregates,
            size=0,
            query={"bool": {"filter": [{"term": {"kind": "d"}}, {"range": {"epoch": {"lte": cutoff}}}]}},
            aggs={"hours": {"terms": {"field": "hour", "size": 10_000}}},
        )
        return [int(bucket["key"]) for bucket in response["aggregations"]["hours"]["buckets"]]

    async def fold_hour(self, hour: int) -> dict[str, int]:
        """Fold the hour's deltas older than the grace into a new totals generation (see the module doc)."""
        state, seq_no, primary_term = await self.fold_state(hour)
        through = int(time.time() * 1000) - self.grace_ms
        if state is not None and through <= state["through"]:
            return {"folded": 0, "deleted": 0}
        await self.es.indices.refresh(index=self.aggregates)
        base_fold = state["fold"] if state else None
        base_through = state["through"] if state else -1
        totals: dict[Key, list[int]] = {}
        obsolete: list[str] = []  # replaced by the new generation: delete after the switch
        candidates: list[dict] = []
        query = {
            "bool": {
                "filter": [{"term": {"hour": hour}}],
                "should": [
                    {"term": {"kind": "t"}},
                    {"bool": {"filter": [{"term": {"kind": "d"}}, {"range": {"epoch": {"lte": through}}}]}},
                ],
                "minimum_should_match": 1,
            }
        }
        async for hit in self._hits(query, sort=[{"tie": "asc"}]):
            source = hit["_source"]
            key = (hour, source["src_app"], source["dest_app"], source["vpc_id"])
            if source["kind"] == "t":
                obsolete.append(hit["_id"])
                if source["fold"] == base_fold:
                    _add(totals, key, source)
            elif source["epoch"] > base_through:
                candidates.append(hit)
            else:
                obsolete.append(hit["_id"])  # already in the current generation, left over by a crash
        applied = await self._applied_batches({hit["_source"]["batch"] for hit in candidates})
        stranded = 0
        for hit in candidates:
            obsolete.append(hit["_id"])
            if hit["_source"]["batch"] in applied:
                source = hit["_source"]
                _add(totals, (hour, source["src_app"], source["dest_app"], source["vpc_id"]), source)
            else:
                # Part of a batch whose application never finished: invisible once folded past; a retry or
                # the queue replay rewrites the whole batch with a fresh epoch.
                stranded += 1
        if stranded:
            log.warning(
                "hour %d: dropped %d deltas of unfinished batches (they are re-applied on retry)",
                hour,
                stranded,
            )
        new_fold = uuid.uuid4().hex
        await self._write_totals(hour, new_fold, totals)
        switched = await self._switch(hour, new_fold, through, seq_no, primary_term)
        if not switched:
            await self._delete_ids([doc_id(new_fold, *key) for key in totals])
            return {"folded": 0, "deleted": 0}
        await self._delete_ids(obsolete)
        return {"folded": len(candidates) - stranded, "deleted": len(obsolete)}

    async def _applied_batches(self, batch_ids: set[str]) -> set[str]:
        applied: set[str] = set()
        ids = sorted(batch_ids)
        for start in range(0, len(ids), 1000):
            response = await self.es.mget(index=self.batches, ids=ids[start : start + 1000], source=False)
            applied.update(doc["_id"] for doc in response["docs"] if doc.get("found"))
        return applied

    async def _write_totals(self, hour: int, fold: str, totals: dict[Key, list[int]]) -> None:
        lines: list[bytes] = []
        for key, (tx, rx) in totals.items():
            total_id = doc_id(fold, *key)
            lines.append(orjson.dumps({"index": {"_index": self.aggregates, "_id": total_id}}))
            lines.append(
                orjson.dumps(
                    {
                        "kind": "t",
                        "hour": hour,
                        "src_app": key[1],
                        "dest_app": key[2],
                        "vpc_id": key[3],
                        "tie": total_id,
                        "fold": fold,
                        "tx": str(tx),
                        "rx": str(rx),
                    }
                )
            )
        for start in range(0, len(lines), 2 * 5000):
            await self._bulk(lines[start : start + 2 * 5000])
        # Readers must see the whole new generation the instant the fold state names it.
        await self.es.indices.refresh(index=self.aggregates)

    async def _switch(
        self, hour: int, fold: str, through: int, seq_no: int | None, primary_term: int | None
    ) -> bool:
        document = {"fold": fold, "through": through, "folded_ms": int(time.time() * 1000)}
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
        """One compaction pass over every hour that has deltas older than the grace."""
        folded = deleted = 0
        for hour in await self.hours_to_fold():
            outcome = await self.fold_hour(hour)
            folded += outcome["folded"]
            deleted += outcome["deleted"]
        return {"folded": folded, "deleted": deleted}


def _add(totals: dict[Key, list[int]], key: Key, source: dict) -> None:
    acc = totals.setdefault(key, [0, 0])
    acc[0] += int(source["tx"])
    acc[1] += int(source["rx"])


def _row(key: tuple[str, str, str], tx: int, rx: int, hour: int) -> dict:
    return {
        "src_app": key[0],
        "dest_app": key[1],
        "vpc_id": key[2],
        "bytes_tx": tx,
        "bytes_rx": rx,
        "hour": hour,
    }
