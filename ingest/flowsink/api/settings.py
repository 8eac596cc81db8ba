"""Settings of the flows API: limits, tokens, where its write-ahead queue and its indices live.

``flowsink.config`` embeds these as its ``api`` section; tests and benchmarks build them directly.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ApiSettings:
    """Everything ``flowsink.api.setup`` needs; every field has a safe default except the token list."""

    enabled: bool = True
    # Bearer tokens accepted by POST and GET; a list so that a new token can be rolled out before the old is
    # removed. With auth_enabled false anybody who reaches the port can write: local use only.
    tokens: list[str] = field(default_factory=list)
    auth_enabled: bool = True
    body_limit_bytes: int = 10 * 1024 * 1024
    rows_limit: int = 100_000
    # Token bucket per client credential (the bearer token, or the peer address when auth is off).
    rate_limit_rows_per_s: float = 1_000_000.0
    rate_limit_burst_rows: int = 2_000_000
    queue_dir: str = "/var/lib/flowsink/queue/api"
    queue_max_bytes: int = 1 << 30
    es_hosts: list[str] = field(default_factory=lambda: [os.environ.get("ES_URL", "http://127.0.0.1:9200")])
    index_prefix: str = "flowsink-app-flows"
    # True: a POST is answered only once its rows are visible to searches on every node (its bulk request
    # refreshes the index); False: answered once durable and indexed, visible within refresh_interval.
    read_your_writes: bool = True
    refresh_interval: str = "200ms"
    # How often deltas of applied batches are folded into per-key totals: a read costs the totals plus the
    # deltas written since the last fold (see docs/flows-api.md, "Compaction").
    compact_interval_s: float = 5.0
    # How long a POST waits for its batch to be applied before answering 202 with "applied": false (the
    # batch is durable; the background applier keeps retrying).
    apply_timeout_s: float = 10.0
    node_id: str = field(default_factory=socket.gethostname)
    # extra elasticsearch-py client arguments (auth, TLS), as flowsink.config builds them
    es_client_kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Any) -> ApiSettings:
        """From a ``flowsink.config.Config`` (its ``api``, ``elasticsearch``, ``node`` and queue sections)."""
        if isinstance(config, ApiSettings):
            return config
        section = config.api
        copied = {
            f.name: getattr(section, f.name) for f in dataclasses.fields(cls) if hasattr(section, f.name)
        }
        copied["queue_dir"] = section.queue_dir or str(Path(config.queue_dir) / "api")
        copied["index_prefix"] = config.api_index_prefix()
        copied["es_hosts"] = list(config.elasticsearch.url)
        copied["node_id"] = config.node.name or socket.gethostname()
        from flowsink.config import elasticsearch_client_kwargs

        copied["es_client_kwargs"] = elasticsearch_client_kwargs(config)
        return cls(**copied)
