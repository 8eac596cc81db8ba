"""Where documents Elasticsearch refused for good go: a JSON-lines file and/or a daily dead-letter index."""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError

from flowsink.sinks.elasticsearch.client import short_reason

log = logging.getLogger(__name__)


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
