"""Disk-backed persistent queue: append-only segment files plus an acknowledgement checkpoint.

One writer process (a UDP receiver, or the flows API) appends; one reader process (a pipeline worker) reads,
acknowledges and deletes fully acknowledged segments. They share nothing but the directory
(layout in ``segments.py``).

The reader tails the newest segment and validates each record by checksum (see ``records.py``), so it stops
at a record the writer has not finished and resumes when it has. A segment is final once a newer one exists:
the writer only starts a new segment after it has finished (and fsynced) the previous one, and it always
starts a new one after a restart, so an unfinished record at the end of an older segment is a torn tail.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from flowsink.queue.reader import SegmentReader
from flowsink.queue.records import Entry
from flowsink.queue.segments import (
    QueueFull,
    QueueLocked,
    first_unacked,
    list_segments,
    read_checkpoint,
    tail_seq,
)
from flowsink.queue.settings import QueueSettings
from flowsink.queue.writer import SegmentWriter

__all__ = ["Entry", "PersistentQueue", "QueueFull", "QueueLocked", "open_partition"]


class PersistentQueue:
    """A bounded, disk-backed FIFO of datagrams for one writer process and one reader process.

    The roles are taken lazily: the first ``append``/``append_many``/``sync`` makes this object the
    directory's writer, the first ``read``/``ack`` its reader (each guarded by an flock, so a second writer or
    reader gets ``QueueLocked``). ``stats`` works in any process.

    Durability: every append reaches the kernel with one ``write()`` before it returns, so a ``kill -9`` of the
    writer loses nothing that ``append`` returned for. A background thread ``fdatasync``s the newest segment
    every ``fsync_interval_ms`` and as soon as ``fsync_bytes`` are unsynced, which bounds what a power loss or
    kernel crash can take. ``fsync_interval_ms=0`` syncs inside every append instead (slow, strict).
    """

    def __init__(
        self, directory: str | os.PathLike[str], settings: QueueSettings | None = None, **overrides: Any
    ) -> None:
        """``settings`` (default: ``QueueSettings()``), with keyword ``overrides`` of its fields (tests)."""
        settings = dataclasses.replace(settings or QueueSettings(), **overrides)
        if settings.max_bytes <= 0 or settings.segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        if settings.fsync_interval_ms < 0 or settings.fsync_bytes < 0:
            raise ValueError("fsync_interval_ms and fsync_bytes must not be negative")
        settings.segment_bytes = min(settings.segment_bytes, settings.max_bytes)
        self.settings = settings
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = settings.max_bytes
        self._writer: SegmentWriter | None = None
        self._reader: SegmentReader | None = None
        self._closed = False
        self._roles_lock = threading.Lock()

    # -- writer side -------------------------------------------------------------------------------------------
    def _writer_side(self) -> SegmentWriter:
        return self._writer or self._take_role(
            "_writer", lambda: SegmentWriter(self.directory, self.settings)
        )

    def append(self, payload: bytes, source: str, arrival_ns: int, source_port: int = 0) -> int:
        """Append one datagram; returns its seq. Raises ``QueueFull`` when ``max_bytes`` or the disk is full."""
        return self._writer_side().write([(payload, source, arrival_ns, source_port)])

    def append_many(self, items: Iterable[Sequence[Any]]) -> int:
        """Append ``(payload, source, arrival_ns[, source_port])`` tuples with one write; returns the last seq.

        All or nothing: on ``QueueFull`` none of them was stored.
        """
        return self._writer_side().write(items)

    def sync(self) -> None:
        """Make everything appended so far durable (fdatasync) before returning."""
        self._writer_side().sync()

    def claim_writer(self) -> None:
        """Become the directory's writer now rather than at the first append; ``QueueLocked`` if taken."""
        self._writer_side()

    # -- reader side -------------------------------------------------------------------------------------------
    def _reader_side(self) -> SegmentReader:
        return self._reader or self._take_role("_reader", lambda: SegmentReader(self.directory))

    def _take_role(self, attribute: str, open_side: Callable[[], Any]) -> Any:
        """Open the writer or reader side once, even when several threads ask at the same time."""
        with self._roles_lock:
            if self._closed:
                raise ValueError("queue is closed")
            if getattr(self, attribute) is None:
                setattr(self, attribute, open_side())
            return getattr(self, attribute)

    def read(self, max_entries: int = 1000, timeout_s: float = 0.0) -> list[Entry]:
        """Up to ``max_entries`` entries after the read cursor, in append order.

        Waits up to ``timeout_s`` for the first one; returns an empty list when none arrived.
        """
        return self._reader_side().read(max_entries, timeout_s)

    def ack(self, seq: int) -> None:
        """Everything <= seq is done: persist it in the checkpoint and delete fully acknowledged segments."""
        self._reader_side().ack(seq)

    def rewind(self) -> None:
        """Move the read cursor back to the checkpoint (unacknowledged entries are read again)."""
        self._reader_side().rewind()

    # -- both --------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Depth (entries, bytes), oldest entry's age, skipped torn/corrupt records, segments, disk bytes."""
        segments = list_segments(self.directory)
        sizes = []
        for _, path in segments:
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        acked = self._reader.acked if self._reader else read_checkpoint(self.directory)
        last_seq = self._writer.next_seq - 1 if self._writer is not None else tail_seq(segments)
        reader = self._reader
        writer = self._writer
        depth = reader.depth(segments, sizes) if reader else None
        lag = writer.durability_lag() if writer else (0, 0.0)
        if depth is None:
            oldest_ns, unacked_offset, unacked_index = first_unacked(segments, acked)
            depth_bytes = sum(sizes[unacked_index:]) - unacked_offset if unacked_index < len(sizes) else 0
        else:
            oldest_ns, depth_bytes = depth
        return {
            "depth_entries": max(0, last_seq - acked),
            "depth_bytes": max(0, depth_bytes),
            "oldest_arrival_ns": oldest_ns,
            "oldest_age_seconds": max(0.0, (time.time_ns() - oldest_ns) / 1e9) if oldest_ns else 0.0,
            "last_seq": last_seq,
            "acked_seq": acked,
            "segments": len(segments),
            "disk_bytes": sum(sizes),
            "max_bytes": self.max_bytes,
            "torn_records": reader.torn if reader else 0,
            "corrupt_records": reader.corrupt if reader else 0,
            "skipped_bytes": reader.skipped_bytes if reader else 0,
            "appended_entries": writer.appended if writer else 0,
            "appended_bytes": writer.appended_bytes if writer else 0,
            "unsynced_bytes": lag[0],
            "sync_lag_seconds": lag[1],
            "read_entries": reader.read_entries if reader else 0,
            "read_bytes": reader.read_bytes if reader else 0,
        }

    def close(self) -> None:
        """Sync and close the writer side, close the reader side, release the locks."""
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> PersistentQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_partition(
    settings: QueueSettings, directory: str | os.PathLike[str], partitions: int = 1
) -> PersistentQueue:
    """The queue of one partition of a node (``partitions`` of them share ``settings.max_bytes``)."""
    return PersistentQueue(directory, settings.share(partitions))
