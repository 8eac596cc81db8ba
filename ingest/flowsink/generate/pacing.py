"""Exact pacing: a token bucket in its virtual-scheduling form (GCRA).

Each send of ``cost`` units is due ``cost / rate`` seconds after the previous one. Scheduling against the ideal
timeline, rather than sleeping a fixed gap after each send, makes sleep overshoot and send time cancel out, so
the long-run rate is the target to within one datagram. When the sender falls more than ``burst_s`` behind (the
machine cannot keep up), the debt is forgiven instead of sending a catch-up burst, and the shortfall is counted
so the caller can warn.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Paces sends at ``rate`` units per second (units are flows or datagrams, the caller's choice)."""

    def __init__(
        self,
        rate: float,
        burst_s: float = 0.5,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst_s = burst_s
        self.clock = clock
        self.sleep = sleep
        self.started: float | None = None
        self.next_at: float | None = None
        self.behind_s = 0.0  # schedule time given up because the sender could not keep up

    def start(self) -> None:
        self.started = self.next_at = self.clock()

    def wait(self, cost: float) -> None:
        """Block until ``cost`` units may be sent, then book them."""
        if self.next_at is None:
            self.start()
        assert self.next_at is not None
        now = self.clock()
        if self.next_at > now:
            self.sleep(self.next_at - now)
        elif now - self.next_at > self.burst_s:
            self.behind_s += now - self.next_at
            self.next_at = now
        self.next_at += cost / self.rate

    def scheduled_elapsed(self) -> float:
        """Seconds of schedule booked so far (what the units sent should have taken at the target rate)."""
        if self.started is None or self.next_at is None:
            return 0.0
        return self.next_at - self.started

    def finish(self) -> float:
        """Wait out the last booked slot; returns the elapsed seconds since start."""
        if self.started is None or self.next_at is None:
            return 0.0
        now = self.clock()
        if self.next_at > now:
            self.sleep(self.next_at - now)
        return self.clock() - self.started
