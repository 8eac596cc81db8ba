"""``flowsink queue DIR...``: look into persistent queues without disturbing the node that uses them.

Prints one JSON line per queue directory (depth, oldest age, segments, bytes). ``--verify`` reads every record
and counts valid, corrupt and tail bytes. ``--pcap FILE`` writes the unacknowledged datagrams to a capture
(raw-IP link type, source address and port as the exporter sent them) that ``flowsink decode`` or tshark read:
the way to see what a stuck queue holds. Read-only: it takes neither the writer's nor the reader's lock, so it
is safe on a running node (what it reads is a snapshot).
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from flowsink.errors import UserError

# the RFC 1071 checksum the synthetic-traffic captures use too
from flowsink.generate.pcap import internet_checksum
from flowsink.queue.persistent import PersistentQueue
from flowsink.queue.records import Entry
from flowsink.queue.segments import iter_valid_records, list_segments, read_checkpoint

HELP = "inspect persistent queues (depth, age, checksums) and export what they hold as pcap"
PCAP_DESTINATION_PORT = 2055  # the listener port is not stored; captures need one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directories",
        nargs="+",
        metavar="DIR",
        help="a queue directory, or a node's queue dir holding rx-* ones",
    )
    parser.add_argument("--verify", action="store_true", help="read every record and count damaged bytes")
    parser.add_argument("--pcap", metavar="FILE", help="write the unacknowledged datagrams to this pcap file")


def queue_directories(paths: list[str]) -> list[Path]:
    """The queue directories named, with a node's queue dir expanded to its ``rx-*`` partitions."""
    found = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            raise UserError(f"{name}: not a directory")
        partitions = sorted(p for p in path.glob("rx-*") if p.is_dir())
        found.extend(partitions or [path])
    return found


def verify(directory: Path) -> dict[str, int]:
    """Valid records and skipped bytes over every segment (the newest one's tail may be a write in progress)."""
    totals = {"valid_records": 0, "corrupt_stretches": 0, "corrupt_bytes": 0, "tail_bytes": 0}

    def skipped(kind: str, nbytes: int) -> None:
        if kind == "corrupt":
            totals["corrupt_stretches"] += 1
            totals["corrupt_bytes"] += nbytes
        else:
            totals["tail_bytes"] += nbytes

    for _, path in list_segments(directory):
        for _ in iter_valid_records(path.read_bytes(), skipped):
            totals["valid_records"] += 1
    return totals


def unacknowledged(directory: Path) -> Iterator[Entry]:
    """The entries after the checkpoint, in order, read straight from the segment files."""
    acked = read_checkpoint(directory)
    for _, path in list_segments(directory):
        for _, rec in iter_valid_records(path.read_bytes()):
            if rec.seq > acked:
                yield Entry(
                    rec.seq, rec.arrival_ns, rec.source.decode(errors="replace"), rec.payload, rec.source_port
                )


def ip_udp_packet(entry: Entry) -> bytes | None:
    """The entry as an IPv4/IPv6 + UDP packet from its exporter; None if its source is not an address."""
    try:
        source = ipaddress.ip_address(entry.source)
    except ValueError:
        return None
    destination = ipaddress.ip_address("127.0.0.1" if source.version == 4 else "::1")
    length = 8 + len(entry.payload)
    udp = struct.pack("!HHHH", entry.source_port, PCAP_DESTINATION_PORT, length, 0) + entry.payload
    if source.version == 6:  # RFC 8200 section 8.1 pseudo-header
        pseudo = source.packed + destination.packed + struct.pack("!I3xB", length, 17)
    else:  # RFC 768
        pseudo = source.packed + destination.packed + struct.pack("!xBH", 17, length)
    udp = udp[:6] + struct.pack("!H", internet_checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    if source.version == 6:
        return struct.pack("!IHBB", 6 << 28, length, 17, 64) + source.packed + destination.packed + udp
    header = (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0)
        + source.packed
        + destination.packed
    )
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + udp


def write_pcap(out: BinaryIO, entries: Iterator[Entry]) -> tuple[int, int]:
    """Write a nanosecond pcap with link type 101 (raw IP); returns (written, skipped: source not an address)."""
    out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 101))
    written = skipped = 0
    for entry in entries:
        packet = ip_udp_packet(entry)
        if packet is None:
            skipped += 1
            continue
        seconds, nanoseconds = divmod(entry.arrival_ns, 1_000_000_000)
        out.write(struct.pack("<IIII", seconds, nanoseconds, len(packet), len(packet)) + packet)
        written += 1
    return written, skipped


def main(args: argparse.Namespace) -> int:
    directories = queue_directories(args.directories)
    for directory in directories:
        report: dict[str, Any] = {"directory": str(directory), **PersistentQueue(directory).stats()}
        for key in (
            "appended_entries",
            "appended_bytes",
            "read_entries",
            "read_bytes",
            "unsynced_bytes",
            "sync_lag_seconds",
        ):
            report.pop(key, None)  # counters of a live process: always 0 from here
        if args.verify:
            report.update(verify(directory))
        sys.stdout.buffer.write(orjson.dumps(report) + b"\n")
    if args.pcap:
        with open(args.pcap, "wb") as out:
            written, skipped = write_pcap(out, (e for d in directories for e in unacknowledged(d)))
        print(
            f"{args.pcap}: {written} datagrams ({skipped} without an address source left out)",
            file=sys.stderr,
        )
    return 0
