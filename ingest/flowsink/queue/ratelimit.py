"""A log line per kind of trouble at most every few seconds, with the count of what was not logged.

Per-datagram trouble (a full queue under a flood, a corrupt stretch of a segment) must not flood the log.
"""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """``warn(key, msg, *args)`` logs at most once per ``interval_s`` per key and says how many it held back."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` was logged within the interval; returns whether it logged."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        self._last[key] = now
        suffix = f" ({held} similar suppressed)" if held else ""
        self.logger.warning(msg + suffix, *args)
        return True
