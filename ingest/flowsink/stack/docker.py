"""The flowsink stack on Docker Compose: the repository's ``docker-compose.yml``, ingest nodes scaled to N.

Compose builds the ingest image from the source checkout (``build: .``), so this mode runs only in one; the
local mode (``local.py``) needs no checkout when an Elasticsearch already answers.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from flowsink import assets
from flowsink.stack import StackError

URLS = (
    ("NetFlow/IPFIX/sFlow (UDP, via nginx)", "udp://0.0.0.0:2055, 4739, 6343"),
    ("flows API (via nginx)", "http://127.0.0.1:8080/"),
    ("Elasticsearch", "http://127.0.0.1:9200"),
    ("Kibana", "http://127.0.0.1:5601"),
    ("Grafana", "http://127.0.0.1:3000"),
    ("Prometheus", "http://127.0.0.1:9090"),
)


def engine_answers(timeout_s: float = 30.0) -> bool:
    """True when a Docker client is installed and its engine answers ``docker info``."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _checkout() -> Path:
    root = assets.checkout_root()
    if root is None:
        raise StackError(
            "the Docker stack builds its image from a source checkout (docker-compose.yml, Dockerfile); "
            "run it there, or FLOWSINK_STACK_MODE=local"
        )
    return root


def compose(*args: str) -> int:
    """``docker compose ARGS`` (or the older ``docker-compose``) in the checkout; returns its exit status."""
    root = _checkout()
    plugin = subprocess.run(
        ["docker", "compose", "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    command = ["docker", "compose"] if plugin.returncode == 0 else ["docker-compose"]
    return subprocess.run([*command, *args], cwd=root, check=False).returncode


def print_urls() -> None:
    width = max(len(label) for label, _ in URLS)
    for label, url in URLS:
        print(f"  {label:<{width}}  {url}")


def run(action: str, nodes: int) -> int:
    """One ``flowsink stack`` action on the Compose stack: up, down, status or urls; returns the exit status."""
    if action == "up":
        root = _checkout()
        if not (root / ".env").exists():
            shutil.copyfile(root / ".env.example", root / ".env")
        status = compose("up", "-d", "--build", "--scale", f"ingest={nodes}")
        if status == 0:
            print_urls()
        return status
    if action == "down":
        return compose("down")
    if action == "status":
        return compose("ps")
    if action == "urls":
        print_urls()
        return 0
    raise StackError(f"`flowsink stack {action}` is for the local stack only (this one runs on Docker)")
