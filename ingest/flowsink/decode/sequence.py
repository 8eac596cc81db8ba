"""Sequence tracking: gaps, estimated lost records, reordering and exporter restarts, from export sequence numbers.

Every protocol numbers what it exports: NetFlow v5 counts flows, NetFlow v9 counts packets, IPFIX counts data
records, sFlow counts datagrams (per agent + sub-agent) and samples (per source id). One ``SequenceTracker`` per
decoder serves any of them: ``observe(stream, sequence, count)`` says "this export carries units
``sequence .. sequence + count - 1``".

A hole is not counted at once: it stays *open* while the stream has advanced less than ``window`` units past it,
so a late (reordered) export can still fill it; only then is it counted as a gap and its units as lost. A quiet
exporter may take hours to advance ``window`` units, or stop altogether: ``close_stale`` also counts holes open
longer than a few seconds (reordering on a network never lasts that long), which the pipeline calls on a timer.
Counters therefore only ever grow, as Prometheus counters must. A sequence number far behind the head (more
than ``window``), or an uptime going backwards, is an exporter restart: the stream starts over, nothing lost.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

MAX_OPEN_HOLES = 64


@dataclass(slots=True)
class SequenceOutcome:
    """What one observation changed: units now counted lost (and how many gaps), reordering, restarts."""

    gaps: int = 0
    lost: int = 0
    lost_records: int = 0
    reordered: int = 0
    duplicates: int = 0
    restart: bool = False

    def add_to(self, stats: dict[str, int]) -> None:
        """Add this outcome to a ``DecodeResult.stats`` counter under the stable key names."""
        if self.gaps:
            stats["sequence_gaps"] += self.gaps
            stats["lost_records"] += self.lost_records
        if self.restart:
            stats["sequence_restarts"] += 1
        if self.reordered:
            stats["sequence_reordered"] += self.reordered
        if self.duplicates:
            stats["sequence_duplicates"] += self.duplicates


@dataclass(slots=True)
class _Stream:
    head: int  # next expected sequence number (modulo)
    uptime_ms: int | None
    holes: list[list[int]] = field(default_factory=list)  # open [start, length] ranges, oldest first
    opened: list[float] = field(default_factory=list)  # monotonic time each hole was opened
    records_per_unit: float = 1.0


class SequenceTracker:
    """Per-stream sequence state, bounded in streams (least recently seen dropped) and open holes."""

    def __init__(self, window: int = 10_000, modulus: int = 1 << 32, max_streams: int = 100_000) -> None:
        self.window = window
        self.modulus = modulus
        self.max_streams = max_streams
        self.streams: OrderedDict[Hashable, _Stream] = OrderedDict()

    def observe(
        self,
        stream: Hashable,
        sequence: int,
        count: int,
        uptime_ms: int | None = None,
        records: int | None = None,
    ) -> SequenceOutcome:
        """Account for one export of ``count`` units starting at ``sequence``.

        ``records``: how many records the export carried, when units are not records (NetFlow v9 counts
        packets): lost records are then estimated from the stream's average records per unit.
        ``uptime_ms``: the exporter's uptime, when the protocol has one; going backwards means a restart.
        """
        outcome = SequenceOutcome()
        modulus = self.modulus
        state = self.streams.get(stream)
        if state is None:
            self._start(stream, sequence, count, uptime_ms, records)
            return outcome
        self.streams.move_to_end(stream)
        if records is not None and count > 0:
            state.records_per_unit += (records / count - state.records_per_unit) * 0.1
        restarted = (
            uptime_ms is not None and state.uptime_ms is not None and uptime_ms + 1000 < state.uptime_ms
        )
        ahead = (sequence - state.head) % modulus
        behind = (state.head - sequence) % modulus
        if not restarted and behind and behind <= ahead:
            if behind > self.window:
                restarted = True
            else:
                self._late(state, sequence, count, outcome)
                if uptime_ms is not None:
                    state.uptime_ms = max(state.uptime_ms or 0, uptime_ms)
                return outcome
        if restarted:
            self._close_all(state, outcome)
            outcome.restart = True
            self._start(stream, sequence, count, uptime_ms, records)
            return outcome
        if ahead:
            state.holes.append([state.head, ahead])  # [start, length]
            state.opened.append(time.monotonic())
        state.head = (sequence + count) % modulus
        state.uptime_ms = uptime_ms
        self._close_old(state, outcome)
        return outcome

    def forget(self, stream: Hashable) -> None:
        """Drop a stream's state (its next export starts afresh): used when an export's count is unknown."""
        self.streams.pop(stream, None)

    def _start(
        self, stream: Hashable, sequence: int, count: int, uptime_ms: int | None, records: int | None
    ) -> None:
        per_unit = records / count if records and count else 1.0
        self.streams[stream] = _Stream(
            (sequence + count) % self.modulus, uptime_ms, records_per_unit=per_unit
        )
        self.streams.move_to_end(stream)
        while len(self.streams) > self.max_streams:
            self.streams.popitem(last=False)

    def _late(self, state: _Stream, sequence: int, count: int, outcome: SequenceOutcome) -> None:
        """A reordered export: fill the open hole it belongs to, or it is a duplicate."""
        modulus = self.modulus
        for index, (start, length) in enumerate(state.holes):
            offset = (sequence - start) % modulus
            if offset < length:
                outcome.reordered += 1
                covered = min(count, length - offset)
                pieces = []
                if offset:
                    pieces.append([start, offset])
                if offset + covered < length:
                    pieces.append([(start + offset + covered) % modulus, length - offset - covered])
                state.holes[index : index + 1] = pieces
                state.opened[index : index + 1] = [state.opened[index]] * len(pieces)
                return
        outcome.duplicates += 1

    def _close_old(self, state: _Stream, outcome: SequenceOutcome) -> None:
        modulus = self.modulus
        while state.holes:
            start, length = state.holes[0]
            distance = (state.head - (start + length)) % modulus
            if distance <= self.window and len(state.holes) <= MAX_OPEN_HOLES:
                break
            state.holes.pop(0)
            state.opened.pop(0)
            self._count(state, length, outcome)

    def _close_all(self, state: _Stream, outcome: SequenceOutcome) -> None:
        for _, length in state.holes:
            self._count(state, length, outcome)
        state.holes.clear()
        state.opened.clear()

    @staticmethod
    def _count(state: _Stream, length: int, outcome: SequenceOutcome) -> None:
        outcome.gaps += 1
        outcome.lost += length
        outcome.lost_records += round(length * state.records_per_unit)

    def close_stale(
        self, max_age_s: float, now: float | None = None
    ) -> list[tuple[Hashable, SequenceOutcome]]:
        """Count holes open longer than ``max_age_s`` as lost; returns ``(stream, outcome)`` per stream that had any."""
        deadline = (time.monotonic() if now is None else now) - max_age_s
        closed = []
        for stream, state in self.streams.items():
            if not state.opened or state.opened[0] > deadline:
                continue
            outcome = SequenceOutcome()
            while state.opened and state.opened[0] <= deadline:  # opened in order: oldest first
                state.opened.pop(0)
                self._count(state, state.holes.pop(0)[1], outcome)
            closed.append((stream, outcome))
        return closed

    def flush(self) -> SequenceOutcome:
        """Count every still-open hole as lost (at shutdown, or in tests)."""
        outcome = SequenceOutcome()
        for state in self.streams.values():
            self._close_all(state, outcome)
        return outcome
