"""Send real NetFlow v9, IPFIX and sFlow captures through the stack's front from several exporter addresses.

    flowsink stack demo [--host 127.0.0.1] [--exporters 127.0.0.2,127.0.0.3,127.0.0.4] [--fixtures DIR]

Each exporter address (any 127.x.y.z works on Linux loopback) sends, in order, a NetFlow v9 datagram with its
template to UDP 2055, an IPFIX session (templates, options, data) to 4739 and an sFlow v5 datagram with flow
and counter samples to 6343: captures from ../shared/fixtures beside the checkout (sources in its SOURCES.md). Then look for them
in Kibana, or: ``curl 'localhost:9200/flowsink-flows-*/_search?q=observer.ip:127.0.0.2'``.
``tests/test_stack_local.py`` sends the same traffic and checks every record.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

from flowsink import assets

HELP = "send real NetFlow v9, IPFIX and sFlow captures through the stack's front from several exporters"
# ../shared/fixtures beside the source checkout (outside one: beside the current folder)
FIXTURES = (assets.checkout_root() or Path.cwd()).parent / "shared" / "fixtures"
# (front port, capture files in the order an exporter sends them)
TRAFFIC: tuple[tuple[int, list[str]], ...] = (
    (2055, ["telegraf/netflow_v9_example/netflow_v9.bin"]),
    (4739, [f"telegraf/ipfix_example/ipfix_{i}.bin" for i in range(7)]),
    (6343, ["telegraf/sflow_issue_15918/message.bin"]),
)


def payloads(files: list[str], fixtures: Path = FIXTURES) -> list[bytes]:
    return [(fixtures / name).read_bytes() for name in files]


def send(sender: str, host: str, port: int, datagrams: list[bytes], pause_s: float = 0.005) -> None:
    """Send ``datagrams`` from address ``sender`` (any port) to ``host:port``, in order."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((sender, 0))
        for datagram in datagrams:
            sock.sendto(datagram, (host, port))
            time.sleep(pause_s)


def send_all(exporters: list[str], host: str = "127.0.0.1", fixtures: Path = FIXTURES) -> int:
    """Every exporter sends all of TRAFFIC; returns the number of datagrams sent."""
    sent = 0
    for exporter in exporters:
        for port, files in TRAFFIC:
            datagrams = payloads(files, fixtures)
            send(exporter, host, port, datagrams)
            sent += len(datagrams)
    return sent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the stack's front (nginx)")
    parser.add_argument(
        "--exporters", default="127.0.0.2,127.0.0.3,127.0.0.4", help="comma-separated sources"
    )
    parser.add_argument("--fixtures", type=Path, default=FIXTURES, help="the shared fixtures folder")


def main(args: argparse.Namespace) -> int:
    exporters = [address.strip() for address in args.exporters.split(",") if address.strip()]
    sent = send_all(exporters, args.host, args.fixtures)
    print(f"sent {sent} datagrams from {', '.join(exporters)} to {args.host}:2055/4739/6343")
    return 0
