"""The ``flowsink`` command.

Each subcommand lives in the module of the stage it belongs to; that module exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``main(args) -> int``. Modules are imported only when their subcommand runs,
so ``flowsink decode`` does not pay for the Elasticsearch client or aiohttp.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from flowsink.errors import UserError

# subcommand -> module that implements it
COMMANDS: dict[str, str] = {
    "run": "flowsink.node",
    "check-config": "flowsink.config",
    "decode": "flowsink.decode.cli",
    "generate": "flowsink.generate.cli",
    "install-templates": "flowsink.sinks.elasticsearch.cli",
    "queue": "flowsink.queue.cli",
    "stack": "flowsink.stack.cli",
}

# One-line help for --help, kept here so listing subcommands imports nothing heavy.
SUMMARIES: dict[str, str] = {
    "run": "run one ingest node: UDP receivers, persistent queue, decoders, Elasticsearch sink, HTTP API",
    "check-config": "validate a configuration file and print the effective settings",
    "decode": "decode pcap/pcapng captures or raw payload files to one JSON document per line",
    "generate": "send synthetic NetFlow v5/v9, IPFIX or sFlow traffic with a ground-truth manifest",
    "install-templates": "install or upgrade the Elasticsearch index templates (done by `run` at start-up)",
    "queue": "inspect persistent queues (depth, age, checksums) and export what they hold as pcap",
    "stack": "the whole stack: up, down, status, urls (Docker Compose when an engine answers, else local)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowsink",
        description="Network flow collector: NetFlow v5/v9, IPFIX, sFlow v5 into Elasticsearch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary in SUMMARIES.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name])
    command_parser = argparse.ArgumentParser(prog=f"flowsink {name}", description=SUMMARIES[name])
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except UserError as exc:
        print(f"flowsink: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
