"""UDP receive path on real sockets: datagrams land in the queue with their exporter, port, time and order."""

from __future__ import annotations

import itertools
import multiprocessing
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowsink.queue import Entry, PersistentQueue, receiver_dir
from flowsink.receive import ReceiveSettings, TotalCounts, run_receiver, socket_drop_stats

pytestmark = pytest.mark.integration


def free_udp_port() -> int:
    """A port free on both 0.0.0.0 and :: right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v4:
            v4.bind(("0.0.0.0", 0))
            port = v4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as v6:
                    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    v6.bind(("::", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port")


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll ``condition`` (the machine may be loaded: no fixed sleeps for work another thread does)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the receiver"
        time.sleep(0.02)


def read_everything(directory: Path) -> list[Entry]:
    got: list[Entry] = []
    with PersistentQueue(directory) as reader:
        while entries := reader.read(10_000, 0.05):
            got.extend(entries)
    return got


class ReceiverThread:
    """``run_receiver`` in a thread of the test process, with in-process counts."""

    def __init__(self, settings: ReceiveSettings, queue: PersistentQueue) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.counts = TotalCounts()
        self.thread = threading.Thread(
            target=run_receiver, args=(settings, queue, self.stop, self.counts, self.ready), daemon=True
        )

    def __enter__(self) -> ReceiverThread:
        self.thread.start()
        assert self.ready.wait(10), "receiver did not bind"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def port() -> int:
    return free_udp_port()


def test_ipv4_and_ipv6_datagrams_land_in_order_with_their_exporter(tmp_path: Path, port: int) -> None:
    settings = ReceiveSettings(ports=(port,), host="::", rcvbuf_bytes=4 << 20)
    with PersistentQueue(tmp_path) as queue, ReceiverThread(settings, queue) as receiver:
        v4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        before = time.time_ns()
        for i in range(200):
            v4.sendto(b"v4-%05d" % i, ("127.0.0.1", port))
            v6.sendto(b"v6-%05d" % i + b"x" * 1400, ("::1", port))
        v4.sendto(b"", ("127.0.0.1", port))  # an empty datagram is a datagram too
        time.sleep(0.3)
    after = time.time_ns()
    got = read_everything(tmp_path)
    assert len(got) == 401
    from_v4 = [e for e in got if e.source == "127.0.0.1"]
    from_v6 = [e for e in got if e.source == "::1"]
    assert [e.payload for e in from_v4] == [b"v4-%05d" % i for i in range(200)] + [b""]
    assert [e.payload for e in from_v6] == [b"v6-%05d" % i + b"x" * 1400 for i in range(200)]
    assert {e.source_port for e in from_v4} == {v4.getsockname()[1]}
    assert {e.source_port for e in from_v6} == {v6.getsockname()[1]}
    assert all(before <= e.arrival_ns <= after for e in got)
    assert [e.arrival_ns for e in from_v4] == sorted(e.arrival_ns for e in from_v4)
    assert receiver.counts.by_exporter["127.0.0.1"] == [201, 200 * 8]
    assert receiver.counts.by_exporter["::1"] == [200, 200 * 1408]
    assert receiver.counts.by_port == {port: [401, 200 * 8 + 200 * 1408]}
    assert receiver.counts.queued_datagrams == 401
    assert receiver.counts.dropped == {}
    v4.close()
    v6.close()


def test_full_queue_counts_drops_and_keeps_serving(tmp_path: Path, port: int) -> None:
    settings = ReceiveSettings(
        ports=(port,), host="127.0.0.1", rcvbuf_bytes=8 << 20, counters_interval_s=0.02
    )
    payload = b"p" * 1000
    with (
        PersistentQueue(tmp_path, max_bytes=100_000, segment_bytes=10_000) as queue,
        PersistentQueue(tmp_path) as reader,  # the pipeline worker's side
        ReceiverThread(settings, queue) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        for _ in range(300):
            sender.sendto(payload, ("127.0.0.1", port))
        wait_for(lambda: receiver.counts.queued_datagrams + receiver.counts.dropped.get("full", 0) == 300)
        first = reader.read(1000, 0)
        reader.ack(first[-1].seq)
        assert reader.read(1000, 0.1) == []  # the worker keeps polling; that frees what it acknowledged
        for _ in range(5):
            sender.sendto(payload, ("127.0.0.1", port))
        later = []
        deadline = time.monotonic() + 5
        while len(later) < 5 and time.monotonic() < deadline:
            later += reader.read(1000, 0.2)
    counts = receiver.counts
    assert 50 < len(first) < 100
    assert counts.dropped["full"] == 300 - len(first)
    assert counts.queued_datagrams == len(first) + 5
    assert [e.seq for e in later] == list(range(len(first) + 1, len(first) + 6))


def test_oversize_datagrams_are_dropped_and_counted(tmp_path: Path, port: int) -> None:
    settings = ReceiveSettings(ports=(port,), host="127.0.0.1", max_datagram_bytes=1000)
    with (
        PersistentQueue(tmp_path) as queue,
        ReceiverThread(settings, queue) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        sender.sendto(b"a" * 1000, ("127.0.0.1", port))
        sender.sendto(b"b" * 1001, ("127.0.0.1", port))
        sender.sendto(b"c" * 10, ("127.0.0.1", port))
        time.sleep(0.3)
    assert [e.payload[:1] for e in read_everything(tmp_path)] == [b"a", b"c"]
    assert receiver.counts.dropped == {"oversize": 1}


def _receiver_process(port: int, directory: str, ready: object, stop: object) -> None:
    settings = ReceiveSettings(ports=(port,), host="127.0.0.1", rcvbuf_bytes=4 << 20)
    run_receiver(settings, directory, stop, None, ready)


@pytest.fixture
def two_receivers(tmp_path: Path, port: int) -> Iterator[tuple[int, list[Path]]]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    dirs = [receiver_dir(tmp_path, i) for i in range(2)]
    processes = []
    for directory in dirs:
        ready = context.Event()
        process = context.Process(target=_receiver_process, args=(port, str(directory), ready, stop))
        process.start()
        assert ready.wait(30), "receiver process did not bind"
        processes.append(process)
    try:
        yield port, dirs
    finally:
        stop.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def test_so_reuseport_spreads_exporters_and_keeps_each_in_order(
    two_receivers: tuple[int, list[Path]],
) -> None:
    port, dirs = two_receivers
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
    for round_ in range(20):
        for index, sender in enumerate(senders):
            sender.sendto(b"%02d:%03d" % (index, round_), ("127.0.0.1", port))
    wait_for(lambda: sum(PersistentQueue(d).stats()["last_seq"] for d in dirs) == 32 * 20)
    per_queue = [read_everything(d) for d in dirs]
    assert all(per_queue), "SO_REUSEPORT should hash 32 exporters onto both sockets"
    assert sum(len(q) for q in per_queue) == 32 * 20
    for index, sender in enumerate(senders):
        exporter_port = sender.getsockname()[1]
        homes = [q for q in per_queue if any(e.source_port == exporter_port for e in q)]
        assert len(homes) == 1, "one exporter's datagrams must all go to one receiver"
        mine = [e.payload for e in homes[0] if e.source_port == exporter_port]
        assert mine == [b"%02d:%03d" % (index, r) for r in range(20)]
        sender.close()


def test_drop_stats_see_kernel_drops_of_a_real_socket(port: int) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", port))
        before = socket_drop_stats([listener])[port]
        assert before == {"drops": 0, "rx_queue": 0, "sockets": 1}
        for _ in range(200):  # nobody reads: the tiny buffer overflows
            sender.sendto(b"z" * 1000, ("127.0.0.1", port))
        by_socket = socket_drop_stats([listener])[port]
        by_port = socket_drop_stats([port])[port]
    assert by_socket["drops"] > 100
    assert by_socket["rx_queue"] > 0
    assert by_port == by_socket


def _node_receiver(config_path: str) -> None:
    from flowsink.config import load_config
    from flowsink.receive import receiver_main

    config = load_config(config_path, env={})
    receiver_main(config.receive, config.queue, config.logging, str(config.queue_dir / "rx-0"), 0)


def test_receiver_main_runs_from_the_node_config_and_stops_on_sigterm(tmp_path: Path, port: int) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        f"node: {{run_dir: {tmp_path / 'run'}}}\n"
        f"receive: {{host: '::', ports: [{port}], processes: 1}}\n"
        f"queue: {{max_bytes: 16777216, segment_bytes: 1048576}}\n"
    )
    process = multiprocessing.get_context("spawn").Process(target=_node_receiver, args=(str(config),))
    process.start()
    try:
        deadline = time.monotonic() + 30
        while socket_drop_stats([port])[port]["sockets"] < 2:  # the :: and the 0.0.0.0 socket
            assert time.monotonic() < deadline, "receiver_main did not bind"
            time.sleep(0.05)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            for i in range(50):
                sender.sendto(b"dgram-%d" % i, ("::1", port))
        time.sleep(0.3)
    finally:
        process.terminate()  # SIGTERM, as the node stops its receivers
        process.join(15)
    assert process.exitcode == 0
    got = read_everything(tmp_path / "run" / "queue" / "rx-0")
    assert [e.payload for e in got] == [b"dgram-%d" % i for i in range(50)]
    assert {e.source for e in got} == {"::1"}


def test_a_capped_receive_buffer_is_reported(
    port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import flowsink.receive as receive

    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    monkeypatch.setattr(receive, "_SO_RCVBUFFORCE", -1)  # as without the privilege: plain SO_RCVBUF only
    wanted = 4 * rmem_max
    sockets = receive.open_sockets(ReceiveSettings(ports=(port,), host="127.0.0.1", rcvbuf_bytes=wanted))
    try:
        assert receive.receive_buffer_bytes(sockets) < wanted
    finally:
        for sock in sockets:
            sock.close()
    assert "the kernel granted SO_RCVBUF" in caplog.text


def test_second_receiver_on_the_same_queue_fails_before_binding(tmp_path: Path, port: int) -> None:
    from flowsink.queue import QueueLocked

    settings = ReceiveSettings(ports=(port,), host="127.0.0.1")
    with PersistentQueue(tmp_path) as first, ReceiverThread(settings, first):
        with pytest.raises(QueueLocked):
            run_receiver(settings, str(tmp_path), threading.Event())
        assert socket_drop_stats([port])[port]["sockets"] == 1


def test_link_local_ipv6_exporter_is_stored_without_its_zone(tmp_path: Path, port: int) -> None:
    if not shutil.which("ip"):
        pytest.skip("the ip command (iproute2) is not installed: cannot list link-local addresses")
    listing = subprocess.run(["ip", "-6", "-o", "addr"], capture_output=True, text=True).stdout
    # "4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link ..."
    scoped = [
        (f[3].split("/")[0], f[1]) for f in map(str.split, listing.splitlines()) if f[3].startswith("fe80:")
    ]
    if not scoped:
        pytest.skip("no link-local IPv6 address on this machine")
    address, interface = scoped[0]
    settings = ReceiveSettings(ports=(port,), host="::")
    with (
        PersistentQueue(tmp_path) as queue,
        ReceiverThread(settings, queue),
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender,
    ):
        sender.sendto(b"from link-local", (f"{address}%{interface}", port))
        wait_for(lambda: queue.stats()["last_seq"] == 1)
    (entry,) = read_everything(tmp_path)
    assert entry.source == address  # what Elasticsearch's ip type takes: no "%eth0" zone


def test_receiver_killed_mid_stream_leaves_an_intact_ordered_queue(tmp_path: Path, port: int) -> None:
    import os
    import signal

    context = multiprocessing.get_context("spawn")
    sent = 0
    stop_sending = threading.Event()

    def send() -> None:
        nonlocal sent
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            while not stop_sending.is_set():
                sender.sendto(b"%08d" % sent + b"x" * 500, ("127.0.0.1", port))
                sent += 1
                if sent % 50 == 0:
                    time.sleep(0.005)

    never = context.Event()  # the receivers are killed, never stopped

    def start_receiver() -> multiprocessing.process.BaseProcess:
        ready = context.Event()
        process = context.Process(target=_receiver_process, args=(port, str(tmp_path), ready, never))
        process.start()
        assert ready.wait(30)
        return process

    first = start_receiver()
    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: PersistentQueue(tmp_path).stats()["last_seq"] > 2000)
    os.kill(first.pid, signal.SIGKILL)  # mid-stream, as a crash would
    first.join()
    second = start_receiver()
    before = PersistentQueue(tmp_path).stats()["last_seq"]
    wait_for(lambda: PersistentQueue(tmp_path).stats()["last_seq"] > before + 2000)
    stop_sending.set()
    sender.join()
    time.sleep(0.2)
    os.kill(second.pid, signal.SIGKILL)
    second.join()

    with PersistentQueue(tmp_path) as reader:
        got = []
        while entries := reader.read(10_000, 0.05):
            got.extend(entries)
        stats = reader.stats()
    numbers = [int(e.payload[:8]) for e in got]
    assert [e.seq for e in got] == list(range(1, len(got) + 1))  # no hole, no corrupt record
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)  # arrival order, no duplicate
    assert stats["corrupt_records"] == 0
    # What is missing went while no receiver was running (the dead socket's buffer and the restart).
    gaps = [b - a for a, b in itertools.pairwise(numbers) if b - a > 1]
    assert len(gaps) <= 1
    assert len(got) > 4000 and numbers[-1] < sent
