"""``flowsink queue``: stats and verification of queue directories, and their datagrams exported as pcap."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowsink.decode.capture import read_file
from flowsink.queue import PersistentQueue, receiver_dir
from flowsink.queue.segments import list_segments

ENTRIES = [
    (b"ipfix-one", "192.0.2.1", 1_700_000_000_123_456_789, 40001),
    (b"netflow-two" * 30, "2001:db8::7", 1_700_000_001_000_000_001, 40002),
    (b"three", "198.51.100.9", 1_700_000_002_000_000_000, 40003),
    (b'{"rows": []}', "api", 1_700_000_003_000_000_000, 0),  # the flows API's queue: not an address
]


def flowsink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowsink.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def node_queue(tmp_path: Path) -> Path:
    """A node's queue dir with two partitions: rx-0 with one entry acknowledged, rx-1 with a damaged record."""
    with PersistentQueue(receiver_dir(tmp_path, 0)) as queue:
        queue.append_many(ENTRIES[:3])
        queue.ack(queue.read(1, 0)[0].seq)
    with PersistentQueue(receiver_dir(tmp_path, 1)) as queue:
        queue.append_many([ENTRIES[3], (b"lost", "192.0.2.2", 1, 1), (b"kept", "192.0.2.3", 2, 2)])
    ((_, segment),) = list_segments(tmp_path / "rx-1")
    data = bytearray(segment.read_bytes())
    data[len(data) - 40] ^= 0xFF  # inside the header of the last record (49 bytes long)
    segment.write_bytes(bytes(data))
    return tmp_path


def test_stats_and_verify_per_partition(node_queue: Path) -> None:
    done = flowsink("queue", str(node_queue), "--verify")
    assert done.returncode == 0, done.stderr
    rx0, rx1 = (json.loads(line) for line in done.stdout.splitlines())
    assert rx0["directory"].endswith("rx-0") and rx1["directory"].endswith("rx-1")
    assert (rx0["depth_entries"], rx0["acked_seq"], rx0["valid_records"], rx0["corrupt_bytes"]) == (
        2,
        1,
        3,
        0,
    )
    assert (rx1["valid_records"], rx1["corrupt_stretches"], rx1["tail_bytes"]) == (2, 0, 49)


def test_pcap_export_decodes_back_to_the_queued_datagrams(node_queue: Path, tmp_path: Path) -> None:
    capture = tmp_path / "queued.pcap"
    done = flowsink("queue", str(node_queue / "rx-0"), "--pcap", str(capture))
    assert done.returncode == 0, done.stderr
    assert "2 datagrams (0 without an address source left out)" in done.stderr
    got = list(read_file(capture))
    assert [(d.payload, d.src_ip, d.src_port, d.timestamp_ns) for d in got] == [
        (ENTRIES[1][0], ENTRIES[1][1], ENTRIES[1][3], ENTRIES[1][2]),
        (ENTRIES[2][0], ENTRIES[2][1], ENTRIES[2][3], ENTRIES[2][2]),
    ]
    if shutil.which("tshark"):
        fields = subprocess.run(
            [
                "tshark",
                "-r",
                str(capture),
                "-o",
                "udp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
                "-T",
                "fields",
                "-e",
                "udp.srcport",
                "-e",
                "udp.checksum.status",
                "-e",
                "frame.time_epoch",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        # checksum status 1 is "Good" (0 bad, 2 unverified)
        assert fields[:2] == ["40002", "1"] and fields[3:5] == ["40003", "1"]
        assert fields[2].startswith("1700000001.000000001")


def test_not_a_directory_is_a_one_line_error(tmp_path: Path) -> None:
    done = flowsink("queue", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"flowsink: error: {tmp_path / 'missing'}: not a directory"
