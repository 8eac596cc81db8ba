"""The appending side of the persistent queue: the newest segment, the size bound, the fsync policy."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flowsink.log import get_logger
from flowsink.queue import records
from flowsink.queue.segments import (
    DISK_FULL_ERRNOS,
    QueueFull,
    fsync_dir,
    last_valid_seq,
    list_segments,
    lock_dir,
    read_checkpoint,
    segment_name,
)
from flowsink.queue.settings import QueueSettings

log = get_logger("flowsink.queue")
_FULL_RESCAN_S = 0.05  # while full, look for segments the reader freed at most this often


class SegmentWriter:
    """The appending side: owns the newest segment, the size bound and the fsync policy."""

    def __init__(self, directory: Path, settings: QueueSettings) -> None:
        self.directory = directory
        self.max_bytes = settings.max_bytes
        self.segment_bytes = min(settings.segment_bytes, settings.max_bytes)
        self.fsync_interval_s = settings.fsync_interval_ms / 1000.0
        self.fsync_bytes = settings.fsync_bytes
        self.strict = settings.fsync_interval_ms == 0
        self.lock_fd = lock_dir(self.directory, "writer.lock")
        self.appended = 0
        self.appended_bytes = 0
        self._mutex = threading.Lock()
        self._fd = -1
        self._current_path: Path | None = None
        self._segment_size = 0
        self._unsynced = 0
        self._unsynced_since = 0.0  # monotonic time of the oldest append not yet handed to fdatasync
        self._syncing_since = 0.0
        self._syncing_bytes = 0
        self._sources = records.SourceCodes()
        self._last_rescan = 0.0
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._recover()
        self._sync_thread: threading.Thread | None = None
        if not self.strict:
            self._sync_thread = threading.Thread(target=self._sync_loop, name="queue-fsync", daemon=True)
            self._sync_thread.start()

    def _recover(self) -> None:
        segments = list_segments(self.directory)
        next_seq = read_checkpoint(self.directory) + 1
        if segments:
            first_seq, path = segments[-1]
            next_seq = max(next_seq, first_seq, last_valid_seq(path) + 1)
            if first_seq == next_seq and path.stat().st_size > 0:
                # The newest segment holds no valid record (a crash right after creating it): nothing to keep.
                log.warning(
                    "queue %s: segment %s has no valid record; truncating it", self.directory, path.name
                )
                os.truncate(path, 0)
        self.next_seq = next_seq
        self._closed_bytes = sum(p.stat().st_size for _, p in segments)
        self._open_segment_if_needed(force_new=True)

    def _open_segment_if_needed(self, force_new: bool = False) -> None:
        """Open a segment named after the next seq (re-using an empty newest one after a restart)."""
        if self._fd >= 0 and not force_new:
            return
        path = self.directory / segment_name(self.next_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        size = os.fstat(fd).st_size
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._current_path = path
        self._closed_bytes -= size  # counted above when re-using it after a restart
        self._segment_size = size
        fsync_dir(self.directory)

    def _rotate(self) -> None:
        # The old segment is made durable before the new one exists, so that after a power loss no older
        # segment ends in a hole while a newer one has data (the "segment boundary" guarantee).
        os.fdatasync(self._fd)
        self._unsynced, self._unsynced_since = 0, 0.0
        os.close(self._fd)
        self._fd = -1
        self._closed_bytes += self._segment_size
        self._segment_size = 0
        try:
            self._open_segment_if_needed()
        except OSError as exc:
            self._fd = -1
            raise self._full_from(exc) from exc

    def _used_bytes(self) -> int:
        return self._closed_bytes + self._segment_size

    def _refresh_closed_bytes(self) -> None:
        """Count again what the older segments take: the reader deletes them once acknowledged."""
        total = 0
        for _, path in list_segments(self.directory):
            if path == self._current_path:
                continue
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        self._closed_bytes = total

    def _full_from(self, exc: OSError) -> QueueFull:
        if exc.errno in DISK_FULL_ERRNOS:
            return QueueFull("disk_full", os.strerror(exc.errno))
        return QueueFull("io_error", f"{exc.__class__.__name__}: {exc}")

    def write(self, items: Iterable[Sequence[Any]]) -> int:
        items = items if isinstance(items, list) else list(items)
        if not items:
            return self.next_seq - 1
        with self._mutex:  # seqs are assigned inside: appends from several threads stay unique and ordered
            try:
                return self._write_locked(items)
            except OSError as exc:  # opening, rotating or syncing a segment failed: a refusal, never a crash
                raise self._full_from(exc) from exc

    def _write_locked(self, items: list[Sequence[Any]]) -> int:
        data, count = records.encode_batch(items, self.next_seq, self._sources)
        size = len(data)
        if self._fd < 0:
            self._open_segment_if_needed()
        if self._used_bytes() + size > self.max_bytes:
            now = time.monotonic()
            if now - self._last_rescan >= _FULL_RESCAN_S:
                self._last_rescan = now
                self._refresh_closed_bytes()
            if self._used_bytes() + size > self.max_bytes:
                if self._segment_size > 0:
                    # Only older segments can be deleted: close this one so that acknowledging it frees it.
                    self._rotate()
                raise QueueFull("full", f"{self._used_bytes()} of {self.max_bytes} bytes on disk")
        if self._segment_size > 0 and self._segment_size + size > self.segment_bytes:
            self._rotate()
        self._write_all(data)
        self._segment_size += size
        self.next_seq += count
        self.appended += count
        self.appended_bytes += size
        if not self._unsynced:
            self._unsynced_since = time.monotonic()
        self._unsynced += size
        if self.strict:
            os.fdatasync(self._fd)
            self._unsynced, self._unsynced_since = 0, 0.0
        elif self.fsync_bytes and self._unsynced >= self.fsync_bytes:
            self._wake.set()
        return self.next_seq - 1

    def _write_all(self, data: bytes) -> None:
        """One write() (looping only on a short write); on failure the segment is cut back to where it was."""
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            if written:
                try:
                    os.ftruncate(self._fd, self._segment_size)
                except OSError:
                    # Cannot cut the half record off: leave it as a torn tail and continue in a new segment.
                    os.close(self._fd)
                    self._fd = -1
                    self._closed_bytes += self._segment_size + written
                    self._segment_size = 0
            raise self._full_from(exc) from exc

    def sync(self) -> None:
        with self._mutex:
            fd = os.dup(self._fd) if self._fd >= 0 else -1
            pending = self._unsynced
            self._unsynced = 0
            self._syncing_since, self._unsynced_since = self._unsynced_since, 0.0
            self._syncing_bytes = pending
        try:
            if fd >= 0 and pending:
                os.fdatasync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
            self._syncing_since, self._syncing_bytes = 0.0, 0

    def durability_lag(self) -> tuple[int, float]:
        """(bytes appended but not yet known durable, seconds the oldest of them has waited): the real window."""
        started = [t for t in (self._syncing_since, self._unsynced_since) if t]
        lag = time.monotonic() - min(started) if started else 0.0
        return self._unsynced + self._syncing_bytes, lag

    def _sync_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.fsync_interval_s)
            self._wake.clear()
            try:
                self.sync()
            except OSError as exc:
                log.error("queue %s: fdatasync failed: %s", self.directory, exc)

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=5)
        with self._mutex:
            if self._fd >= 0:
                try:
                    os.fdatasync(self._fd)
                except OSError as exc:
                    log.error("queue %s: fdatasync at close failed: %s", self.directory, exc)
                os.close(self._fd)
                self._fd = -1
        os.close(self.lock_fd)
