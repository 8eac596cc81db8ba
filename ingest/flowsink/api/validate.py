"""Validation of POST /flows bodies and GET /flows parameters; pure code, no I/O.

A body is accepted whole or rejected whole: every bad row is reported (the first ``MAX_REPORTED``) so that a
client can fix its batch in one round trip.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

FIELDS = ("src_app", "dest_app", "vpc_id", "bytes_tx", "bytes_rx", "hour")
STRING_FIELDS = ("src_app", "dest_app", "vpc_id")
INT_FIELDS = ("bytes_tx", "bytes_rx", "hour")
MAX_STRING_BYTES = 256
INT64_MAX = (1 << 63) - 1
MAX_REPORTED = 100

# (hour, src_app, dest_app, vpc_id): one aggregate per key and hour
Key = tuple[int, str, str, str]


class RequestError(Exception):
    """A request the API refuses: HTTP status, a short bounded reason label for metrics, a readable message."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: list[dict] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or []
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate`` on 401, ``Retry-After`` on 429/503."""
        if self.status == 401:
            return {"WWW-Authenticate": "Bearer"}
        if self.retry_after is not None:
            return {"Retry-After": str(self.retry_after)}
        return {}

    def body(self) -> dict:
        body: dict = {"error": self.reason, "message": self.message}
        if self.details:
            body["errors"] = self.details
        return body


@dataclass
class Batch:
    """A validated request body, pre-aggregated per key: the unit that is queued and applied."""

    rows: int
    sums: dict[Key, list[int]]  # key -> [bytes_tx, bytes_rx]


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding``; the size limit applies to the inflated body too (gzip bombs).

    The server runs with aiohttp's ``auto_decompress`` off so that this, with its limit, is the only inflater.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise RequestError(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r} not supported; use gzip"
        )
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise RequestError(413, "body_too_large", f"body exceeds {limit} bytes after decompression")
        out += inflater.flush()
    except zlib.error as exc:
        raise RequestError(400, "bad_gzip", f"gzip body cannot be decoded: {exc}") from None
    if not inflater.eof:
        raise RequestError(400, "bad_gzip", "gzip body is truncated")
    return out


def _check_string(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8 (lone surrogate)"
    if size > MAX_STRING_BYTES:
        return f"must be at most {MAX_STRING_BYTES} bytes of UTF-8, got {size}"
    return None


def _check_int(value: object) -> str | None:
    # bool is a subclass of int in Python; JSON true/false is not a byte count.
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, got {_json_type(value)}"
    if value < 0:
        return "must be non-negative"
    if value > INT64_MAX:
        return f"must be at most {INT64_MAX} (signed 64-bit)"
    return None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        # orjson turns integers beyond 64 bits into floats
        return "a number that is not a 64-bit integer"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def row_errors(row: object) -> list[tuple[str | None, str]]:
    """Problems of one row as (field or None, reason); empty when the row is valid."""
    if not isinstance(row, dict):
        return [(None, f"row must be an object, got {_json_type(row)}")]
    problems: list[tuple[str | None, str]] = []
    for name in FIELDS:
        if name not in row:
            problems.append((name, "is required"))
            continue
        reason = _check_string(row[name]) if name in STRING_FIELDS else _check_int(row[name])
        if reason:
            problems.append((name, reason))
    for name in row:
        if name not in FIELDS:
            problems.append((str(name)[:64], "unknown field"))
    return problems


def parse_rows(body: bytes, rows_limit: int) -> Batch:
    """Parse and validate a JSON array of rows, then aggregate it per key; raises ``RequestError``."""
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise RequestError(400, "not_an_array", f"body must be a JSON array of rows, got {_json_type(rows)}")
    if len(rows) > rows_limit:
        raise RequestError(
            413, "too_many_rows", f"{len(rows)} rows exceed the limit of {rows_limit} per request"
        )
    sums = _aggregate_valid(rows)
    if sums is not None:
        return Batch(rows=len(rows), sums=sums)
    details: list[dict] = []
    bad_rows = 0
    for index, row in enumerate(rows):
        problems = row_errors(row)
        if problems:
            bad_rows += 1
            for field_name, reason in problems:
                if len(details) < MAX_REPORTED:
                    details.append({"row": index, "field": field_name, "reason": reason})
    raise RequestError(
        400,
        "invalid_rows",
        f"{bad_rows} of {len(rows)} rows are invalid; nothing was accepted"
        + (f" (first {MAX_REPORTED} problems listed)" if len(details) >= MAX_REPORTED else ""),
        details,
    )


def _aggregate_valid(rows: list) -> dict[Key, list[int]] | None:
    """Validate and aggregate in one pass; None at the first row that is not plainly valid.

    The hot path of POST /flows: exact type checks and no per-field calls. A string of at most 64 characters
    is at most 256 bytes of UTF-8 (orjson has already refused invalid UTF-8), so only longer strings are
    encoded; anything unusual goes to :func:`row_errors` for the detailed report.
    """
    sums: dict[Key, list[int]] = {}
    for row in rows:
        if type(row) is not dict or len(row) != 6:
            return None
        try:
            src, dst, vpc = row["src_app"], row["dest_app"], row["vpc_id"]
            tx, rx, hour = row["bytes_tx"], row["bytes_rx"], row["hour"]
        except KeyError:
            return None
        if not (type(src) is str and type(dst) is str and type(vpc) is str):
            return None
        if not (type(tx) is int and type(rx) is int and type(hour) is int):
            return None
        if not (0 <= tx <= INT64_MAX and 0 <= rx <= INT64_MAX and 0 <= hour <= INT64_MAX):
            return None
        for text in (src, dst, vpc):
            if not text or (len(text) > MAX_STRING_BYTES // 4 and _check_string(text)):
                return None
        key = (hour, src, dst, vpc)
        acc = sums.get(key)
        if acc is None:
            sums[key] = [tx, rx]
        else:
            acc[0] += tx
            acc[1] += rx
    return sums


def parse_hour(raw: str | None) -> int:
    """The ``hour`` query parameter: a non-negative decimal integer within signed 64-bit."""
    if raw is None:
        raise RequestError(400, "bad_hour", "query parameter 'hour' is required (a non-negative integer)")
    if not raw.isascii() or not raw.isdigit() or int(raw) > INT64_MAX:
        raise RequestError(400, "bad_hour", f"'hour' must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def parse_limit(raw: str | None, maximum: int) -> int | None:
    """The optional ``limit`` query parameter: 1..maximum keys per page."""
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise RequestError(
            400, "bad_limit", f"'limit' must be an integer from 1 to {maximum}, got {raw[:40]!r}"
        )
    return int(raw)
