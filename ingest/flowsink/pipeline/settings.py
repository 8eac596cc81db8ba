"""Settings of the pipeline workers (the ``pipeline`` section)."""

from __future__ import annotations

from dataclasses import dataclass

from flowsink.settings import setting


@dataclass
class PipelineSettings:
    """The ``pipeline`` section."""

    deterministic_ids: bool = setting(
        True,
        help="on: decoder ids + create (replays skip with 409); off: auto ids + index (faster, may duplicate)",
    )
    batch_max_datagrams: int = setting(
        500, min=1, max=1_000_000, reloadable=True, help="datagrams read from the queue per batch"
    )
    batch_max_wait_ms: int = setting(
        200, min=1, max=60_000, reloadable=True, help="how long a worker waits to fill a batch"
    )
    shutdown_timeout_s: float = setting(
        30.0, min=0, help="on SIGTERM, how long to keep draining the queue and finishing bulks"
    )
