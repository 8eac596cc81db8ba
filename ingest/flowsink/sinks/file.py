"""The file output: one ECS document per line (NDJSON) to a file or to stdout, rotated by size.

``output: file`` lets ``flowsink run`` be tried with no Elasticsearch at all, and feeds tools that read JSON
lines (jq, Vector, a log shipper), like goflow2's file transport. Each line is the document exactly as
``flowsink decode`` prints it: ``{"_id": <deterministic id>, <the ECS fields>}``.

Every pipeline worker of a node may write to the same file: a batch is one ``write()`` on a descriptor opened
with ``O_APPEND`` under an ``flock`` of the file's lock file, which also serialises rotation, so lines never
interleave and no worker writes into a file another has just rotated away. With ``fsync`` on (the default for
files) a batch is on disk before the worker acknowledges its datagrams; stdout is a stream and is only flushed.
Rotation: when the file passes ``max_bytes`` it becomes ``<path>.1`` (``.1`` -> ``.2`` ..., the oldest beyond
``keep`` deleted). Python's ``RotatingFileHandler`` does the same for one process but neither locks across
processes nor fsyncs, which is why this is written here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsink.errors import ConfigError, UserError
from flowsink.log import RateLimitedLog, get_logger
from flowsink.settings import MIB, setting
from flowsink.sinks.base import OutputContext, SinkClosed, SinkOutcome

log = get_logger(__name__)

STDOUT = "-"
# A write to a pipe of at most PIPE_BUF bytes is atomic; larger ones may interleave with another process's.
_PIPE_BUF = 4096


@dataclass
class FileSettings:
    """The ``file`` section."""

    path: str = setting(
        "", help="file the documents are appended to; '-' is stdout (empty: <run_dir>/flows.ndjson)"
    )
    max_bytes: int = setting(
        100 * MIB, min=0, reloadable=True, help="rotate when the file passes this size (0: never)"
    )
    keep: int = setting(
        5, min=0, max=1000, reloadable=True, help="rotated files kept (<path>.1 is the newest)"
    )
    fsync: bool = setting(True, help="fsync each batch before its datagrams are acknowledged (files only)")

    def validate(self) -> None:
        if self.path.endswith(os.sep):
            raise ConfigError(f"file.path: expected a file, got the folder {self.path!r}")


def resolve_path(settings: FileSettings, context: OutputContext) -> str:
    return settings.path or str(Path(context.run_dir) / "flows.ndjson")


def document_line(line: bytes) -> bytes:
    """A bulk line (``action\\nsource\\n``) as the document ``flowsink decode`` prints: its ``_id`` first.

    The action line is ``{"<op>":{"_index":"...","_id":"..."}}`` with no other key after the id (flowsink.bulk
    and the C writers write it so), so the id's JSON text is the bytes between ``"_id":`` and ``}}``.
    """
    cut = line.index(b"\n")
    source = line[cut + 1 : -1] if line.endswith(b"\n") else line[cut + 1 :]
    at = line.rfind(b',"_id":', 0, cut)
    if at < 0:
        return source + b"\n"
    doc_id = line[at + 7 : cut - 2]
    if source == b"{}":
        return b'{"_id":%b}\n' % doc_id
    return b'{"_id":%b,%b\n' % (doc_id, source[1:])


class FileSink:
    """Appends documents to a file (or stdout), rotating by size; see the module's text."""

    name = "file"

    def __init__(self, settings: FileSettings, context: OutputContext | None = None) -> None:
        # here, not at the top: the configuration imports this module for FileSettings before `flowsink run`
        # has chosen the metrics' multiprocess mode (see flowsink.metrics)
        from flowsink import metrics

        self._metrics = metrics
        self.settings = settings
        self.path = resolve_path(settings, context or OutputContext())
        self._lock = threading.Lock()
        self._closed = False
        self._errors = RateLimitedLog(log)
        self._fd = -1
        self._inode = -1
        if self.path != STDOUT:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)

    # -- the seam -----------------------------------------------------------------------------------------

    def write(self, lines: Sequence[bytes]) -> SinkOutcome:
        if self._closed:
            raise SinkClosed("file output is closed")
        if not lines:
            return SinkOutcome()
        body = b"".join(document_line(line) for line in lines)
        with self._lock:
            try:
                if self.path == STDOUT:
                    self._write_stdout(body)
                else:
                    self._write_file(body)
            except OSError as exc:
                # A full disk or a vanished folder: the batch stays queued and is offered again.
                reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io_error"
                self._metrics.FILE_WRITE_ERRORS.labels(reason=reason).inc()
                self._errors.error(
                    f"file:{reason}", "cannot write %s: %s; the batch stays queued", self.path, exc
                )
                return SinkOutcome(retry_later=list(lines))
        self._metrics.FILE_DOCUMENTS_WRITTEN.inc(len(lines))
        self._metrics.FILE_WRITTEN_BYTES.inc(len(body))
        return SinkOutcome(written=len(lines))

    def reload(self, sections: Mapping[str, Any]) -> list[str]:
        settings = sections[self.name]
        applied = []
        for name in ("max_bytes", "keep"):
            if getattr(self.settings, name) != getattr(settings, name):
                setattr(self.settings, name, getattr(settings, name))
                applied.append(f"file.{name}")
        return applied

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self.path != STDOUT:
                os.close(self._lock_fd)

    # -- writing ------------------------------------------------------------------------------------------

    def _write_stdout(self, body: bytes) -> None:
        out = sys.stdout.buffer
        if len(body) <= _PIPE_BUF:
            out.write(body)
        else:  # whole lines per write, each write at most PIPE_BUF where the lines allow
            start = 0
            while start < len(body):
                end = body.rfind(b"\n", start, start + _PIPE_BUF) + 1
                if end <= start:
                    end = body.index(b"\n", start) + 1
                out.write(body[start:end])
                start = end
        out.flush()

    def _write_file(self, body: bytes) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            fd = self._current_fd()
            _write_all(fd, body)
            if self.settings.fsync:
                os.fdatasync(fd)
            if self.settings.max_bytes and os.fstat(fd).st_size >= self.settings.max_bytes:
                self._rotate()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _current_fd(self) -> int:
        """The open file, reopened when another worker rotated it (the path now names a new file)."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = -2
        if self._fd < 0 or inode != self._inode:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._inode = os.fstat(self._fd).st_ino
        return self._fd

    def _rotate(self) -> None:
        keep = self.settings.keep
        if keep == 0:
            os.truncate(self.path, 0)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}.{keep}")
            for n in range(keep - 1, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            os.replace(self.path, f"{self.path}.1")
        self._metrics.FILE_ROTATIONS.inc()
        os.close(self._fd)
        self._fd = -1


def _write_all(fd: int, body: bytes) -> None:
    view = memoryview(body)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# ---------------------------------------------------------------- what the node runs


def prepare(settings: FileSettings, context: OutputContext) -> str:
    """At start-up: the file (or stdout) can be written."""
    path = resolve_path(settings, context)
    if path == STDOUT:
        return "stdout"
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise UserError(f"file.path: cannot write {path!r}: {exc.strerror or exc}") from None
    return path


def build(settings: FileSettings, context: OutputContext) -> FileSink:
    return FileSink(settings, context)
