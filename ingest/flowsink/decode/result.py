"""What a decoder returns for one datagram: documents, errors and counters, never an exception."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# stats key of sFlow counter records of a structure the decoder does not know, then "<enterprise>:<format>"
UNKNOWN_COUNTER_FORMAT = "sflow_unknown_counter_format."


@dataclass(slots=True)
class DecodeResult:
    """Outcome of decoding one datagram (or of expiring held data).

    ``errors`` hold ``(reason, detail)``: ``reason`` is a short label from a bounded set (it becomes a metric
    label), ``detail`` a human-readable sentence for a rate-limited log line.
    ``stats`` counts what metrics need: ``records.<kind>``, ``sequence_gaps``, ``lost_records``,
    ``pending``, ``expired``, ``templates`` ... (keys are stable; missing means 0).
    ``encoded`` holds documents already written as bulk lines (``flowsink.bulk``), when the decoder was given a
    ``BulkFormat``: then ``documents`` is empty once ``FlowDecoder.decode`` returns.
    """

    protocol: str | None = None
    documents: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    encoded: list[bytes] = field(default_factory=list)

    def error(self, reason: str, detail: str) -> None:
        self.errors.append((reason, detail))

    def merge(self, other: DecodeResult) -> None:
        self.documents.extend(other.documents)
        self.encoded.extend(other.encoded)
        self.errors.extend(other.errors)
        self.stats.update(other.stats)
