"""Persistent queue: round trip, acknowledgement, bounds and restarts on real files."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from flowsink.queue import Entry, PersistentQueue, QueueFull, QueueLocked, partition_dirs, receiver_dir


def payload_for(seq: int, size: int = 200) -> bytes:
    """A payload whose content says which append it was, so reordering or corruption shows."""
    stamp = f"datagram-{seq:08d}|".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


def drain(queue: PersistentQueue, batch: int = 500, ack: bool = True) -> list[Entry]:
    got: list[Entry] = []
    while entries := queue.read(batch, 0.05):
        got.extend(entries)
        if ack:
            queue.ack(entries[-1].seq)
    return got


def test_round_trip_keeps_order_source_and_time(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path, segment_bytes=4096) as writer, PersistentQueue(tmp_path) as reader:
        seqs = [writer.append(payload_for(i), f"192.0.2.{i % 7}", 1_000 + i, 2055) for i in range(1, 301)]
        assert seqs == list(range(1, 301))
        got = drain(reader)
    assert [e.seq for e in got] == seqs
    assert [e.payload for e in got] == [payload_for(i) for i in range(1, 301)]
    assert [e.source for e in got] == [f"192.0.2.{i % 7}" for i in range(1, 301)]
    assert [e.arrival_ns for e in got] == [1_000 + i for i in range(1, 301)]
    assert {e.source_port for e in got} == {2055}


def test_append_many_equals_single_appends(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path) as queue:
        assert queue.append_many([(b"a", "2001:db8::1", 5), (b"bb", "2001:db8::2", 6, 9995)]) == 2
        assert queue.append_many([]) == 2
        assert queue.append(b"ccc", "198.51.100.1", 7) == 3
        got = queue.read(10, 0)
    assert got == [
        Entry(1, 5, "2001:db8::1", b"a", 0),
        Entry(2, 6, "2001:db8::2", b"bb", 9995),
        Entry(3, 7, "198.51.100.1", b"ccc", 0),
    ]


def test_read_waits_up_to_timeout_and_returns_empty(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path) as queue:
        started = time.monotonic()
        assert queue.read(10, 0.2) == []
        assert 0.15 <= time.monotonic() - started < 2


def test_ack_deletes_only_fully_acknowledged_segments(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path, segment_bytes=2048) as writer, PersistentQueue(tmp_path) as reader:
        for i in range(1, 101):
            writer.append(payload_for(i), "192.0.2.1", i)
        segments_before = writer.stats()["segments"]
        assert segments_before > 5
        entries = reader.read(50, 0)
        reader.ack(entries[-1].seq)
        stats = reader.stats()
        assert stats["acked_seq"] == 50
        assert stats["depth_entries"] == 50
        assert 0 < stats["segments"] < segments_before
        drain(reader)
        assert reader.stats()["segments"] == 1  # the writer's current segment is never deleted
        assert reader.stats()["depth_entries"] == 0


def test_restarted_reader_resumes_after_checkpoint(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path, segment_bytes=4096) as writer:
        for i in range(1, 201):
            writer.append(payload_for(i), "192.0.2.1", i)
    with PersistentQueue(tmp_path) as reader:
        first = reader.read(120, 0)
        reader.ack(first[-1].seq)
        reader.read(30, 0)  # read but not acknowledged: must come again
    with PersistentQueue(tmp_path) as reader:
        rest = drain(reader)
    assert [e.seq for e in rest] == list(range(121, 201))


def test_restarted_writer_continues_the_sequence(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path) as writer:
        for i in range(1, 11):
            writer.append(payload_for(i), "192.0.2.1", i)
    with PersistentQueue(tmp_path) as writer:
        assert writer.append(payload_for(11), "192.0.2.1", 11) == 11
    with PersistentQueue(tmp_path) as reader:
        assert [e.seq for e in drain(reader)] == list(range(1, 12))


def test_rewind_reads_unacknowledged_entries_again(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path) as queue:
        for i in range(1, 21):
            queue.append(payload_for(i), "192.0.2.1", i)
        queue.ack(queue.read(5, 0)[-1].seq)
        queue.read(10, 0)
        queue.rewind()
        assert [e.seq for e in queue.read(100, 0)] == list(range(6, 21))


def test_max_bytes_raises_queue_full_until_ack_frees_space(tmp_path: Path) -> None:
    record = len(payload_for(1, 1000)) + 36 + len("192.0.2.1")
    with (
        PersistentQueue(tmp_path, max_bytes=20 * record, segment_bytes=4 * record) as writer,
        PersistentQueue(tmp_path) as reader,
    ):
        accepted = 0
        with pytest.raises(QueueFull) as full:
            for i in range(1, 100):
                writer.append(payload_for(i, 1000), "192.0.2.1", i)
                accepted += 1
        assert full.value.reason == "full"
        assert accepted == 20
        assert writer.stats()["disk_bytes"] <= 20 * record
        with pytest.raises(QueueFull):
            writer.append(payload_for(99, 1000), "192.0.2.1", 99)
        entries = reader.read(12, 0)
        reader.ack(entries[-1].seq)
        time.sleep(0.06)  # the writer looks for freed segments at most every 50 ms while full
        seq = writer.append(payload_for(21, 1000), "192.0.2.1", 21)
        assert seq == 21
        assert [e.seq for e in drain(reader)] == list(range(13, 22))


def test_second_writer_or_reader_is_refused(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path) as first, PersistentQueue(tmp_path) as second:
        first.append(b"x", "192.0.2.1", 1)
        with pytest.raises(QueueLocked):
            second.append(b"y", "192.0.2.1", 2)
        first.read(1, 0)
        with pytest.raises(QueueLocked):
            second.read(1, 0)


def test_stats_report_depth_bytes_and_oldest_age(tmp_path: Path) -> None:
    arrival = time.time_ns() - 5_000_000_000
    with PersistentQueue(tmp_path) as writer:
        writer.append(b"x" * 100, "192.0.2.1", arrival)
        writer.append(b"y" * 100, "192.0.2.1", arrival + 1)
        stats = writer.stats()
    assert stats["depth_entries"] == 2
    assert stats["depth_bytes"] == 2 * (36 + 9 + 100)
    assert 4.5 < stats["oldest_age_seconds"] < 60
    with PersistentQueue(tmp_path) as observer:
        assert observer.stats()["depth_entries"] == 2  # seen from a process that neither reads nor writes
        observer.read(1, 0)  # now the reader: read but unacknowledged entries still count
        stats = observer.stats()
        assert (stats["depth_entries"], stats["depth_bytes"]) == (2, 2 * (36 + 9 + 100))
        assert stats["oldest_arrival_ns"] == arrival
        observer.ack(1)
        stats = observer.stats()
        assert (stats["depth_entries"], stats["depth_bytes"]) == (1, 36 + 9 + 100)
        assert stats["oldest_arrival_ns"] == arrival + 1
        observer.ack(observer.read(1, 0)[-1].seq)
        stats = observer.stats()
        assert (stats["depth_entries"], stats["depth_bytes"], stats["oldest_age_seconds"]) == (0, 0, 0.0)


def test_partition_dirs_include_leftovers(tmp_path: Path) -> None:
    receiver_dir(tmp_path, 3)
    dirs = partition_dirs(tmp_path, 2)
    assert [d.name for d in dirs] == ["rx-0", "rx-1", "rx-3"]
    assert all(d.is_dir() for d in dirs)


def test_full_queue_recovers_when_everything_was_acknowledged_in_the_newest_segment(tmp_path: Path) -> None:
    with (
        PersistentQueue(tmp_path, max_bytes=10_000, segment_bytes=1 << 20) as writer,
        PersistentQueue(tmp_path) as reader,
    ):
        accepted = 0
        with pytest.raises(QueueFull):
            while True:
                writer.append(payload_for(accepted + 1, 1000), "192.0.2.1", 1)
                accepted += 1
        reader.ack(reader.read(100, 0)[-1].seq)  # all in the writer's one segment: nothing to delete yet
        with pytest.raises(QueueFull):
            writer.append(payload_for(0, 1000), "192.0.2.1", 1)  # the writer closes that segment ...
        assert reader.read(100, 0) == []  # ... the polling reader deletes it ...
        time.sleep(0.06)
        assert writer.append(payload_for(0, 1000), "192.0.2.1", 1) == accepted + 1  # ... and there is room


def test_appends_from_several_threads_get_unique_ordered_seqs(tmp_path: Path) -> None:
    import threading

    def append_many_times(name: str) -> None:
        for i in range(500):
            if i % 2:
                queue.append(f"{name}:{i}".encode(), name, i)
            else:
                queue.append_many([(f"{name}:{i}".encode(), name, i)])

    with PersistentQueue(tmp_path, segment_bytes=8192) as queue:
        threads = [threading.Thread(target=append_many_times, args=(f"10.0.0.{t}",)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = drain(queue)
    assert [e.seq for e in got] == list(range(1, 2001))
    for t in range(4):
        mine = [e.payload for e in got if e.source == f"10.0.0.{t}"]
        assert mine == [f"10.0.0.{t}:{i}".encode() for i in range(500)]


def test_background_fsync_bounds_the_durability_lag(tmp_path: Path) -> None:
    with PersistentQueue(tmp_path, fsync_interval_ms=50, fsync_bytes=0) as queue:
        queue.append(b"x" * 1000, "192.0.2.1", 1)
        stats = queue.stats()
        assert stats["unsynced_bytes"] > 0
        deadline = time.monotonic() + 5
        while queue.stats()["unsynced_bytes"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queue.stats()["unsynced_bytes"] == 0  # the fsync thread ran without another append
        assert queue.stats()["sync_lag_seconds"] == 0.0
        queue.append(b"y", "192.0.2.1", 2)
        queue.sync()
        assert queue.stats()["unsynced_bytes"] == 0


def test_read_ack_and_stats_from_different_threads(tmp_path: Path) -> None:
    import queue as thread_queue
    import threading

    total = 3000
    with PersistentQueue(tmp_path, segment_bytes=16 * 1024) as writer, PersistentQueue(tmp_path) as reader:
        done = threading.Event()
        to_ack: thread_queue.Queue[int] = thread_queue.Queue()
        errors: list[BaseException] = []
        got: list[Entry] = []

        def guarded(work):
            def run() -> None:
                try:
                    work()
                except BaseException as exc:  # reported by the assertion below
                    errors.append(exc)
                    done.set()

            return threading.Thread(target=run)

        def read_all() -> None:
            while len(got) < total and not done.is_set():
                entries = reader.read(100, 0.05)
                got.extend(entries)
                if entries:
                    to_ack.put(entries[-1].seq)
            done.set()

        def ack_all() -> None:
            while not (done.is_set() and to_ack.empty()):
                with contextlib.suppress(thread_queue.Empty):
                    reader.ack(to_ack.get(timeout=0.05))

        def watch() -> None:
            while not done.is_set():
                stats = reader.stats()
                assert stats["depth_entries"] >= 0 and stats["depth_bytes"] >= 0

        threads = [guarded(read_all), guarded(ack_all), guarded(watch)]
        for thread in threads:
            thread.start()
        for i in range(1, total + 1):
            writer.append(payload_for(i), "192.0.2.1", i)
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        assert [e.seq for e in got] == list(range(1, total + 1))
        assert reader.stats()["depth_entries"] == 0
