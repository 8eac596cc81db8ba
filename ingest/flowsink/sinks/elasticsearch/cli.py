"""``flowsink install-templates``: the index templates of a deployment, installed from the command line (the
node does the same at start-up)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from flowsink.sinks.elasticsearch.index_templates import (
    DEFAULT_TEMPLATE_DIR,
    TemplateSettings,
    install_templates,
)

HELP = "install or upgrade the Elasticsearch index templates (also done by `flowsink run` at start-up)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        help="take the cluster, credentials, TLS and index prefix from this configuration file",
    )
    parser.add_argument(
        "--es",
        "--es-url",
        dest="es_url",
        help="Elasticsearch URL(s), comma-separated (default: the configuration's)",
    )
    parser.add_argument("--ca", help="CA file for https URLs")
    parser.add_argument(
        "--user", help="basic auth user; the password comes from FLOWSINK_ELASTICSEARCH_PASSWORD"
    )
    parser.add_argument("--api-key", help="API key (base64 id:key); better: FLOWSINK_ELASTICSEARCH_API_KEY")
    parser.add_argument("--template-dir", type=Path, default=None, help="folder of *.json templates")
    parser.add_argument("--prefix", default=None, help="template and index name prefix (default: flowsink)")
    parser.add_argument(
        "--api-prefix",
        default=None,
        help="index prefix of the flows API (api.index_prefix; default: under --prefix)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for Elasticsearch")


def main(args: argparse.Namespace) -> int:
    """``flowsink install-templates``: print one line per template and what was done with it."""
    import dataclasses

    from flowsink.config import load_config
    from flowsink.sinks.elasticsearch.client import connect

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)  # our one-line error says it all
    config = load_config(args.config)
    es = config.elasticsearch
    overrides: dict[str, Any] = {}
    if args.es_url:
        overrides["url"] = [u.strip() for u in args.es_url.split(",") if u.strip()]
    if args.ca:
        overrides["ca_certs"] = args.ca
    if args.user:
        overrides["username"] = args.user
    if args.api_key:
        overrides["api_key"] = args.api_key
    if args.prefix:
        overrides["index_prefix"] = args.prefix
    es = dataclasses.replace(es, **overrides)
    es.validate()
    settings = TemplateSettings(
        template_dir=args.template_dir
        or (Path(es.template_dir) if es.template_dir else DEFAULT_TEMPLATE_DIR),
        name_prefix=es.index_prefix,
        api_prefix=args.api_prefix or (config.api.index_prefix or None),
        document_profile=es.document_profile,
        connect_timeout_s=args.timeout,
    )
    client = connect(es)
    try:
        for line in install_templates(client, settings):
            print(line)
    finally:
        client.close()
    return 0
