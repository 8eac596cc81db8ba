"""Persistent queue under crashes and damage: a writer killed with SIGKILL, torn tails, corrupt records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flowsink.queue import PersistentQueue
from flowsink.queue.segments import list_segments

PAYLOAD_CHILD = textwrap.dedent(
    """
    import sys, time
    from flowsink.queue import PersistentQueue

    def payload_for(seq):
        stamp = f"datagram-{seq:08d}|".encode()
        return (stamp * 20)[: 100 + seq % 300]

    q = PersistentQueue(sys.argv[1], segment_bytes=int(sys.argv[2]))
    seq = q.stats()["last_seq"]
    while True:
        seq += 1
        assert q.append(payload_for(seq), "192.0.2.%d" % (seq % 5), seq) == seq
        if seq % 1000 == 0:
            print(seq, flush=True)
    """
)


def payload_for(seq: int) -> bytes:
    stamp = f"datagram-{seq:08d}|".encode()
    return (stamp * 20)[: 100 + seq % 300]


def start_writer(directory: Path, segment_bytes: int = 256 * 1024) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PAYLOAD_CHILD, str(directory), str(segment_bytes)],
        stdout=subprocess.PIPE,
        text=True,
    )


def kill_after(writer: subprocess.Popen[str], lines: int) -> int:
    """Let the writer report ``lines`` progress lines, SIGKILL it mid-stream; the last seq it reported."""
    last = 0
    for _ in range(lines):
        last = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    return last


def check_entries(entries: list, first: int) -> None:
    """Contiguous seqs from ``first``, each with the payload, source and arrival time its writer gave it."""
    assert [e.seq for e in entries] == list(range(first, first + len(entries)))
    for e in entries:
        assert e.payload == payload_for(e.seq)
        assert e.source == f"192.0.2.{e.seq % 5}"
        assert e.arrival_ns == e.seq


@pytest.mark.integration
def test_kill_9_writer_loses_nothing_it_returned_for(tmp_path: Path) -> None:
    writer = start_writer(tmp_path)
    reported = kill_after(writer, 5)
    writer = start_writer(tmp_path)  # a restarted writer continues the sequence after the crash
    reported_again = kill_after(writer, 3)
    assert reported_again > reported
    with PersistentQueue(tmp_path) as reader:
        got = []
        while entries := reader.read(5000, 0.05):
            got.extend(entries)
        stats = reader.stats()
    check_entries(got, 1)
    # SIGKILL leaves every completed write() in the page cache: nothing the writer reported is lost.
    assert got[-1].seq >= reported_again
    assert stats["corrupt_records"] == 0


@pytest.mark.integration
def test_reader_in_another_process_tails_a_live_writer(tmp_path: Path) -> None:
    writer = start_writer(tmp_path, segment_bytes=64 * 1024)
    try:
        with PersistentQueue(tmp_path) as reader:
            got: list = []
            deadline = time.monotonic() + 20
            while len(got) < 20_000 and time.monotonic() < deadline:
                entries = reader.read(2000, 0.5)
                got.extend(entries)
                if entries:
                    reader.ack(entries[-1].seq)
            stats = reader.stats()
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert len(got) >= 20_000
    check_entries(got, 1)
    assert stats["torn_records"] == 0 and stats["corrupt_records"] == 0
    # acknowledged segments were deleted meanwhile: what is left holds only what the writer wrote past the
    # reader's last ack (the writer runs on at full speed, so how much depends on the machine's load)
    assert stats["segments"] <= stats["depth_bytes"] // (64 * 1024) + 2


def write_records(directory: Path, count: int, segment_bytes: int = 1 << 20) -> None:
    with PersistentQueue(directory, segment_bytes=segment_bytes) as writer:
        for seq in range(1, count + 1):
            writer.append(payload_for(seq), f"192.0.2.{seq % 5}", seq)


def read_all(directory: Path) -> tuple[list, dict]:
    with PersistentQueue(directory) as reader:
        got = []
        while entries := reader.read(1000, 0):
            got.extend(entries)
        return got, reader.stats()


def test_torn_tail_at_every_offset_is_skipped_and_counted(tmp_path: Path) -> None:
    write_records(tmp_path / "src", 4)
    (segment,) = list_segments(tmp_path / "src")
    data = segment[1].read_bytes()
    last_record = 36 + len("192.0.2.4") + len(payload_for(4))
    start = len(data) - last_record
    for cut in range(start + 1, len(data)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / segment[1].name).write_bytes(data[:cut])
        # The restarted writer opens a new segment, so the cut one is final: its tail is torn, not in progress.
        with PersistentQueue(directory) as writer:
            assert writer.append(payload_for(4), "192.0.2.4", 4) == 4
        got, stats = read_all(directory)
        check_entries(got, 1)
        assert len(got) == 4
        assert stats["torn_records"] == 1, cut
        assert stats["skipped_bytes"] == cut - start


def test_reader_waits_at_an_unfinished_record_of_the_newest_segment(tmp_path: Path) -> None:
    write_records(tmp_path, 3)
    (segment,) = list_segments(tmp_path)
    data = segment[1].read_bytes()
    segment[1].write_bytes(data[:-10])
    with PersistentQueue(tmp_path) as reader:
        assert [e.seq for e in reader.read(10, 0)] == [1, 2]
        assert reader.read(10, 0.05) == []  # not torn: the writer may still be writing it
        with open(segment[1], "ab") as rest:
            rest.write(data[-10:])
        assert [e.seq for e in reader.read(10, 0)] == [3]
        assert reader.stats()["torn_records"] == 0


@pytest.mark.parametrize("where", ["header", "body", "magic"])
def test_corrupt_record_in_the_middle_is_skipped_and_counted(tmp_path: Path, where: str) -> None:
    write_records(tmp_path, 50)
    (segment,) = list_segments(tmp_path)
    data = bytearray(segment[1].read_bytes())
    sizes = [36 + len(f"192.0.2.{s % 5}") + len(payload_for(s)) for s in range(1, 51)]
    start = sum(sizes[:19])  # record 20
    offset = {"header": start + 14, "body": start + 60, "magic": start}[where]
    data[offset] ^= 0xFF
    segment[1].write_bytes(bytes(data))
    got, stats = read_all(tmp_path)
    assert [e.seq for e in got] == [s for s in range(1, 51) if s != 20]
    assert all(e.payload == payload_for(e.seq) for e in got)
    assert stats["corrupt_records"] == 1
    assert stats["skipped_bytes"] == sizes[19]


def test_garbage_between_records_is_resynchronised(tmp_path: Path) -> None:
    write_records(tmp_path, 10)
    (segment,) = list_segments(tmp_path)
    data = segment[1].read_bytes()
    sizes = [36 + len(f"192.0.2.{s % 5}") + len(payload_for(s)) for s in range(1, 11)]
    cut = sum(sizes[:5])
    garbage = os.urandom(777).replace(b"FSQ1", b"XXXX")
    segment[1].write_bytes(data[:cut] + garbage + data[cut:])
    got, stats = read_all(tmp_path)
    check_entries(got, 1)
    assert len(got) == 10
    assert stats["corrupt_records"] == 1 and stats["skipped_bytes"] == 777
