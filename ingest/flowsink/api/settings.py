"""Settings of the flows API (the ``api`` section); tests and benchmarks build them directly."""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowsink.settings import GIB, MIB, setting


@dataclass
class ApiSettings:
    """The ``api`` section: limits, tokens, where its write-ahead queue and its indices live (see
    docs/flows-api.md). Internal fields are filled in by the node from the other sections."""

    enabled: bool = setting(True, help="serve POST /flows and GET /flows")
    index_prefix: str = setting(
        "", help="indices of the flows API rows (empty: <elasticsearch.index_prefix>-app-flows)"
    )
    # A list so that a new token can be rolled out before the old is removed.
    tokens: list[str] = setting(
        factory=list, secret=True, help="bearer tokens accepted (a list, for rotation)"
    )
    auth_enabled: bool = setting(True, help="false: no token needed; ANYBODY who reaches the port can write")
    body_limit_bytes: int = setting(10 * MIB, min=1024, help="request body limit, also after gzip (413)")
    rows_limit: int = setting(100_000, min=1, help="rows per POST (413)")
    rate_limit_rows_per_s: float = setting(
        1_000_000.0,
        min=1,
        help="token bucket per credential (the token, or the peer address without auth) (429)",
    )
    rate_limit_burst_rows: int = setting(2_000_000, min=1, help="token bucket size per credential")
    queue_dir: str = setting("", help="write-ahead queue of accepted batches (empty: <queue dir>/api)")
    queue_max_bytes: int = setting(1 * GIB, min=1 * MIB, help="disk budget of that queue; full -> 503")
    read_your_writes: bool = setting(True, help="POST answers once its rows are visible to every GET")
    refresh_interval: str = setting("200ms", help="refresh interval of the aggregates index")
    compact_interval_s: float = setting(
        5.0, min=0.1, help="how often deltas of applied batches are folded into per-key totals"
    )
    apply_timeout_s: float = setting(
        10.0, min=0.1, help="POST waits this long for Elasticsearch, then answers 202 with applied: false"
    )
    es_hosts: list[str] = setting(
        factory=lambda: [os.environ.get("ES_URL", "http://127.0.0.1:9200")], internal=True
    )
    node_id: str = setting(factory=socket.gethostname, internal=True)
    # extra elasticsearch-py client arguments (auth, TLS), from the elasticsearch section
    es_client_kwargs: dict[str, Any] = setting(factory=dict, internal=True)

    def resolved(self, index_prefix: str, queue_dir: str | Path) -> ApiSettings:
        """With the empty defaults that depend on other sections filled in."""
        return dataclasses.replace(
            self, index_prefix=self.index_prefix or index_prefix, queue_dir=self.queue_dir or str(queue_dir)
        )
