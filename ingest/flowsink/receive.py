"""UDP receive path: sockets -> persistent queue, doing nothing else.

Each receiver process binds every configured port (SO_REUSEPORT, so N processes share them and the kernel keeps
one exporter's 4-tuple on one socket), reads datagrams into a preallocated buffer, stamps the arrival time and
the exporter's address, and appends them to its own queue directory. Decoding happens behind the queue, so a
slow decoder or Elasticsearch never makes the kernel drop datagrams; what the kernel did drop anyway is read
from ``/proc/net/udp{,6}`` (``socket_drop_stats``), not guessed.

Seams: ``receiver_main(config, index)`` is what the node runs in a receiver process; ``run_receiver`` is the
loop itself (tests and benchmarks call it directly); ``socket_drop_stats`` feeds the kernel-drop gauges.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flowsink.errors import ConfigError
from flowsink.log import LoggingSettings, RateLimitedLog, get_logger
from flowsink.queue import PersistentQueue, QueueFull, QueueSettings, open_partition
from flowsink.settings import GIB, MIB, setting

log = get_logger(__name__)
_drops_log = RateLimitedLog(log)

DEFAULT_PORTS = (2055, 4739, 6343)
_BUFFER_BYTES = 65536  # above the largest UDP payload, so recvfrom_into never truncates
_POLL_TIMEOUT_S = 0.2  # how quickly a stop request is noticed when no traffic arrives
_STOP_DRAIN_S = 2.0  # at most this long to empty the socket buffers when stopping
_BATCHES_PER_WAKEUP = 4
_COALESCE_BELOW = 16  # a wakeup that found fewer datagrams than this waits ``coalesce_ms`` before the next
# Without this option name in the socket module (it is Linux's SO_RCVBUFFORCE): lets root exceed rmem_max.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@dataclass
class ReceiveSettings:
    """What a node's receivers bind and how they batch (the ``receive`` section)."""

    host: str = setting(
        "::", help="listen address; '::' binds an IPv6-only socket and an IPv4 one on 0.0.0.0 per port"
    )
    ports: list[int] = setting(
        factory=lambda: list(DEFAULT_PORTS), min=1, max=65535, help="UDP ports; any port takes any protocol"
    )
    processes: int = setting(0, min=0, max=256, help="receiver processes (SO_REUSEPORT); 0 = number of cores")
    rcvbuf_bytes: int = setting(
        32 * MIB,
        min=64 * 1024,
        max=2 * GIB,
        help="SO_RCVBUF asked for; a warning is logged if the kernel caps it",
    )
    max_datagram_bytes: int = setting(65535, min=512, max=65535)
    reuse_port: bool = setting(
        True,
        help="SO_REUSEPORT: several receiver processes share each port, an exporter stays on one of them",
    )
    batch_max: int = setting(
        64, min=1, max=4096, help="datagrams per queue write when the sockets have a backlog"
    )
    # Far below what the socket buffer holds at any rate (32 MiB is about 300 ms of 100k datagrams/s).
    coalesce_ms: float = setting(
        1.0,
        min=0,
        max=100,
        help="after a wakeup that found few datagrams, wait this long so the next finds more",
    )
    counters_interval_s: float = setting(1.0, min=0.05, help="how often receive counters reach /metrics")

    def validate(self) -> None:
        if not self.ports:
            raise ConfigError("receive.ports: at least one UDP port is required, got []")
        if len(set(self.ports)) != len(self.ports):
            raise ConfigError(f"receive.ports: a port is listed twice, got {self.ports!r}")

    @property
    def process_count(self) -> int:
        return self.processes or os.cpu_count() or 1


@dataclass
class ReceiveCounts:
    """What a receiver did since its last report; ``[datagrams, bytes]`` pairs per exporter and listener port."""

    by_exporter: dict[str, list[int]] = field(default_factory=dict)
    by_port: dict[int, list[int]] = field(default_factory=dict)
    queued_datagrams: int = 0
    queued_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> datagrams not queued

    def merge(self, other: ReceiveCounts) -> None:
        for mine, theirs in ((self.by_exporter, other.by_exporter), (self.by_port, other.by_port)):
            for key, (datagrams, nbytes) in theirs.items():
                pair = mine.setdefault(key, [0, 0])
                pair[0] += datagrams
                pair[1] += nbytes
        self.queued_datagrams += other.queued_datagrams
        self.queued_bytes += other.queued_bytes
        for reason, count in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count


class CountsSink(Protocol):
    """Where a receiver reports its counts, about once a second (per-datagram metric updates cost too much)."""

    def add(self, counts: ReceiveCounts) -> None: ...


class TotalCounts(ReceiveCounts):
    """A ``CountsSink`` that keeps running totals in the receiver's own process (tests, benchmarks)."""

    def add(self, counts: ReceiveCounts) -> None:
        self.merge(counts)


class PrometheusCounts:
    """A ``CountsSink`` onto ``flowsink.metrics`` (multiprocess mode in the node)."""

    def __init__(self) -> None:
        from flowsink import metrics

        self.metrics = metrics

    def bound(self, sockets: list[socket.socket]) -> None:
        """Called once the sockets are open: publish the receive buffer the kernel granted."""
        self.metrics.RECEIVE_BUFFER_BYTES.set(receive_buffer_bytes(sockets))

    def add(self, counts: ReceiveCounts) -> None:
        m = self.metrics
        for exporter, (datagrams, nbytes) in counts.by_exporter.items():
            label = m.exporter_label(exporter)
            m.DATAGRAMS_RECEIVED.labels(exporter=label).inc(datagrams)
            m.BYTES_RECEIVED.labels(exporter=label).inc(nbytes)
        if counts.queued_datagrams:
            m.QUEUE_WRITTEN_DATAGRAMS.inc(counts.queued_datagrams)
            m.QUEUE_WRITTEN_BYTES.inc(counts.queued_bytes)
        for reason, count in counts.dropped.items():
            m.QUEUE_DROPPED.labels(reason=reason).inc(count)


# ---------------------------------------------------------------- sockets


def _families(host: str) -> list[tuple[socket.AddressFamily, str]]:
    if host in ("::", ""):
        return [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    return [(socket.AF_INET6 if ":" in host else socket.AF_INET, host)]


def _set_rcvbuf(sock: socket.socket, wanted: int) -> None:
    """Ask for ``wanted`` bytes of receive buffer, forcing past rmem_max when the process may."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, wanted)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)


def open_sockets(settings: ReceiveSettings) -> list[socket.socket]:
    """Bound, non-blocking UDP sockets for every port and address family of ``settings``."""
    sockets: list[socket.socket] = []
    try:
        for port in settings.ports:
            for family, address in _families(settings.host):
                sock = _open_socket(family, address, port, settings)
                if sock is not None:
                    sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"no UDP socket could be opened on {settings.host} ports {settings.ports}")
    granted = receive_buffer_bytes(sockets)
    if granted < settings.rcvbuf_bytes:
        log.warning(
            "the kernel granted SO_RCVBUF %d bytes instead of %d: bursts may be dropped "
            "(raise net.core.rmem_max, or run as root so SO_RCVBUFFORCE applies)",
            granted,
            settings.rcvbuf_bytes,
        )
    return sockets


def _open_socket(
    family: socket.AddressFamily, address: str, port: int, settings: ReceiveSettings
) -> socket.socket | None:
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        if family == socket.AF_INET6 and settings.host in ("::", ""):
            log.warning("IPv6 is not available (%s): listening on IPv4 only", exc)
            return None
        raise
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if settings.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _set_rcvbuf(
            sock, settings.rcvbuf_bytes
        )  # before bind: a socket joining the group gets traffic at once
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if family == socket.AF_INET6 and settings.host in ("::", "") and exc.errno == errno.EADDRNOTAVAIL:
            log.warning("IPv6 is not available (%s): listening on IPv4 only", exc)
            return None
        raise OSError(exc.errno, f"cannot bind UDP {address} port {port}: {exc.strerror}") from exc
    return sock


def receive_buffer_bytes(sockets: Iterable[socket.socket]) -> int:
    """The smallest SO_RCVBUF the kernel granted among ``sockets``.

    Linux doubles what was asked (the other half covers its bookkeeping) and reports the doubled value.
    """
    return min(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2 for sock in sockets)


# ---------------------------------------------------------------- the loop


class Receiver:
    """Reads every socket that has data, in batches, and appends each batch to the queue with one write."""

    def __init__(
        self,
        settings: ReceiveSettings,
        queue: PersistentQueue,
        sockets: list[socket.socket],
        counts_sink: CountsSink | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.sockets = sockets
        self.counts_sink = counts_sink
        self.counts = ReceiveCounts()
        self._buffer = bytearray(_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        self._ports = {sock.fileno(): sock.getsockname()[1] for sock in sockets}

    def run(self, stop: Any) -> None:
        """Receive until ``stop`` (a threading or multiprocessing Event) is set, then drain and report."""
        poller = select.epoll()
        by_fd = {sock.fileno(): sock for sock in self.sockets}
        for fd in by_fd:
            poller.register(fd, select.EPOLLIN)
        next_report = time.monotonic() + self.settings.counters_interval_s
        batch_max = self.settings.batch_max
        coalesce_s = self.settings.coalesce_ms / 1000.0
        try:
            while not stop.is_set():
                taken = 0
                for fd, _ in poller.poll(_POLL_TIMEOUT_S):
                    sock = by_fd[fd]
                    # A socket with a backlog gets a few batches before the next epoll round (saves syscalls),
                    # not unlimited ones (the other sockets' buffers fill meanwhile).
                    for _ in range(_BATCHES_PER_WAKEUP):
                        got = self.drain(sock)
                        taken += got
                        if got < batch_max:
                            break
                if 0 < taken < _COALESCE_BELOW and coalesce_s:
                    # Few datagrams per wakeup: the fixed cost of a wakeup (epoll, a write, a lock) dominates.
                    # Letting the kernel gather more for a moment halves the CPU per datagram at moderate rates.
                    time.sleep(coalesce_s)
                if time.monotonic() >= next_report:
                    self.report()
                    next_report = time.monotonic() + self.settings.counters_interval_s
            # Stop receiving: what already sits in the kernel buffers goes to the queue, then nothing more.
            # Bounded in time, since a flood that goes on would otherwise keep the buffers from ever emptying.
            deadline = time.monotonic() + _STOP_DRAIN_S
            for sock in self.sockets:
                while self.drain(sock) and time.monotonic() < deadline:
                    pass
        finally:
            poller.close()
            self.report()

    def drain(self, sock: socket.socket) -> int:
        """Read up to ``batch_max`` waiting datagrams from ``sock`` into the queue; returns how many were read."""
        batch = []
        recv_into = sock.recvfrom_into
        view = self._view
        now_ns = time.time_ns
        for _ in range(self.settings.batch_max):
            try:
                size, address = recv_into(self._buffer)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                self._drop("recv_error", 1, "UDP receive failed: %s", exc)
                break
            batch.append((view[:size].tobytes(), address[0], now_ns(), address[1]))
        if batch:
            self._store(batch, self._ports[sock.fileno()])
        return len(batch)

    def _store(self, batch: list[tuple[bytes, str, int, int]], port: int) -> None:
        total_bytes, largest = self._count_received(batch, port)
        limit = self.settings.max_datagram_bytes
        if largest > limit:
            kept = [item for item in batch if len(item[0]) <= limit]
            self._drop("oversize", len(batch) - len(kept), "datagram larger than %d bytes dropped", limit)
            total_bytes -= sum(len(item[0]) for item in batch if len(item[0]) > limit)
            batch = kept
        try:
            self.queue.append_many(batch)
        except QueueFull as full:
            self._drop(full.reason, len(batch), "queue refused %d datagram(s): %s", len(batch), full)
            return
        self.counts.queued_datagrams += len(batch)
        self.counts.queued_bytes += total_bytes

    def _count_received(self, batch: list[tuple[bytes, str, int, int]], port: int) -> tuple[int, int]:
        """Count the batch by exporter and listener port; returns its payload bytes and its largest payload."""
        by_exporter = self.counts.by_exporter
        total = largest = 0
        for payload, exporter, _, _ in batch:
            size = len(payload)
            pair = by_exporter.get(exporter)
            if pair is None:
                pair = by_exporter[exporter] = [0, 0]
            pair[0] += 1
            pair[1] += size
            total += size
            if size > largest:
                largest = size
        pair = self.counts.by_port.setdefault(port, [0, 0])
        pair[0] += len(batch)
        pair[1] += total
        return total, largest

    def _drop(self, reason: str, count: int, message: str, *args: object) -> None:
        if count <= 0:
            return
        self.counts.dropped[reason] = self.counts.dropped.get(reason, 0) + count
        _drops_log.warning(f"receive_{reason}", message, *args)

    def report(self) -> None:
        """Hand the counts gathered since the last report to the counts sink."""
        counts, self.counts = self.counts, ReceiveCounts()
        if self.counts_sink is None:
            return
        try:
            self.counts_sink.add(counts)
        except Exception as exc:
            # Metrics are worth less than the datagrams: a failing sink loses these counts, not the traffic.
            _drops_log.error("receive_counts", "could not record receive counts: %s", exc)


def run_receiver(
    settings: ReceiveSettings,
    queue: PersistentQueue | str | os.PathLike[str],
    stop: Any,
    counts_sink: CountsSink | None = None,
    ready: Any | None = None,
) -> None:
    """Bind the sockets, receive into ``queue`` until ``stop`` is set; ``ready.set()`` once bound.

    ``queue`` is an open ``PersistentQueue`` or the directory of one (then opened with default limits and
    closed at the end).
    """
    owned = not isinstance(queue, PersistentQueue)
    target = PersistentQueue(queue) if owned else queue
    target.claim_writer()  # a second receiver on the same directory fails here, before it binds a port
    sockets = open_sockets(settings)
    try:
        receiver = Receiver(settings, target, sockets, counts_sink)
        bound = getattr(counts_sink, "bound", None)
        if bound is not None:
            bound(sockets)
        if ready is not None:
            ready.set()
        receiver.run(stop)
    finally:
        for sock in sockets:
            sock.close()
        target.sync()
        if owned:
            target.close()


def receiver_main(
    settings: ReceiveSettings,
    queue_settings: QueueSettings,
    logging_settings: LoggingSettings,
    directory: str,
    index: int,
) -> None:
    """Entry point of receiver process ``index`` of a node, appending to the queue partition ``directory``."""
    from flowsink.log import setup_logging

    setup_logging(logging_settings.level, logging_settings.format, role=f"receiver-{index}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node decides when receivers stop
    queue = open_partition(queue_settings, directory, settings.process_count)
    log.info("receiver %d: UDP %s on %s -> %s", index, settings.ports, settings.host, queue.directory)
    try:
        run_receiver(settings, queue, stop, PrometheusCounts())
    finally:
        queue.close()
    log.info("receiver %d stopped", index)


# ---------------------------------------------------------------- kernel drops


def _socket_inodes(sockets: Iterable[socket.socket]) -> dict[int, int]:
    """inode -> local port of each socket (the inode links a socket fd to its /proc/net/udp row)."""
    return {os.fstat(sock.fileno()).st_ino: sock.getsockname()[1] for sock in sockets}


def socket_drop_stats(
    targets: Iterable[int | socket.socket],
    proc_files: Iterable[str | Path] = ("/proc/net/udp", "/proc/net/udp6"),
) -> dict[int, dict[str, int]]:
    """Kernel drops and receive-queue bytes per local port, from ``/proc/net/udp`` and ``/proc/net/udp6``.

    ``targets`` are sockets (matched by inode: exactly those sockets) or port numbers (every UDP socket bound to
    that port in this network namespace, e.g. all receivers of a node sharing it with SO_REUSEPORT). Returns
    ``{port: {"drops": n, "rx_queue": bytes, "sockets": k}}``; ``drops`` counts since each socket opened.
    """
    targets = list(targets)
    inodes = _socket_inodes(t for t in targets if isinstance(t, socket.socket))
    ports = {t for t in targets if isinstance(t, int)}
    result: dict[int, dict[str, int]] = {
        port: {"drops": 0, "rx_queue": 0, "sockets": 0} for port in [*ports, *inodes.values()]
    }
    for proc_file in proc_files:
        try:
            with open(proc_file) as rows:
                next(rows, None)  # header line
                for row in rows:
                    _add_row(row.split(), inodes, ports, result)
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
    return result


def _add_row(
    fields: list[str], inodes: dict[int, int], ports: set[int], result: dict[int, dict[str, int]]
) -> None:
    # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
    if len(fields) < 13:
        return
    port = int(fields[1].rsplit(":", 1)[1], 16)
    inode = int(fields[9])
    if inode in inodes:
        port = inodes[inode]
    elif port not in ports:
        return
    stats = result[port]
    stats["drops"] += int(fields[12])
    stats["rx_queue"] += int(fields[4].split(":")[1], 16)
    stats["sockets"] += 1


# The node's supervisor looks the function up under this name.
udp_socket_stats = socket_drop_stats
