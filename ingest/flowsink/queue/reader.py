"""The consuming side of the persistent queue: tails segments from the checkpoint on, validates, acknowledges."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
import zlib
from collections import deque
from pathlib import Path

from flowsink.log import RateLimitedLog, get_logger
from flowsink.queue import records
from flowsink.queue.records import Entry
from flowsink.queue.segments import (
    list_segments,
    lock_dir,
    open_checkpoint,
    read_checkpoint,
    segment_name,
    write_checkpoint,
)

log = get_logger("flowsink.queue")
_skips_log = RateLimitedLog(log)
_READ_CHUNK = 1 << 20


class SegmentReader:
    """The consuming side: tails the segments from the checkpoint on, validates records, acknowledges."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock_fd = lock_dir(directory, "reader.lock")
        self.acked = read_checkpoint(directory)
        self._checkpoint_fd = -1  # opened at the first ack (creating it may fail on a full disk; retried)
        self.cursor = self.acked
        self.torn = 0
        self.corrupt = 0
        self.skipped_bytes = 0
        self.read_entries = 0
        self.read_bytes = 0
        self._fd = -1
        self._first_seq = 0
        self._offset = 0
        self._need = _READ_CHUNK
        self._sources: dict[bytes, str] = {}
        self._unacked: deque[tuple[int, int, int]] = deque()  # (seq, arrival_ns, bytes) read, not yet acked
        # read, ack and stats may come from different threads of the worker (e.g. ack after an async bulk)
        self._lock = threading.Lock()

    def read(self, max_entries: int, timeout_s: float) -> list[Entry]:
        deadline = time.monotonic() + timeout_s
        delay = 0.001
        while True:
            with self._lock:  # never held while sleeping: another thread may ack meanwhile
                out = self._read_available(max(1, max_entries))
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.02)

    def _read_available(self, max_entries: int) -> list[Entry]:
        out: list[Entry] = []
        while len(out) < max_entries:
            if self._fd < 0 and not self._open_next():
                break
            if self._parse(out, max_entries) or len(out) >= max_entries:
                continue
            # No progress: the writer is mid-record, or this segment ended and a newer one exists.
            if not self._newer_segment_exists():
                break
            if self._parse(out, max_entries):
                continue  # the writer finished this segment after our last look
            self._skip_torn_tail()
        return out

    def _open_next(self) -> bool:
        segments = list_segments(self.directory)
        if not segments:
            return False
        if self._first_seq == 0:
            target = self.cursor + 1
            chosen = segments[0]
            for segment in segments:
                if segment[0] <= target:
                    chosen = segment
        else:
            newer = [segment for segment in segments if segment[0] > self._first_seq]
            if not newer:
                return False
            chosen = newer[0]
        try:
            self._fd = os.open(chosen[1], os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # acknowledged and deleted meanwhile: the next call lists again
        self._first_seq = chosen[0]
        self._offset = 0
        self._need = _READ_CHUNK
        # A segment acknowledged while it was still the newest could not be deleted then; now it can. Without
        # this a full queue whose entries are all acknowledged would wait for an ack that never comes.
        self._delete_done_segments(segments, self.acked)
        return True

    def _newer_segment_exists(self) -> bool:
        return any(first_seq > self._first_seq for first_seq, _ in list_segments(self.directory))

    def _close_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1

    def _skip_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size > self._offset:
            self.torn += 1
            self.skipped_bytes += size - self._offset
            _skips_log.warning(
                "torn",
                "queue %s: skipped a torn tail of %d bytes in segment %s",
                self.directory,
                size - self._offset,
                segment_name(self._first_seq),
            )
        self._close_segment()

    def _parse(self, out: list[Entry], max_entries: int) -> int:
        """Decode records from the current offset into ``out``; returns the bytes consumed (0: no progress)."""
        data = os.pread(self._fd, self._need, self._offset)
        before = len(out)
        pos = 0
        size = len(data)
        cursor = self.cursor
        sources = self._sources
        unpack, crc32 = records.HEADER.unpack_from, zlib.crc32
        head_size, magic_ok, crc_span = records.HEADER_SIZE, records.MAGIC, records.HEADER_SIZE - 4
        unacked = self._unacked
        payload_bytes = 0
        while pos < size and len(out) < max_entries:
            # Fast path, inlined: a complete record whose checksums match (decode_at handles everything else).
            if size - pos >= head_size:
                magic, source_len, port, payload_len, seq, arrival_ns, body_crc, head_crc = unpack(data, pos)
                body = pos + head_size
                payload_start = body + source_len
                end = payload_start + payload_len
                if magic == magic_ok and end <= size and crc32(data[pos : pos + crc_span]) == head_crc:
                    source_raw = data[body:payload_start]
                    payload = data[payload_start:end]
                    if crc32(payload, crc32(source_raw)) != body_crc:
                        self._count_corrupt(end - pos)
                        pos = end
                        continue
                    start, pos = pos, end
                    if seq <= cursor:
                        continue
                    cursor = seq
                    source = sources.get(source_raw)
                    if source is None:
                        source = sources[source_raw] = source_raw.decode(errors="replace")
                    out.append(Entry(seq, arrival_ns, source, payload, port))
                    unacked.append((seq, arrival_ns, end - start))
                    payload_bytes += payload_len
                    continue
            outcome, rec, body_bad = records.decode_at(data, pos)
            if outcome == records.RECORD:  # unreachable in practice: the fast path takes every valid record
                pos = rec.end
            elif body_bad:
                end = records.body_end(data, pos)
                self._count_corrupt(end - pos)
                pos = end
            elif outcome == records.PARTIAL:
                if len(data) == self._need and pos == 0:
                    self._need *= 2  # a record larger than the read size: read more next time
                break
            else:
                found = self._resync(pos, data)
                if found < 0:
                    break
                self._count_corrupt(found - pos)
                data = os.pread(self._fd, self._need, self._offset + found)
                self._offset += found
                pos, size = 0, len(data)
        produced = len(out) - before
        self.read_entries += produced
        self.read_bytes += payload_bytes
        self.cursor = cursor
        self._offset += pos
        return pos or produced

    def _resync(self, pos: int, data: bytes) -> int:
        """Offset (relative to ``self._offset``) of the next valid record after a bad one, or -1."""
        rest = os.pread(self._fd, max(os.fstat(self._fd).st_size - self._offset, len(data)), self._offset)
        return records.resync(rest, pos)

    def _count_corrupt(self, skipped: int) -> None:
        self.corrupt += 1
        self.skipped_bytes += skipped
        _skips_log.warning(
            "corrupt",
            "queue %s: skipped %d corrupt bytes in segment %s",
            self.directory,
            skipped,
            segment_name(self._first_seq),
        )

    def ack(self, seq: int) -> None:
        with self._lock:
            self._ack(seq)

    def _ack(self, seq: int) -> None:
        if seq <= self.acked:
            return
        # Segments go before the checkpoint is written: they hold nothing above ``seq``, and deleting them
        # first is what lets a reader on a full disk make room at all.
        done = self._delete_done_segments(list_segments(self.directory), seq)
        self.acked = seq
        self.cursor = max(self.cursor, seq)
        unacked = self._unacked
        while unacked and unacked[0][0] <= seq:
            unacked.popleft()
        try:
            if self._checkpoint_fd < 0:
                self._checkpoint_fd = open_checkpoint(self.directory)
            write_checkpoint(self._checkpoint_fd, seq, durable=bool(done))
        except OSError as exc:
            # Kept in memory; a restart before the next successful write replays from the older checkpoint.
            _skips_log.warning("checkpoint", "queue %s: cannot write the checkpoint: %s", self.directory, exc)

    @staticmethod
    def _delete_done_segments(segments: list[tuple[int, Path]], acked: int) -> int:
        """Delete every segment but the newest whose records are all <= ``acked``; returns how many."""
        done = [
            path for (_, path), (next_first, _) in itertools.pairwise(segments) if next_first <= acked + 1
        ]
        for path in done:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return len(done)

    def depth(self, segments: list[tuple[int, Path]], sizes: list[int]) -> tuple[int, int] | None:
        with self._lock:
            return self._depth(segments, sizes)

    def _depth(self, segments: list[tuple[int, Path]], sizes: list[int]) -> tuple[int, int] | None:
        """(oldest unacknowledged arrival_ns or 0, unacknowledged bytes) from the read position, without scanning.

        None when the reader has not opened a segment yet (the caller then scans).
        """
        if self._fd < 0:
            return None
        unacked = self._unacked
        ahead = os.fstat(self._fd).st_size - self._offset
        ahead += sum(
            size for (first_seq, _), size in zip(segments, sizes, strict=True) if first_seq > self._first_seq
        )
        pending = sum(item[2] for item in unacked)
        if unacked:
            return unacked[0][1], pending + ahead
        peeked = records.header_arrival_ns(os.pread(self._fd, records.HEADER_SIZE, self._offset))
        return peeked or 0, ahead

    def rewind(self) -> None:
        with self._lock:
            self._unacked.clear()
            self.cursor = self.acked
            self._close_segment()
            self._first_seq = 0

    def close(self) -> None:
        with self._lock:
            self._close_segment()
            if self._checkpoint_fd >= 0:
                os.close(self._checkpoint_fd)
            os.close(self.lock_fd)
