"""Segment files, the acknowledgement checkpoint and the directory locks of the persistent queue.

<dir>/00000000000000000001.seg   records with seq >= 1 (the name is the first seq the segment may hold)
<dir>/00000000000000052113.seg   the newest segment: the only one the writer appends to
<dir>/checkpoint                 highest acknowledged seq (written by the reader, overwritten in place)
<dir>/writer.lock, reader.lock   flock()s that keep a second writer or reader out
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from flowsink.log import get_logger
from flowsink.queue import records

log = get_logger("flowsink.queue")

SEGMENT_SUFFIX = ".seg"
CHECKPOINT = "checkpoint"
_CHECKPOINT = struct.Struct("<IQI")  # magic, acked seq, crc of the first 12 bytes
_CHECKPOINT_MAGIC = 0x4B435346  # b"FSCK"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_TAIL_WINDOW = 256 * 1024


class QueueFull(Exception):
    """The queue cannot take this append; ``reason`` is a short metric label ("full", "disk_full", "io_error")."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class QueueLocked(RuntimeError):
    """Another process already writes (or reads) this queue directory."""


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment in the directory, oldest first."""
    found = []
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.endswith(SEGMENT_SUFFIX) and name[: -len(SEGMENT_SUFFIX)].isdigit():
                found.append((int(name[: -len(SEGMENT_SUFFIX)]), Path(entry.path)))
    found.sort()
    return found


def read_checkpoint(directory: Path) -> int:
    """Highest acknowledged seq, 0 if there is no (valid) checkpoint."""
    try:
        data = (directory / CHECKPOINT).read_bytes()
    except FileNotFoundError:
        return 0
    if not data:
        return 0  # created, never written: nothing acknowledged yet
    if len(data) != _CHECKPOINT.size:
        log.warning("queue %s: ignoring a checkpoint of %d bytes", directory, len(data))
        return 0
    magic, acked, crc = _CHECKPOINT.unpack(data)
    if magic != _CHECKPOINT_MAGIC or zlib.crc32(data[:12]) != crc:
        log.warning("queue %s: ignoring a corrupt checkpoint", directory)
        return 0
    return acked


def open_checkpoint(directory: Path) -> int:
    """The checkpoint file's descriptor, for ``write_checkpoint``."""
    return os.open(directory / CHECKPOINT, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def write_checkpoint(fd: int, acked: int, durable: bool) -> None:
    """Overwrite the checkpoint in place.

    In place rather than write-and-rename: rewriting 16 bytes in an existing block needs no free space, so the
    reader can still acknowledge (and so free segments) when the disk is full. A torn write fails the checksum
    and reads as 0, which replays the remaining segments: duplicates the sink's deterministic ids absorb.
    """
    head = struct.pack("<IQ", _CHECKPOINT_MAGIC, acked)
    os.pwrite(fd, head + struct.pack("<I", zlib.crc32(head)), 0)
    if durable:
        os.fdatasync(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_dir(directory: Path, name: str) -> int:
    fd = os.open(directory / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        role = name.split(".")[0]
        raise QueueLocked(f"queue {directory}: another process is its {role}") from None
    return fd


def iter_valid_records(
    data: bytes, on_skip: Callable[[str, int], None] | None = None
) -> Iterator[tuple[int, records.Decoded]]:
    """(offset, record) of every valid record in a segment's bytes, skipping damaged stretches.

    ``on_skip(kind, nbytes)`` hears of each skipped stretch: "corrupt" (followed by a valid record) or "tail"
    (nothing valid after it: torn, or still being written if this is the newest segment).
    """
    pos = 0
    while pos < len(data):
        outcome, rec, body_bad = records.decode_at(data, pos)
        if outcome == records.RECORD:
            yield pos, rec
            pos = rec.end
            continue
        end = records.body_end(data, pos) if body_bad else records.resync(data, pos)
        if on_skip is not None:
            on_skip("corrupt" if end >= 0 else "tail", (end if end >= 0 else len(data)) - pos)
        if end < 0:
            return
        pos = end


def last_valid_seq(path: Path) -> int:
    """Seq of the last valid record in a segment (0 if none); used by a writer that restarts."""
    last = 0
    for _, rec in iter_valid_records(path.read_bytes()):
        last = rec.seq
    return last


def _last_seq_near_end(path: Path) -> int:
    """Last seq in a segment, from its last ``_TAIL_WINDOW`` bytes when they hold a whole record (cheap)."""
    with open(path, "rb") as segment:
        size = os.fstat(segment.fileno()).st_size
        segment.seek(max(0, size - _TAIL_WINDOW))
        seq = records.last_record_seq(segment.read())
    if seq is not None:
        return seq
    return last_valid_seq(path) if size > _TAIL_WINDOW else 0


def tail_seq(segments: list[tuple[int, Path]]) -> int:
    """Last seq on disk, seen from a process that is not the writer."""
    for first_seq, path in reversed(segments):
        try:
            last = _last_seq_near_end(path)
        except FileNotFoundError:
            continue
        if last:
            return last
        if first_seq > 1:
            return first_seq - 1
    return 0


def first_unacked(segments: list[tuple[int, Path]], acked: int) -> tuple[int, int, int]:
    """(arrival_ns, offset, segment index) of the first record after ``acked``; (0, 0, len) if there is none."""
    start = 0
    for index, (first_seq, _) in enumerate(segments):
        if first_seq <= acked + 1:
            start = index
    for index in range(start, len(segments)):
        try:
            data = segments[index][1].read_bytes()
        except FileNotFoundError:
            continue
        for pos, rec in iter_valid_records(data):
            if rec.seq > acked:
                return rec.arrival_ns, pos, index
    return 0, 0, len(segments)
