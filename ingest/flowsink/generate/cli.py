"""``flowsink generate v5|v9|ipfix|sflow``: synthetic exporters with a ground-truth manifest."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from flowsink.errors import UserError
from flowsink.generate.model import TrafficSettings, parse_protocol_mix
from flowsink.generate.sender import DEFAULT_PORTS, PROTOCOLS, GeneratorRun, GeneratorSettings, RunSummary

HELP = "send synthetic NetFlow v5/v9, IPFIX or sFlow traffic with a ground-truth manifest"

EXAMPLES = """\
examples:
  # IPFIX from three exporters (127.0.0.11-13) at 2000 flows/s for 30 s, manifest for check_accuracy.py
  {cmd}ipfix --exporters 3 --rate 2000 --duration 30 --manifest /tmp/ipfix.json
  # exactly 10000 NetFlow v5 flows to a remote collector, 1% malformed datagrams mixed in
  {cmd}v5 --host 192.0.2.10 --port 2055 --count 10000 --malformed-share 0.01
  # NetFlow v9 paced at 100 datagrams/s, templates every 5 s, no options data
  {cmd}v9 --datagram-rate 100 --template-refresh 5 --no-options --duration 60
  # sFlow sampled 1 in 1024, counter samples every 10 s, IPv4 only
  {cmd}sflow --sampling-rate 1024 --counter-interval 10 --ipv6-share 0 --duration 60
"""
SCRIPT_NAMES = {
    "v5": "send_netflow_v5.py",
    "v9": "send_netflow_v9.py",
    "ipfix": "send_ipfix.py",
    "sflow": "send_sflow.py",
}


def examples(protocol: str | None) -> str:
    """The examples above, for ``flowsink generate`` or (only the lines of its protocol) for a wrapper script."""
    if protocol is None:
        return EXAMPLES.format(cmd="flowsink generate ")
    lines = EXAMPLES.format(cmd="@").splitlines()
    kept = ["examples:"]
    for comment, command in zip(lines[1::2], lines[2::2], strict=True):
        if command.strip().startswith(f"@{protocol} "):
            kept += [comment, command.replace(f"@{protocol} ", f"python scripts/{SCRIPT_NAMES[protocol]} ")]
    return "\n".join(kept) + "\n"


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser, protocol: str | None = None) -> None:
    """Options of the generator; ``protocol`` fixes the protocol (the ``send_*.py`` wrappers) instead of asking."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = examples(protocol)
    if protocol is None:
        parser.add_argument(
            "protocol", choices=PROTOCOLS, help="export protocol: NetFlow v5, v9, IPFIX or sFlow v5"
        )
    else:
        parser.set_defaults(protocol=protocol)
    target = parser.add_argument_group("target and volume")
    target.add_argument("--host", default="127.0.0.1", help="collector address (default 127.0.0.1)")
    target.add_argument(
        "--port",
        type=int,
        help="collector UDP port (default: " + ", ".join(f"{p} {n}" for p, n in DEFAULT_PORTS.items()) + ")",
    )
    target.add_argument(
        "--rate",
        type=_positive_float,
        default=1000.0,
        help="flows per second (sFlow: flow samples per second); default 1000",
    )
    target.add_argument(
        "--datagram-rate",
        type=_positive_float,
        help="pace datagrams per second instead of flows, e.g. --datagram-rate 200",
    )
    target.add_argument(
        "--duration", type=_positive_float, help="seconds to send (default 10 unless --count is given)"
    )
    target.add_argument(
        "--count", type=int, help="total flows (sFlow: flow samples) to send, e.g. --count 50000"
    )
    target.add_argument(
        "--exporters",
        type=int,
        default=1,
        help="simulated exporters, each from its own source address and domain (default 1)",
    )
    target.add_argument(
        "--source-base",
        help="first exporter's source address; the next ones count up from it "
        "(default 127.0.0.11 for a loopback target; else this host's address, one exporter only)",
    )
    target.add_argument(
        "--domain-base",
        type=int,
        default=100,
        help="observation domain / source id / engine id of the first exporter, +1 per exporter",
    )
    model = parser.add_argument_group("traffic shape")
    model.add_argument("--seed", type=int, default=1, help="random seed: the same seed sends the same flows")
    model.add_argument(
        "--ipv6-share",
        type=_share,
        default=None,
        help="share of IPv6 flows, 0..1 (default 0.2; v5 carries IPv4 only)",
    )
    model.add_argument(
        "--protocol-mix",
        default="tcp=0.75,udp=0.22,icmp=0.03",
        help="shares of transports, e.g. tcp=0.6,udp=0.35,icmp=0.05",
    )
    model.add_argument("--hosts", type=int, default=2000, help="client host pool size (Zipf-ranked talkers)")
    templates = parser.add_argument_group("templates and options (v9, IPFIX)")
    templates.add_argument(
        "--template-refresh",
        type=_positive_float,
        default=10.0,
        help="seconds between template (and options data) refreshes; default 10",
    )
    templates.add_argument(
        "--no-options",
        action="store_true",
        help="send no options templates/data (interface names, sampling interval)",
    )
    templates.add_argument(
        "--sampling-interval",
        type=int,
        default=1,
        help="sampling interval announced in options data (v9/IPFIX) or the v5 header; "
        "counts in the manifest are multiplied by it (default 1: unsampled)",
    )
    templates.add_argument(
        "--no-ipfix-extras",
        action="store_true",
        help="IPFIX without the variable-length (applicationName) and enterprise fields",
    )
    sflow = parser.add_argument_group("sFlow")
    sflow.add_argument(
        "--sampling-rate", type=int, default=512, help="sFlow 1-in-N packet sampling (default 512)"
    )
    sflow.add_argument(
        "--counter-interval",
        type=float,
        default=5.0,
        help="seconds between interface counter samples per agent; 0 turns them off",
    )
    wire = parser.add_argument_group("datagrams")
    wire.add_argument(
        "--malformed-share",
        type=_share,
        default=0.0,
        help="chance per datagram of an extra deliberately malformed one, e.g. 0.01",
    )
    wire.add_argument(
        "--max-datagram-bytes", type=int, default=1400, help="datagram size limit (default 1400)"
    )
    wire.add_argument(
        "--records-per-datagram",
        type=int,
        help="at most this many flows per datagram (default: as many as fit; v5 at most 30)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--manifest",
        type=Path,
        help="ground-truth manifest (JSON, rewritten every second, final at the end; the per-5-tuple "
        "table goes beside it as NAME.tuples.jsonl)",
    )
    out.add_argument(
        "--no-progress", action="store_true", help="no progress bar (the summary is still printed)"
    )
    out.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def settings_from_args(args: argparse.Namespace) -> GeneratorSettings:
    """Validate the options into settings; problems become a one-line ``UserError``."""
    try:
        mix = parse_protocol_mix(args.protocol_mix)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.exporters < 1 or args.exporters > 200:
        raise UserError(f"--exporters must be 1..200, got {args.exporters}")
    if args.count is not None and args.count < 1:
        raise UserError(f"--count must be positive, got {args.count}")
    ipv6_share = 0.2 if args.ipv6_share is None else args.ipv6_share
    if args.protocol == "v5":
        if args.ipv6_share:
            raise UserError("NetFlow v5 carries IPv4 only: drop --ipv6-share")
        ipv6_share = 0.0
    if args.protocol == "sflow" and args.sampling_rate < 1:
        raise UserError(f"--sampling-rate must be at least 1, got {args.sampling_rate}")
    if args.manifest is not None and not args.manifest.resolve().parent.is_dir():
        raise UserError(
            f"--manifest {args.manifest}: directory {args.manifest.resolve().parent} does not exist"
        )
    duration = args.duration if args.duration is not None else (None if args.count else 10.0)
    return GeneratorSettings(
        protocol=args.protocol,
        host=args.host,
        port=args.port,
        rate=args.rate,
        datagram_rate=args.datagram_rate,
        duration=duration,
        count=args.count,
        exporters=args.exporters,
        source_base=args.source_base,
        domain_base=args.domain_base,
        traffic=TrafficSettings(seed=args.seed, ipv6_share=ipv6_share, protocol_mix=mix, hosts=args.hosts),
        template_refresh_s=args.template_refresh,
        options=not args.no_options,
        sampling_interval=max(args.sampling_interval, 1),
        ipfix_extras=not args.no_ipfix_extras,
        sflow_sampling_rate=args.sampling_rate,
        counter_interval_s=args.counter_interval,
        malformed_share=args.malformed_share,
        max_datagram_bytes=args.max_datagram_bytes,
        records_per_datagram=args.records_per_datagram,
        manifest=args.manifest,
        progress=not args.no_progress,
    )


def print_summary(summary: RunSummary, as_json: bool) -> None:
    totals = summary.manifest["totals"]
    if as_json:
        print(
            json.dumps(
                {
                    "flows": summary.flows,
                    "datagrams": summary.datagrams,
                    "malformed": summary.malformed,
                    "elapsed_s": round(summary.elapsed_s, 3),
                    "flow_rate": round(summary.flow_rate, 1),
                    "datagram_rate": round(summary.datagram_rate, 1),
                    "reached": summary.reached,
                    "totals": totals,
                }
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sent {summary.manifest['protocol']} to {summary.manifest['target']}")
    for column in ("exporter", "flows", "bytes", "packets", "datagrams", "malformed"):
        table.add_column(column, justify="right")
    for address, exporter in summary.manifest["exporters"].items():
        table.add_row(
            address,
            f"{exporter['flows']:,}",
            f"{exporter['bytes']:,}",
            f"{exporter['packets']:,}",
            f"{exporter['datagrams']:,}",
            f"{exporter['malformed_datagrams']:,}",
        )
    table.add_row(
        "total",
        f"{totals['flows']:,}",
        f"{totals['bytes']:,}",
        f"{totals['packets']:,}",
        f"{totals['datagrams']:,}",
        f"{totals['malformed_datagrams']:,}",
        style="bold",
    )
    console = Console(stderr=True)
    console.print(table)
    verdict = "target reached" if summary.reached else "[red]target NOT reached[/]"
    console.print(
        f"{summary.elapsed_s:.2f} s, {summary.flow_rate:,.0f} flows/s, {summary.datagram_rate:,.0f} "
        f"datagrams/s (target {summary.target_rate:,.0f} {summary.target_unit}: {verdict})"
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    summary = GeneratorRun(settings_from_args(args)).run()
    print_summary(summary, args.json)
    return 0


def script_main(protocol: str, description: str, argv: list[str] | None = None) -> int:
    """Entry point of the ``scripts/send_*.py`` wrappers: the same options, the protocol fixed."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser, protocol=protocol)
    args = parser.parse_args(argv)
    try:
        return main(args)
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
