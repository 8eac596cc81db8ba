"""Queue benchmark: append and read MB/s of the persistent queue with its default durability policy.

Peers measured in the same run on the same disk, with the same payloads (1345-byte datagrams, the size of a
25-flow IPFIX export):

- SQLite in WAL mode (``synchronous=NORMAL``), one transaction per batch of inserts; reads select by rowid and
  delete what was read (the SQLite way of acknowledging);
- plain buffered file writes of the payloads with a length prefix, no checksum, no fsync: the ceiling.

    python bench/bench_queue.py            # 200k datagrams, 5 runs each
    python bench/bench_queue.py --quick    # 40k datagrams, 3 runs each

Prints a markdown section with medians and ratios; exits 0.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flowsink.queue import PersistentQueue

WORK = Path(__file__).resolve().parent / ".work"
PAYLOAD_BYTES = 1345
BATCH = 64  # what a receiver appends per write under load
SOURCE = "192.0.2.10"


def make_payloads(count: int) -> list[bytes]:
    """Distinct payloads (so no layer can deduplicate), cycled from a pool of 1000."""
    pool = [os.urandom(PAYLOAD_BYTES) for _ in range(1000)]
    return [pool[i % len(pool)] for i in range(count)]


def _batches(payloads: list[bytes]) -> list[list[tuple[bytes, str, int, int]]]:
    now = time.time_ns()
    items = [(p, SOURCE, now + i, 2055) for i, p in enumerate(payloads)]
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


# ---------------------------------------------------------------- flowsink


def flowsink_append_single(directory: Path, payloads: list[bytes]) -> float:
    with PersistentQueue(directory) as queue:
        now = time.time_ns()
        started = time.perf_counter()
        for index, payload in enumerate(payloads):
            queue.append(payload, SOURCE, now + index, 2055)
        queue.sync()
        return time.perf_counter() - started


def flowsink_append_many(directory: Path, payloads: list[bytes]) -> float:
    batches = _batches(payloads)
    with PersistentQueue(directory) as queue:
        started = time.perf_counter()
        for batch in batches:
            queue.append_many(batch)
        queue.sync()
        return time.perf_counter() - started


def flowsink_read(directory: Path, payloads: list[bytes]) -> float:
    with PersistentQueue(directory) as queue:
        started = time.perf_counter()
        got = 0
        while entries := queue.read(1000, 0):
            got += len(entries)
            queue.ack(entries[-1].seq)
        took = time.perf_counter() - started
    assert got == len(payloads), (got, len(payloads))
    return took


# ---------------------------------------------------------------- SQLite WAL


def _sqlite(directory: Path) -> sqlite3.Connection:
    db = sqlite3.connect(directory / "queue.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS q (seq INTEGER PRIMARY KEY, arrival_ns INTEGER, source TEXT, port INTEGER, "
        "payload BLOB)"
    )
    return db


def sqlite_append_many(directory: Path, payloads: list[bytes]) -> float:
    batches = _batches(payloads)
    db = _sqlite(directory)
    started = time.perf_counter()
    for batch in batches:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO q (payload, source, arrival_ns, port) VALUES (?, ?, ?, ?)",
            batch,
        )
        db.execute("COMMIT")
    took = time.perf_counter() - started
    db.close()
    return took


def sqlite_read(directory: Path, payloads: list[bytes]) -> float:
    db = _sqlite(directory)
    started = time.perf_counter()
    last, got = 0, 0
    while True:
        rows = db.execute(
            "SELECT seq, arrival_ns, source, payload FROM q WHERE seq > ? ORDER BY seq LIMIT 1000", (last,)
        ).fetchall()
        if not rows:
            break
        got += len(rows)
        last = rows[-1][0]
        db.execute("DELETE FROM q WHERE seq <= ?", (last,))
    took = time.perf_counter() - started
    db.close()
    assert got == len(payloads), (got, len(payloads))
    return took


# ---------------------------------------------------------------- plain file (ceiling)


def plain_append(directory: Path, payloads: list[bytes]) -> float:
    prefix = struct.Struct("<I")
    started = time.perf_counter()
    with open(directory / "plain.bin", "ab") as out:
        for payload in payloads:
            out.write(prefix.pack(len(payload)))
            out.write(payload)
    return time.perf_counter() - started


def plain_read(directory: Path, payloads: list[bytes]) -> float:
    prefix = struct.Struct("<I")
    started = time.perf_counter()
    got = 0
    with open(directory / "plain.bin", "rb") as source:
        while header := source.read(4):
            (size,) = prefix.unpack(header)
            source.read(size)
            got += 1
    took = time.perf_counter() - started
    assert got == len(payloads)
    return took


# ---------------------------------------------------------------- the run

Measure = Callable[[Path, list[bytes]], float]
CASES: list[tuple[str, Measure, Measure | None]] = [
    ("flowsink append_many (64/write) + read/ack", flowsink_append_many, flowsink_read),
    ("flowsink append (1/write)", flowsink_append_single, None),
    ("SQLite WAL, 64 inserts/transaction + select/delete", sqlite_append_many, sqlite_read),
    ("plain buffered file, no checksum, no fsync (ceiling)", plain_append, plain_read),
]


def run_case(
    write: Measure, read: Measure | None, payloads: list[bytes]
) -> tuple[float, float, float, float]:
    """(append wall s, append CPU s, read wall s, read CPU s); CPU time is immune to the shared machine's load."""
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        directory = Path(tmp)
        cpu = time.process_time()
        write_s = write(directory, payloads)
        write_cpu = time.process_time() - cpu
        cpu = time.process_time()
        read_s = read(directory, payloads) if read else 0.0
        read_cpu = time.process_time() - cpu
    return write_s, write_cpu, read_s, read_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40k datagrams, 3 runs")
    parser.add_argument("--count", type=int, help="datagrams per run")
    parser.add_argument("--runs", type=int, help="runs per case")
    args = parser.parse_args()
    count = args.count or (40_000 if args.quick else 200_000)
    runs = args.runs or (3 if args.quick else 5)
    WORK.mkdir(parents=True, exist_ok=True)
    payloads = make_payloads(count)
    megabytes = count * PAYLOAD_BYTES / 1e6

    results: dict[str, list[list[float]]] = {name: [[], [], [], []] for name, _, _ in CASES}
    for _ in range(runs):  # interleaved, so a burst of load on the shared machine hits every case alike
        for name, write, read in CASES:
            for column, value in zip(results[name], run_case(write, read, payloads), strict=True):
                column.append(value)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    ours = results[CASES[0][0]]
    lines = [
        "## Queue: append and read throughput (`bench/bench_queue.py`)",
        "",
        f"{count} datagrams of {PAYLOAD_BYTES} bytes ({megabytes:.0f} MB) per run, median of {runs} runs, "
        f"on the disk under `bench/.work`; flowsink with its default durability policy (fdatasync every 200 ms "
        f"or 4 MiB, plus `sync()` at the end, timed). Load average (1 min) at the end {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores: CPU µs per datagram is the figure that load does not distort.",
        "",
        "| queue | append MB/s | append CPU µs/datagram | read MB/s | read CPU µs/datagram "
        "| append speed ratio | read speed ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (writes, write_cpu, reads, read_cpu) in results.items():
        has_read = any(reads)
        read_cells = (
            f"{megabytes / median(reads):.0f} | {median(read_cpu) / count * 1e6:.2f}" if has_read else "- | -"
        )
        read_ratio = f"{median(reads) / median(ours[2]):.2f}" if has_read else "-"
        lines.append(
            f"| {name} | {megabytes / median(writes):.0f} | {median(write_cpu) / count * 1e6:.2f} | {read_cells} "
            f"| {median(writes) / median(ours[0]):.2f} | {read_ratio} |"
        )
    lines += [
        "",
        "Speed ratios: flowsink's (first row) throughput divided by that row's; above 1 flowsink is faster.",
    ]
    print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
