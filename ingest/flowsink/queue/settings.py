"""Settings of the persistent queue (the ``queue`` section), and how a node splits them between partitions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from flowsink.errors import ConfigError
from flowsink.settings import GIB, MIB, setting


@dataclass
class QueueSettings:
    dir: str = setting(
        "", help="queue directory (empty: <run_dir>/queue); one partition per receiver process"
    )
    max_bytes: int = setting(
        4 * GIB, min=1 * MIB, help="disk budget of the whole queue (split between partitions); full -> drops"
    )
    segment_bytes: int = setting(64 * MIB, min=64 * 1024, max=4 * GIB)
    fsync_interval_ms: int = setting(
        200, min=0, max=60_000, help="fsync at most this long after an append (0: every append)"
    )
    fsync_bytes: int = setting(
        4 * MIB, min=0, help="fsync after this many appended bytes (0: no byte trigger)"
    )

    def validate(self) -> None:
        if self.segment_bytes > self.max_bytes:
            raise ConfigError(
                f"queue.segment_bytes: must not exceed queue.max_bytes ({self.max_bytes}), got {self.segment_bytes}"
            )

    def share(self, partitions: int) -> QueueSettings:
        """The settings of one of ``partitions`` partitions: each gets an equal share of ``max_bytes``."""
        share = self.max_bytes // max(1, partitions)
        return dataclasses.replace(self, max_bytes=max(self.segment_bytes, share))
