"""Several outputs at once (``output: [elasticsearch, file]``): every document goes to each.

A line is settled once every output settled it. When some output hands lines back, the fan-out remembers
which output still owes which lines: the worker's next ``write`` is, by the seam's contract, the re-offer of
exactly the lines handed back, and each goes only to the outputs that still need it, so an output that has
them already never receives them twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowsink.sinks.base import Sink, SinkOutcome


class FanoutSink:
    name = "fanout"

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self._owed: list[list[bytes]] | None = None  # per output, the lines it handed back last time

    def write(self, lines: Sequence[bytes]) -> SinkOutcome:
        offered = self._owed if self._owed is not None else [list(lines)] * len(self.sinks)
        total = SinkOutcome()
        owed: list[list[bytes]] = []
        for sink, share in zip(self.sinks, offered, strict=True):
            outcome = sink.write(share) if share else SinkOutcome()
            owed.append(outcome.retry_later)
            total.retries += outcome.retries
            total.dead_lettered += outcome.dead_lettered
            total.dead_letter_reasons.update(outcome.dead_letter_reasons)
        # the union of what is still owed, in first-seen order: what the worker must keep and offer again
        total.retry_later = list(dict.fromkeys(line for share in owed for line in share))
        self._owed = owed if total.retry_later else None
        total.written = len(offered[0]) if self._owed is None else 0
        return total

    def reload(self, sections: Mapping[str, Any]) -> list[str]:
        applied: list[str] = []
        for sink in self.sinks:
            applied += sink.reload(sections)
        return applied

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
