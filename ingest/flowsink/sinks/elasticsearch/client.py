"""Connections to Elasticsearch: clients built from ``ElasticsearchSettings``, one-line reasons for failures,
and waiting for a cluster at start-up. Shared by the output, the template installer and the flows API."""

from __future__ import annotations

import re
import time
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from flowsink.errors import UserError
from flowsink.sinks.elasticsearch.settings import ElasticsearchSettings


class BulkBodySerializer(NdjsonSerializer):
    """Sends a ready NDJSON body as it is.

    The stock serializer copies a bytes body into a bytearray and that into new bytes: two copies of every
    request (10 MiB each), 13% of a pipeline worker's time in bench/bench_end_to_end.py's profile.
    """

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


# what the output's clients are built with: orjson for JSON, bulk bodies passed through
CLIENT_SERIALIZERS = {
    "serializers": {
        OrjsonSerializer.mimetype: OrjsonSerializer(),
        NdjsonSerializer.mimetype: BulkBodySerializer(),
    }
}


def connect(settings: ElasticsearchSettings, **overrides: Any) -> Elasticsearch:
    """An elasticsearch-py client on every configured URL, with the section's auth, TLS and timeouts."""
    return Elasticsearch(settings.url, **settings.client_kwargs(**overrides))


def client_url(client: Elasticsearch) -> str:
    nodes = client.transport.node_pool.all()
    return nodes[0].base_url if nodes else "(no hosts)"


def short_reason(exc: BaseException) -> str:
    """One short phrase for why a request failed (the client's own messages nest several exceptions deep)."""
    if isinstance(exc, ApiError):
        error = exc.body.get("error") if isinstance(exc.body, dict) else None
        kind = error.get("type") if isinstance(error, dict) else exc.message
        return f"HTTP {exc.meta.status} {kind}"
    chain, cause = [], exc
    while cause is not None and len(chain) < 5:  # the socket error sits a few causes down
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    text = " | ".join(chain)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]|]+)", text)
    if errno:
        return errno.group(1).strip()
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "timed out"
    return chain[0].splitlines()[0][:200] if chain[0] else type(exc).__name__


def wait_for_elasticsearch(client: Elasticsearch, timeout_s: float) -> None:
    """Return once the cluster answers; raise ``UserError`` naming the URL and the reason after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            client.options(request_timeout=max(1.0, min(remaining, 5.0)), max_retries=0).cluster.health()
            return
        except (TransportError, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.meta.status < 500:
                return  # it answers; the status problem will surface with a clearer message on the real call
            if time.monotonic() + 0.5 >= deadline:
                raise UserError(
                    f"cannot reach Elasticsearch at {client_url(client)}: {short_reason(exc)}"
                ) from None
            time.sleep(0.5)
