"""Token bucket per client credential, counted in rows (a 1-row and a 100k-row POST do not cost the same)."""

from __future__ import annotations

import time
from collections import OrderedDict

MAX_CLIENTS = 10_000  # buckets kept; the least recently used is forgotten (it refills to full anyway)


class RateLimiter:
    """``take(client, rows)`` returns 0.0 when allowed, else the seconds to wait (for ``Retry-After``)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str, amount: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        # A request larger than the whole bucket can never fit: let it through when the bucket is full, so
        # rows_limit, not the rate limit, is what bounds a single request.
        needed = min(amount, self.burst)
        if tokens >= needed:
            self._buckets[client] = (tokens - amount, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (needed - tokens) / self.rate
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait
