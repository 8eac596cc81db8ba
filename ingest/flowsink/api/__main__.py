"""``python -m flowsink.api``: the flows API alone on one port (no UDP, no pipeline).

For benchmarks, crash tests and trying the API against an Elasticsearch; ``flowsink run`` serves the same
routes next to /metrics on a full node.
"""

from __future__ import annotations

import argparse
import logging
import os

from aiohttp import web

from flowsink.api import ApiSettings, setup


def build_parser() -> argparse.ArgumentParser:
    defaults = ApiSettings()
    parser = argparse.ArgumentParser(prog="python -m flowsink.api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--es", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    parser.add_argument("--index-prefix", default="flowsink-app-flows")
    parser.add_argument("--queue-dir", required=True)
    parser.add_argument("--token", action="append", default=[], help="accepted bearer token (repeatable)")
    parser.add_argument(
        "--no-auth", action="store_true", help="accept requests without a token (local use only)"
    )
    parser.add_argument("--node-id", default="")
    parser.add_argument("--compact-interval-s", type=float, default=defaults.compact_interval_s)
    parser.add_argument("--rate-limit-rows-per-s", type=float, default=defaults.rate_limit_rows_per_s)
    parser.add_argument("--rate-limit-burst-rows", type=int, default=defaults.rate_limit_burst_rows)
    parser.add_argument("--no-read-your-writes", action="store_true")
    parser.add_argument("--body-limit-bytes", type=int, default=defaults.body_limit_bytes)
    parser.add_argument("--rows-limit", type=int, default=defaults.rows_limit)
    parser.add_argument("--queue-max-bytes", type=int, default=defaults.queue_max_bytes)
    parser.add_argument("--apply-timeout-s", type=float, default=defaults.apply_timeout_s)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    settings = ApiSettings(
        tokens=args.token,
        auth_enabled=not args.no_auth,
        queue_dir=args.queue_dir,
        es_hosts=[args.es],
        index_prefix=args.index_prefix,
        compact_interval_s=args.compact_interval_s,
        rate_limit_rows_per_s=args.rate_limit_rows_per_s,
        rate_limit_burst_rows=args.rate_limit_burst_rows,
        read_your_writes=not args.no_read_your_writes,
        body_limit_bytes=args.body_limit_bytes,
        rows_limit=args.rows_limit,
        queue_max_bytes=args.queue_max_bytes,
        apply_timeout_s=args.apply_timeout_s,
        **({"node_id": args.node_id} if args.node_id else {}),
    )
    app = web.Application()
    setup(app, settings)
    # auto_decompress off: the API inflates gzip itself, with its size limit (see validate.decompress)
    web.run_app(
        app, host=args.host, port=args.port, access_log=None, print=lambda *_: None, auto_decompress=False
    )


if __name__ == "__main__":
    main()
