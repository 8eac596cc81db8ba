"""Replay the UDP payloads of captures (pcap, pcapng) or raw payload files to a collector, at a given rate or with
their original spacing. Exporters stay apart: each original source address is sent from its own loopback
address (127.0.2.1, 127.0.2.2, ... in order of appearance) when the target is on this machine."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flowsink.decode.capture import CapturedDatagram, CaptureStats, read_file
from flowsink.errors import UserError
from flowsink.generate.pacing import Pacer

EXAMPLES = """\
examples:
  # a capture at 500 datagrams/s to a local node on 2055
  python scripts/replay_pcap.py flows.pcap --port 2055 --rate 500
  # with the capture's own timing, twice as fast, three times over
  python scripts/replay_pcap.py flows.pcapng --original-timing --speed 2 --loop 3
  # raw payloads (one datagram per file, in the order given): a template file before its data
  python scripts/replay_pcap.py ../shared/fixtures/logstash-codec-netflow/netflow9_test_nprobe_tpl.dat \\
      ../shared/fixtures/logstash-codec-netflow/netflow9_test_nprobe_data.dat --port 2055 --rate 10
"""


@dataclass
class ReplaySummary:
    datagrams: int
    bytes: int
    elapsed_s: float
    sources: dict[str, str]  # original source -> address it was sent from

    @property
    def rate(self) -> float:
        return self.datagrams / self.elapsed_s if self.elapsed_s > 0 else 0.0


def load(paths: list[Path]) -> tuple[list[CapturedDatagram], CaptureStats]:
    stats = CaptureStats()
    datagrams: list[CapturedDatagram] = []
    for path in paths:
        datagrams.extend(read_file(path, stats))
    return datagrams, stats


class SourceMap:
    """Original exporter address -> a socket bound to a distinct local address (or one shared socket)."""

    def __init__(self, base: str | None):
        self.base = ipaddress.IPv4Address(base) if base else None
        self.sockets: dict[str, socket.socket] = {}
        self.addresses: dict[str, str] = {}
        self.shared: socket.socket | None = None

    def socket_for(self, source: str) -> socket.socket:
        sock = self.sockets.get(source)
        if sock is not None:
            return sock
        if self.base is None:
            if self.shared is None:
                self.shared = _socket(None)
            self.addresses[source] = "(this host)"
            sock = self.shared
        else:
            local = str(self.base + len(self.addresses))
            self.addresses[source] = local
            sock = _socket(local)
        self.sockets[source] = sock
        return sock

    def close(self) -> None:
        for sock in {*self.sockets.values()}:
            sock.close()


def _socket(local: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    if local:
        sock.bind((local, 0))
    return sock


def replay(
    datagrams: list[CapturedDatagram],
    host: str,
    port: int | None,
    rate: float | None,
    speed: float,
    loops: int,
    sources: SourceMap,
    progress: bool = True,
) -> ReplaySummary:
    """Send every datagram ``loops`` times: paced at ``rate`` per second, or (``rate`` None) at the capture's own
    spacing divided by ``speed``."""
    from rich.progress import Progress

    total = len(datagrams) * loops
    pacer = Pacer(rate) if rate else None
    sent = sent_bytes = 0
    started = time.perf_counter()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("replaying", total=total)
        for _ in range(loops):
            loop_start = time.perf_counter()
            first_ns = datagrams[0].timestamp_ns if datagrams else 0
            for d in datagrams:
                if pacer is not None:
                    pacer.wait(1)
                else:
                    due = loop_start + (d.timestamp_ns - first_ns) / 1e9 / speed
                    ahead = due - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
                destination = (host, port if port is not None else (d.dst_port or 2055))
                sources.socket_for(d.src_ip).sendto(d.payload, destination)
                sent += 1
                sent_bytes += len(d.payload)
                if sent % 256 == 0:
                    bar.update(task, completed=sent)
        elapsed = pacer.finish() if pacer is not None else time.perf_counter() - started
    return ReplaySummary(sent, sent_bytes, elapsed, dict(sources.addresses))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="pcap/pcapng captures, or raw payload files (.dat/.bin: one datagram each), in order",
    )
    parser.add_argument("--host", default="127.0.0.1", help="collector address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        help="collector UDP port (default: each datagram's original destination port; 2055 for "
        "raw payload files)",
    )
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument("--rate", type=float, help="datagrams per second, e.g. --rate 1000 (default 100)")
    timing.add_argument(
        "--original-timing", action="store_true", help="keep the capture's own spacing between datagrams"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="with --original-timing: play this many times faster, e.g. --speed 10 (default 1)",
    )
    parser.add_argument("--loop", type=int, default=1, help="send the whole set this many times (default 1)")
    parser.add_argument(
        "--source-base",
        default=None,
        help="send each original exporter from its own address counting up from this one "
        "(default 127.0.2.1 for a loopback target; 'none': from this host's address)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        datagrams, stats = load(args.files)
    except UserError as exc:
        print(f"replay_pcap: error: {exc}", file=sys.stderr)
        return 2
    if not datagrams:
        print(
            f"replay_pcap: error: no UDP datagrams in {', '.join(map(str, args.files))} "
            f"(skipped: {dict(stats.skipped)})",
            file=sys.stderr,
        )
        return 2
    base = args.source_base
    if base is None:
        base = "127.0.2.1" if ipaddress.ip_address(socket.gethostbyname(args.host)).is_loopback else None
    elif base == "none":
        base = None
    if args.speed <= 0 or args.loop < 1 or (args.rate is not None and args.rate <= 0):
        print("replay_pcap: error: --speed, --rate and --loop must be positive", file=sys.stderr)
        return 2
    rate = None if args.original_timing else (args.rate or 100.0)
    sources = SourceMap(base)
    try:
        summary = replay(
            datagrams,
            args.host,
            args.port,
            rate,
            args.speed,
            args.loop,
            sources,
            progress=not args.no_progress,
        )
    finally:
        sources.close()
    print(
        f"sent {summary.datagrams} datagrams ({summary.bytes} bytes) in {summary.elapsed_s:.2f} s, "
        f"{summary.rate:.0f} datagrams/s",
        file=sys.stderr,
    )
    for original, local in summary.sources.items():
        print(f"  exporter {original} sent from {local}", file=sys.stderr)
    return 0
