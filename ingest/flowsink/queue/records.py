"""On-disk record format of the persistent queue, and the scanner that validates records in a segment.

A record is a fixed 36-byte header followed by the exporter address and the raw datagram:

    magic u32 | source_len u16 | source_port u16 | payload_len u32 | seq u64 | arrival_ns i64 |
    body_crc u32 | header_crc u32 | source bytes | payload bytes

``header_crc`` covers the 32 bytes before it, so a reader can trust ``payload_len`` before the body is
complete: a valid header with a short body at the end of the newest segment is a write in progress (wait),
while an invalid header is corruption (resynchronise on the next valid record). ``body_crc`` covers
source + payload. CRC-32 comes from zlib (standard library, table-driven C): it catches torn and flipped
writes as well as CRC32C would, without a compiled dependency.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

MAGIC = 0x31515346  # b"FSQ1" little-endian: lets the resync scan find candidate record starts quickly
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IHHIQqII")
HEADER_SIZE = HEADER.size  # 36
_CRC_SPAN = HEADER_SIZE - 4
MAX_PAYLOAD = 1 << 24  # far above any UDP datagram or API batch; a larger length field is corruption
MAX_SOURCE = 255

# Outcomes of decoding at one offset.
RECORD = 0
PARTIAL = 1  # not enough bytes yet for the header, or a valid header whose body is not all there
INVALID = 2  # bad magic, header checksum or length: not a record start


class Entry(NamedTuple):
    """One queued datagram, as ``PersistentQueue.read`` returns it."""

    seq: int
    arrival_ns: int
    source: str
    payload: bytes
    source_port: int = 0


_HEAD_SIGNED = struct.Struct("<IHHIQqI")  # the header without its own checksum
_HEAD_CRC = struct.Struct("<I")


class SourceCodes(dict):
    """source str -> (its bytes, their CRC-32): an exporter's address is encoded and checksummed once."""

    def __missing__(self, source: str) -> tuple[bytes, int]:
        raw = source.encode()
        check_sizes(b"", raw)
        if (
            len(self) > 65536
        ):  # a bound, should sources ever be unbounded (they are exporters, so they are not)
            self.clear()
        self[source] = code = (raw, zlib.crc32(raw))
        return code


def encode_batch(items: Iterable[Sequence[Any]], first_seq: int, sources: SourceCodes) -> tuple[bytes, int]:
    """The bytes of ``(payload, source, arrival_ns[, source_port])`` items as records numbered from ``first_seq``.

    Returns ``(data, count)``. Written as one loop over pieces joined once: the receive path encodes every
    datagram, and function calls and intermediate copies per record cost as much as the checksums.
    """
    parts: list[bytes] = []
    add = parts.extend
    pack, pack_crc, crc32 = _HEAD_SIGNED.pack, _HEAD_CRC.pack, zlib.crc32
    seq = first_seq
    for item in items:
        if len(item) == 4:
            payload, source, arrival_ns, port = item
        else:
            payload, source, arrival_ns = item
            port = 0
        raw, source_crc = sources[source]
        size = len(payload)
        if size > MAX_PAYLOAD:
            check_sizes(payload, raw)
        head = pack(MAGIC, len(raw), port, size, seq, arrival_ns, crc32(payload, source_crc))
        add((head, pack_crc(crc32(head)), raw, payload))
        seq += 1
    return b"".join(parts), seq - first_seq


def record_size(source_len: int, payload_len: int) -> int:
    """Bytes a record with this source and payload takes on disk."""
    return HEADER_SIZE + source_len + payload_len


def check_sizes(payload: bytes, source: bytes) -> None:
    """Reject what the format cannot hold (a programming error, not bad network input)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the queue's record limit {MAX_PAYLOAD}")
    if len(source) > MAX_SOURCE:
        raise ValueError(f"source {source[:40]!r}... longer than {MAX_SOURCE} bytes")


class Decoded(NamedTuple):
    """A validated record found by ``decode_at``; ``end`` is the offset just after it."""

    seq: int
    arrival_ns: int
    source: bytes
    source_port: int
    payload: bytes
    end: int


def decode_at(data: bytes, pos: int) -> tuple[int, Decoded | None, bool]:
    """Decode the record starting at ``data[pos]``.

    Returns ``(outcome, record, body_bad)``: ``(RECORD, rec, False)`` for a valid record;
    ``(PARTIAL, None, False)`` when more bytes are needed; ``(INVALID, None, False)`` when ``pos`` is not a
    record start; ``(INVALID, None, True)`` when the header is valid but the body checksum fails, in which case
    the caller may skip exactly the header's length.
    """
    size = len(data)
    if size - pos < HEADER_SIZE:
        if data[pos : pos + 4] and not MAGIC_BYTES.startswith(bytes(data[pos : pos + 4])):
            return INVALID, None, False
        return PARTIAL, None, False
    magic, source_len, port, payload_len, seq, arrival_ns, body_crc, header_crc = HEADER.unpack_from(
        data, pos
    )
    if magic != MAGIC or payload_len > MAX_PAYLOAD:
        return INVALID, None, False
    if zlib.crc32(data[pos : pos + _CRC_SPAN]) != header_crc:
        return INVALID, None, False
    body_start = pos + HEADER_SIZE
    end = body_start + source_len + payload_len
    if end > size:
        return PARTIAL, None, False
    source = data[body_start : body_start + source_len]
    payload = data[body_start + source_len : end]
    if zlib.crc32(payload, zlib.crc32(source)) != body_crc:
        return INVALID, None, True
    return RECORD, Decoded(seq, arrival_ns, source, port, payload, end), False


def header_arrival_ns(data: bytes) -> int | None:
    """Arrival time in a valid record header at the start of ``data``, else None (a cheap peek for stats)."""
    if len(data) < HEADER_SIZE:
        return None
    magic, _, _, payload_len, _, arrival_ns, _, header_crc = HEADER.unpack_from(data, 0)
    if magic != MAGIC or payload_len > MAX_PAYLOAD or zlib.crc32(data[:_CRC_SPAN]) != header_crc:
        return None
    return arrival_ns


def last_record_seq(data: bytes) -> int | None:
    """Seq of the last complete, valid record in ``data`` (a segment's tail), searching backwards; else None."""
    pos = data.rfind(MAGIC_BYTES)
    while pos != -1:
        outcome, rec, _ = decode_at(data, pos)
        if outcome == RECORD:
            return rec.seq
        pos = data.rfind(MAGIC_BYTES, 0, pos)
    return None


def body_end(data: bytes, pos: int) -> int:
    """End offset of a record whose header at ``pos`` is valid (used to skip a record with a bad body)."""
    _, source_len, _, payload_len, *_ = HEADER.unpack_from(data, pos)
    return pos + HEADER_SIZE + source_len + payload_len


def resync(data: bytes, pos: int) -> int:
    """Offset of the next valid, complete record after ``pos``, or -1 if there is none in ``data``."""
    candidate = data.find(MAGIC_BYTES, pos + 1)
    while candidate != -1:
        outcome, _, _ = decode_at(data, candidate)
        if outcome == RECORD:
            return candidate
        candidate = data.find(MAGIC_BYTES, candidate + 1)
    return -1
