"""A full disk (ENOSPC) behaves like a full queue: QueueFull("disk_full"), no crash, nothing accepted lost."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowsink.queue import PersistentQueue, QueueFull


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, so the disk really runs out."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.integration
def test_enospc_raises_disk_full_and_recovers_after_ack(tiny_disk: Path) -> None:
    payload = bytes(range(256)) * 5  # 1280 bytes, an ordinary datagram
    with (
        PersistentQueue(tiny_disk / "q", max_bytes=1 << 30, segment_bytes=128 * 1024) as writer,
        PersistentQueue(tiny_disk / "q") as reader,
    ):
        accepted = 0
        with pytest.raises(QueueFull) as full:
            for i in range(10_000):
                writer.append(payload, "192.0.2.1", i)
                accepted += 1
        assert full.value.reason == "disk_full"
        assert 1000 < accepted < 2000
        for _ in range(20):  # it keeps refusing, never crashes
            with pytest.raises(QueueFull):
                writer.append_many([(payload, "192.0.2.1", 0)] * 3)

        got = reader.read(accepted + 10, 0)
        assert [e.seq for e in got] == list(range(1, accepted + 1))
        assert all(e.payload == payload for e in got)
        assert reader.stats()["corrupt_records"] == 0
        reader.ack(got[-1].seq)  # frees every segment but the newest

        seq = writer.append(payload, "192.0.2.1", 1)
        assert seq == accepted + 1
        assert [e.seq for e in reader.read(10, 0.5)] == [seq]
