"""Damaged segments never crash the reader and never yield a damaged entry (property test on real files)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsink.queue import PersistentQueue
from flowsink.queue.segments import list_segments

ORIGINAL = {seq: (f"192.0.2.{seq % 9}", bytes([seq % 251]) * (seq * 37 % 300)) for seq in range(1, 41)}


def _build(directory: Path) -> bytes:
    with PersistentQueue(directory) as writer:
        for seq, (source, payload) in ORIGINAL.items():
            writer.append(payload, source, seq)
    ((_, path),) = list_segments(directory)
    return path.read_bytes()


PRISTINE_DIR = Path(tempfile.mkdtemp(prefix="fsq-fuzz-"))
PRISTINE = _build(PRISTINE_DIR)
shutil.rmtree(PRISTINE_DIR)

damage = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, len(PRISTINE) - 1), st.integers(1, 255)),
        st.tuples(st.just("insert"), st.integers(0, len(PRISTINE)), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), st.integers(0, len(PRISTINE) - 1), st.integers(1, 64)),
    ),
    min_size=1,
    max_size=4,
)


def _apply(data: bytes, edits: list[tuple]) -> bytes:
    buffer = bytearray(data)
    for kind, offset, arg in edits:
        offset = min(offset, len(buffer))
        if kind == "flip" and offset < len(buffer):
            buffer[offset] ^= arg
        elif kind == "insert":
            buffer[offset:offset] = arg
        elif kind == "delete":
            del buffer[offset : offset + arg]
    return bytes(buffer)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=damage, final=st.booleans())
def test_damaged_segment_yields_only_intact_entries(edits: list[tuple], final: bool) -> None:
    directory = Path(tempfile.mkdtemp(prefix="fsq-fuzz-"))
    try:
        (directory / "00000000000000000001.seg").write_bytes(_apply(PRISTINE, edits))
        if final:  # a newer segment exists: the damaged one is final, its tail may be torn
            (directory / "00000000000000001000.seg").write_bytes(b"")
        with PersistentQueue(directory) as reader:
            got = []
            while entries := reader.read(100, 0):
                got.extend(entries)
            stats = reader.stats()
        seqs = [e.seq for e in got]
        assert seqs == sorted(set(seqs))
        for entry in got:
            assert (entry.source, entry.payload) == ORIGINAL[entry.seq]
            assert entry.arrival_ns == entry.seq
        if len(got) < len(ORIGINAL) and final:
            assert stats["torn_records"] + stats["corrupt_records"] >= 1
    finally:
        shutil.rmtree(directory)
