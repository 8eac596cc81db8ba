"""The sink seam: what the pipeline worker needs from an output, and nothing about any one output.

A sink takes documents as *bulk lines* (``flowsink.bulk``: ``action\\nsource\\n`` per document, the encoding
the decoders write; the action line carries the index and the deterministic id) and returns only when each
of them has a final outcome, or has been handed back to be offered again::

    outcome = sink.write(lines)       # SinkOutcome
    outcome.written                   # stored (indexed, appended, acknowledged by the broker)
    outcome.already_present           # a replay the output recognised (Elasticsearch's 409 on create)
    outcome.dead_lettered             # refused for good (mapping error, ...), kept in the dead letters
    outcome.retry_later               # the lines not placed yet: the worker keeps its batch un-acked and
                                      # offers them again (an outage, revoked credentials, ...)

The worker acknowledges a queue batch only once every line of it is written, already present or
dead-lettered. ``close()`` makes a ``write`` still retrying raise ``SinkClosed`` (its batch stays queued).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class SinkClosed(Exception):
    """``close()`` was called while ``write`` was still retrying; the caller must not ack its batch."""


@dataclass
class SinkOutcome:
    """What became of the lines given to one ``write``; ``retries`` counts re-sends inside the sink."""

    written: int = 0
    already_present: int = 0
    dead_lettered: int = 0
    retries: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    retry_later: list[bytes] = field(default_factory=list)

    def add(self, other: SinkOutcome) -> None:
        self.written += other.written
        self.already_present += other.already_present
        self.dead_lettered += other.dead_lettered
        self.retries += other.retries
        self.dead_letter_reasons.update(other.dead_letter_reasons)
        self.retry_later.extend(other.retry_later)

    @property
    def settled(self) -> int:
        """Lines with a final outcome (the ones the worker may acknowledge)."""
        return self.written + self.already_present + self.dead_lettered


@dataclass(frozen=True)
class OutputContext:
    """What every output may need from the node beyond its own settings section."""

    run_dir: Path = Path(".run/node")
    node_name: str = ""
    # create with deterministic ids (a replay is recognised) rather than ids chosen by the output
    deterministic_ids: bool = True
    # the pipeline worker's partition, for outputs that keep per-worker files
    partition: int = 0


@runtime_checkable
class Sink(Protocol):
    """An output of the pipeline (Elasticsearch, a file, Kafka)."""

    name: str

    def write(self, lines: Sequence[bytes]) -> SinkOutcome:
        """Block until every line is written, already present, dead-lettered or handed back in
        ``retry_later``; raise ``SinkClosed`` when closed meanwhile."""
        ...

    def reload(self, sections: Mapping[str, Any]) -> list[str]:
        """Take the reloadable settings of the output's section in ``sections`` (output name -> settings of a
        configuration read again on SIGHUP); returns the ``section.key`` names it applied."""
        ...

    def close(self) -> None: ...
