"""The whole flowsink stack: ``flowsink stack up|down|status|urls``.

Docker Compose (``docker.py``, the repository's ``docker-compose.yml``) when a Docker engine answers, else the
same stack as local processes (``local.py``: nginx in front of N ingest nodes, Prometheus and its exporters,
Elasticsearch). Beside them: the nginx configuration they share (``nginx.py``), the ingest container's entry
point (``entrypoint.py``), the Kibana and Grafana dashboards as code (``kibana.py``, ``grafana.py``), loading
the Kibana objects (``kibana_import.py``), demo traffic (``demo.py``) and the checks that keep dashboards,
alerts, metrics and index templates consistent (``checks.py``). docs/stack.md describes the stack.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flowsink import assets


class StackError(RuntimeError):
    """A stack step failed; the message says which and where its log is."""


def log(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def default_run_dir(environ: dict[str, str] | None = None) -> Path:
    """``FLOWSINK_STACK_DIR``, else ``.run/stack`` in the source checkout (or the current folder outside one)."""
    env = os.environ if environ is None else environ
    if env.get("FLOWSINK_STACK_DIR"):
        return Path(env["FLOWSINK_STACK_DIR"]).resolve()
    root = assets.checkout_root()
    return ((root if root is not None else Path.cwd()) / ".run" / "stack").resolve()
