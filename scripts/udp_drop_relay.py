#!/usr/bin/env python3
"""A UDP relay that drops a share of datagrams on purpose: a fault to put between exporters and a collector.

Each datagram is forwarded from a socket bound to the original sender's address (on loopback any 127.x address
can be bound), so the collector still sees which exporter sent it. Drops are drawn from a seeded generator, so
a run can be repeated; the report says per exporter how many datagrams came in, went out and were dropped, and in
how many runs of consecutive drops (what a collector's sequence-gap counter should show).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import socket
import sys
import time
from pathlib import Path

EXAMPLES = """\
examples:
  # drop 1% of datagrams between generator and a node on UDP 4739, report to /tmp/drops.json
  python scripts/udp_drop_relay.py --listen 127.0.0.1:5739 --target 127.0.0.1:4739 --drop-share 0.01 \\
      --seed 7 --report /tmp/drops.json
  flowsink generate ipfix --port 5739 --exporters 3 --duration 30 --manifest /tmp/m.json
  # drop only between 2 s and 20 s after the first datagram, so every hole is followed by later traffic
  python scripts/udp_drop_relay.py --listen 127.0.0.1:0 --target 127.0.0.1:2055 --drop-after 2 --drop-until 20

The relay prints "listening on HOST:PORT" on its first line, then runs until SIGINT/SIGTERM or --duration.
"""


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        type=address,
        default=("127.0.0.1", 0),
        help="address to receive on, e.g. 127.0.0.1:5739 (port 0: any free port, printed)",
    )
    parser.add_argument(
        "--target", type=address, required=True, help="collector to forward to, e.g. 127.0.0.1:4739"
    )
    parser.add_argument(
        "--drop-share", type=float, default=0.01, help="share of datagrams to drop, 0..1 (default 0.01: 1%%)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the drop decisions (default 1)")
    parser.add_argument(
        "--spare-first",
        type=int,
        default=1,
        help="never drop an exporter's first N datagrams (default 1: they carry its templates)",
    )
    parser.add_argument(
        "--drop-after",
        type=float,
        default=0.0,
        help="drop only from this many seconds after the first datagram (default 0)",
    )
    parser.add_argument(
        "--drop-until",
        type=float,
        default=float("inf"),
        help="drop only until this many seconds after the first datagram (default: always)",
    )
    parser.add_argument(
        "--keep-source",
        choices=("auto", "yes", "no"),
        default="auto",
        help="forward from the sender's own address: auto = when it is a loopback address",
    )
    parser.add_argument("--report", type=Path, help="JSON report, rewritten every second and at exit")
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until a signal)"
    )
    return parser


class Relay:
    """Receive, decide, forward; counts per exporter."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.inbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inbound.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.inbound.bind(args.listen)
        self.outbound: dict[str, socket.socket] = {}
        self.stats: dict[str, dict[str, int]] = {}
        self.last_dropped: dict[str, bool] = {}
        self.first_at: float | None = None

    def _socket_for(self, source: str) -> socket.socket:
        sock = self.outbound.get(source)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 20)
            keep = self.args.keep_source == "yes" or (
                self.args.keep_source == "auto" and source.startswith("127.")
            )
            if keep:
                sock.bind((source, 0))
            self.outbound[source] = sock
        return sock

    def _should_drop(self, source: str, stats: dict[str, int], now: float) -> bool:
        assert self.first_at is not None
        roll = (
            self.rng.random()
        )  # drawn for every datagram, so the sequence of decisions depends on the seed only
        since = now - self.first_at
        if stats["received"] <= self.args.spare_first:
            return False
        if not self.args.drop_after <= since < self.args.drop_until:
            return False
        return roll < self.args.drop_share

    def handle(self, payload: bytes, source: str) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        stats = self.stats.setdefault(
            source, {"received": 0, "forwarded": 0, "dropped": 0, "dropped_runs": 0}
        )
        stats["received"] += 1
        if self._should_drop(source, stats, now):
            stats["dropped"] += 1
            if not self.last_dropped.get(source):
                stats["dropped_runs"] += 1
            self.last_dropped[source] = True
            return
        self.last_dropped[source] = False
        self._socket_for(source).sendto(payload, self.args.target)
        stats["forwarded"] += 1

    def write_report(self) -> None:
        if self.args.report is None:
            return
        totals = {
            k: sum(s[k] for s in self.stats.values())
            for k in ("received", "forwarded", "dropped", "dropped_runs")
        }
        document = {
            "drop_share": self.args.drop_share,
            "seed": self.args.seed,
            "totals": totals,
            "exporters": self.stats,
        }
        tmp = self.args.report.with_name(self.args.report.name + ".tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        os.replace(tmp, self.args.report)

    def run(self) -> None:
        stop = False

        def on_signal(signum, frame):
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        host, port = self.inbound.getsockname()
        print(f"listening on {host}:{port}", flush=True)
        self.write_report()
        ends = time.monotonic() + self.args.duration if self.args.duration else float("inf")
        next_report = time.monotonic() + 1.0
        while not stop and time.monotonic() < ends:
            ready, _, _ = select.select([self.inbound], [], [], 0.2)
            if ready:
                # drain what is there before looking at the clock again
                self.inbound.setblocking(False)
                try:
                    while True:
                        payload, (source, _) = self.inbound.recvfrom(65535)
                        self.handle(payload, source)
                except BlockingIOError:
                    pass
                finally:
                    self.inbound.setblocking(True)
            if time.monotonic() >= next_report:
                next_report += 1.0
                self.write_report()
        self.write_report()
        totals = {k: sum(s[k] for s in self.stats.values()) for k in ("received", "forwarded", "dropped")}
        print(
            f"received {totals['received']}, forwarded {totals['forwarded']}, dropped {totals['dropped']}",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.drop_share <= 1:
        print("udp_drop_relay: error: --drop-share must be between 0 and 1", file=sys.stderr)
        return 2
    Relay(args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
