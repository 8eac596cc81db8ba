"""ECS documents -> Elasticsearch ``_bulk`` lines: the bytes the sink sends, one action line + one source line each.

This is the *reference* encoding. The C writers of ``flowsink.native`` (``native/*.c``) write the same
bytes straight from the datagram when a ``BulkFormat`` is given, without building a dict per flow: at
300k flows/s a Python dict per document plus its ``orjson.dumps`` cost the whole time budget on their own.
``tests/test_decode_bulk.py`` holds the two paths to byte-identical output.

The index is chosen here, from the document alone, so a replayed datagram always lands in the index of its first
copy (``create`` + 409 then sees it): ``<prefix>-flows-YYYY.MM.DD`` or ``<prefix>-meta-YYYY.MM.DD``, the UTC day
of ``@timestamp``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson

# event.action values that go to the meta indices; every other document is a flow
META_ACTIONS = frozenset({"netflow_options", "sflow_counter_sample"})


@dataclass(frozen=True, slots=True)
class BulkFormat:
    """How documents become bulk lines: the index prefix, the bulk operation, and whether ``_id`` is sent.

    ``op_type`` ``create`` with deterministic ids makes replays idempotent (409 = already there); ``index``
    with ``keep_ids=False`` lets Elasticsearch choose ids (faster, but a replay indexes twice).
    """

    index_prefix: str = "flowsink"
    op_type: str = "create"
    keep_ids: bool = True

    def __post_init__(self) -> None:
        if self.op_type not in ("create", "index"):
            raise ValueError(f"op_type must be create or index, not {self.op_type!r}")

    @property
    def action_head(self) -> bytes:
        """The action line up to the index kind: ``{"create":{"_index":"<prefix>-`` (JSON-escaped)."""
        return orjson.dumps({self.op_type: {"_index": f"{self.index_prefix}-"}})[:-3]

    @property
    def c_format(self) -> tuple[bytes, bool]:
        """What the C writers take: ``(action_head, keep_ids)``."""
        return self.action_head, self.keep_ids


def index_name(doc: dict[str, Any], prefix: str) -> str:
    """``<prefix>-flows-YYYY.MM.DD`` or ``<prefix>-meta-YYYY.MM.DD``, the day of ``@timestamp`` in UTC.

    Documents without a usable ``@timestamp`` go to today's index; the decoders always set ``@timestamp``, so
    this is a fallback, never the normal path.
    """
    action = (doc.get("event") or {}).get("action")
    kind = "meta" if action in META_ACTIONS else "flows"
    return f"{prefix}-{kind}-{_day(doc.get('@timestamp'))}"


def _day(timestamp: Any) -> str:
    # ISO-8601 strings in UTC are what the decoders emit: slicing beats parsing by ~20x on the hot path.
    if isinstance(timestamp, str) and len(timestamp) >= 10 and timestamp[4] == "-" and timestamp[7] == "-":
        if timestamp.endswith("Z") or ("+" not in timestamp[10:] and "-" not in timestamp[10:]):
            return f"{timestamp[0:4]}.{timestamp[5:7]}.{timestamp[8:10]}"
        from datetime import datetime

        try:
            return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y.%m.%d")
        except ValueError:
            pass
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        seconds = timestamp / 1000 if timestamp > 1e11 else timestamp  # epoch millis or seconds
        try:
            return time.strftime("%Y.%m.%d", time.gmtime(seconds))
        except (OverflowError, OSError, ValueError):
            pass
    return time.strftime("%Y.%m.%d", time.gmtime())


def encode_document(doc: dict[str, Any], fmt: BulkFormat) -> bytes:
    """``action\\nsource\\n`` for one document; its ``_id`` key moves into the action line (``doc`` is consumed).

    Raises ``TypeError`` for a value orjson cannot serialise (only a decoder bug makes one).
    """
    doc_id = doc.pop("_id", None)
    doc.pop("_index", None)
    meta: dict[str, Any] = {"_index": index_name(doc, fmt.index_prefix)}
    if fmt.keep_ids and doc_id is not None:
        meta["_id"] = doc_id
    return orjson.dumps({fmt.op_type: meta}) + b"\n" + orjson.dumps(doc) + b"\n"


def split_encoded(encoded: bytes) -> tuple[dict[str, Any], bytes]:
    """``(action metadata, source line)`` of one encoded document: what a retry or a dead letter needs."""
    cut = encoded.index(b"\n")
    action = orjson.loads(encoded[:cut])
    meta = next(iter(action.values()))
    return meta, encoded[cut + 1 :].rstrip(b"\n")
