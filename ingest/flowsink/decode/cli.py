"""``flowsink decode [--exporter IP] [--config FILE] FILE...``: captures or raw payloads -> one JSON document per line.

With ``--config`` the configuration's ``enrich`` section applies (and its ``decode.renormalize``), so the documents
are those a node with that file indexes.

Files are read in the order given through one ``FlowDecoder``, so templates from an earlier file decode data in
a later one (a template capture, then a data capture). Documents go to stdout as JSON lines (orjson), the
summary (datagrams, records by kind, errors by reason, capture frames skipped) to stderr.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections import Counter
from typing import Any, BinaryIO

import orjson

from flowsink.decode import DecoderSettings, FlowDecoder
from flowsink.decode.capture import CaptureStats, read_file
from flowsink.decode.result import DecodeResult
from flowsink.errors import UserError

HELP = "decode pcap/pcapng captures or raw payload files to one JSON document per line"
ERROR_LINES_PER_REASON = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exporter",
        default="127.0.0.1",
        help="exporter address for raw payload files (.dat/.bin); captures use each packet's source address",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a node's configuration file: its enrichment (enrich section) and decode.renormalize apply",
    )
    parser.add_argument(
        "--no-renormalize",
        action="store_true",
        help="keep network.bytes/network.packets as sampled instead of multiplying by the sampling rate",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="pcap, pcapng, or a raw datagram payload")


class Summary:
    """Totals over every file, printed to stderr at the end."""

    def __init__(self) -> None:
        self.datagrams: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.printed: Counter[str] = Counter()

    def report_error(self, path: str, reason: str, detail: str) -> None:
        """One stderr line per error, at most ``ERROR_LINES_PER_REASON`` per reason (the summary counts all)."""
        self.printed[reason] += 1
        if self.printed[reason] <= ERROR_LINES_PER_REASON:
            print(f"flowsink decode: {path}: {reason}: {detail}", file=sys.stderr)
        elif self.printed[reason] == ERROR_LINES_PER_REASON + 1:
            print(f"flowsink decode: further {reason} errors counted in the summary only", file=sys.stderr)

    def add(self, result: DecodeResult) -> None:
        for key, count in result.stats.items():
            if key.startswith("records."):
                self.records[key[8:]] += count
            elif count and not key.startswith("datagrams."):
                self.stats[key] += count
        for reason, _detail in result.errors:
            self.errors[reason] += 1

    def lines(self) -> list[str]:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{key}={value}" for key, value in sorted(counter.items())) or "none"

        total = sum(self.datagrams.values())
        lines = [
            f"datagrams: {total} ({counts(self.datagrams)})",
            f"records: {sum(self.records.values())} ({counts(self.records)})",
            f"errors: {sum(self.errors.values())} ({counts(self.errors)})",
        ]
        held = self.stats["pending"]
        if held or self.stats["expired"]:
            # NetFlow v9 / IPFIX data before its template, in words: held data is counted in sets (how many
            # records a set holds is unknown without its template)
            lines.append(
                f"data sets that came before their template: {held}; decoded once it came: "
                f"{self.stats['pending_decoded']}; never decoded: {self.stats['expired']}"
                + (" (no template: their records are not in the output)" if self.stats["expired"] else "")
            )
        return [
            *lines,
            f"capture frames skipped: {counts(self.skipped)}",
            f"other counters: {counts(self.stats)}",
        ]


def _write(out: BinaryIO, documents: list[dict[str, Any]]) -> None:
    if documents:
        out.write(b"".join(orjson.dumps(doc) + b"\n" for doc in documents))


def decode_files(
    paths: list[str], exporter: str, renormalize: bool, out: BinaryIO, summary: Summary, enricher: Any = None
) -> None:
    """Decode ``paths`` in order through one decoder (adding what ``enricher`` adds), writing JSON lines to ``out``."""
    decoder = FlowDecoder(DecoderSettings(renormalize=renormalize, enricher=enricher))
    last_ns = 0
    for path in paths:
        capture_stats = CaptureStats()
        for datagram in read_file(path, capture_stats, exporter=exporter):
            result = decoder.decode(datagram.payload, datagram.src_ip, datagram.timestamp_ns)
            summary.datagrams[result.protocol or "unknown"] += 1
            summary.add(result)
            _write(out, result.documents)
            for reason, detail in result.errors:
                summary.report_error(path, reason, detail)
            last_ns = max(last_ns, datagram.timestamp_ns)
        summary.skipped.update(capture_stats.skipped)
    # whatever still waits for its template never gets it now: count it, never drop it silently
    held = decoder.expire(last_ns + 10**18)
    summary.add(held)
    for reason, detail in held.errors:
        summary.report_error("end of input", reason, detail)
    _write(out, held.documents)


def main(args: argparse.Namespace) -> int:
    try:
        ipaddress.ip_address(args.exporter)
    except ValueError as exc:
        raise UserError(f"--exporter must be an IP address, not {args.exporter!r}") from exc
    renormalize, enricher = not args.no_renormalize, None
    if args.config:  # a bad file is one line naming the key (ConfigError), before any output
        from flowsink.config import load_config
        from flowsink.enrich.enricher import build_enricher

        config = load_config(args.config)
        renormalize = renormalize and config.decode.renormalize
        # the databases opened where they are; problems are one line each on stderr (the documents go on
        # without what they would add), as a node logs them
        enricher = build_enricher(config.enrich)
        if enricher is not None and config.enrich.geoip_databases:
            print(f"# GeoIP: {enricher.describe_databases()}", file=sys.stderr)
        if config.enrich.snmp_targets:
            print(
                "# enrich.snmp_targets: names are polled by a running node only; decode adds the configured ones",
                file=sys.stderr,
            )
    summary = Summary()
    out = sys.stdout.buffer
    try:
        decode_files(args.files, args.exporter, renormalize, out, summary, enricher)
    finally:
        out.flush()
        for line in summary.lines():
            print(line, file=sys.stderr)
    return 0
