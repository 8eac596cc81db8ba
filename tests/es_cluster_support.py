"""A secured Elasticsearch (one node or a cluster) run by ``scripts/elasticsearch.sh``, for the fixtures
``secure_es`` and ``es_cluster`` (tests/conftest.py) and the tests of the script itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ES_SCRIPT = REPO / "scripts" / "elasticsearch.sh"


def process_alive(pid: int) -> bool:
    """True while the process runs; a zombie (killed, not yet reaped by whoever adopted the daemon) is dead."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_env_file(path: Path) -> dict[str, str]:
    """The assignments of a ``cluster.env`` as a shell that sources it sees them."""
    script = '. "$1"; printf "%s\\0" "$ES_URL" "$ES_CA_CERTS" "$ES_USERNAME" "$ES_PASSWORD"'
    done = subprocess.run(
        ["bash", "-ec", script, "read-env", str(path)], capture_output=True, text=True, check=True
    )
    names = ("ES_URL", "ES_CA_CERTS", "ES_USERNAME", "ES_PASSWORD")
    return dict(zip(names, done.stdout.split("\0")[:-1], strict=True))


@dataclass
class SecureCluster:
    """A private Elasticsearch with security on (TLS on HTTP and transport from its own CA, superuser ``elastic``),
    one node or several on loopback, run by ``scripts/elasticsearch.sh start --nodes N --secure``.

    Node ``n`` (1-based) answers at ``urls[n - 1]``; ``kill(n)`` SIGKILLs it and ``start(n)`` brings it back into
    the same cluster.
    """

    name: str
    port: int
    nodes: int
    heap: str = "512m"
    urls: list[str] = field(init=False, default_factory=list)
    ca_certs: str = field(init=False, default="")
    username: str = field(init=False, default="")
    password: str = field(init=False, default="")

    @property
    def instance_dir(self) -> Path:
        return REPO / ".run" / f"es-{self.name}"

    @property
    def env_file(self) -> Path:
        """This cluster's own ``cluster.env`` (tests never overwrite the checkout's ``.run/elasticsearch/cluster.env``)."""
        return self.instance_dir / "cluster.env"

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def env(self) -> dict[str, str]:
        """``ES_URL``, ``ES_CA_CERTS``, ``ES_USERNAME``, ``ES_PASSWORD``: what a flowsink process is given."""
        return read_env_file(self.env_file)

    def _script(self, *args: str, timeout: float = 600) -> str:
        env = dict(os.environ, ES_NAME=self.name, ES_PORT=str(self.port), ES_HEAP=self.heap)
        env["ES_ENV_FILE"] = str(self.env_file)
        done = subprocess.run(
            ["bash", str(ES_SCRIPT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        sys.stderr.write(done.stderr)
        if done.returncode != 0:
            raise RuntimeError(
                f"scripts/elasticsearch.sh {' '.join(args)} ({self.name}) failed:\n{done.stderr}"
            )
        return done.stdout

    def start(self, node: int | None = None) -> None:
        """Start every node that is not running (or only ``node``) and wait until it is in the cluster."""
        if node is None:
            self._script("start", "--nodes", str(self.nodes), "--secure")
        else:
            self._script("start", "--node", str(node))
        env = self.env
        self.urls = env["ES_URL"].split(",")
        self.ca_certs = env["ES_CA_CERTS"]
        self.username, self.password = env["ES_USERNAME"], env["ES_PASSWORD"]

    def kill(self, node: int) -> None:
        """SIGKILL one node, as a crash would."""
        self._script("kill", "--node", str(node))

    def stop(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after 60 s)."""
        self._script("stop")

    def put_role(self, name: str, descriptor: dict) -> None:
        """A file-realm role on every node (``descriptor`` as the role API takes it); native roles and API keys
        are not available with this distribution (docs/elasticsearch-cluster.md)."""
        role_file = self.instance_dir / f"role-{name}.json"
        role_file.write_text(json.dumps(descriptor))
        try:
            self._script("role", name, str(role_file))
        finally:
            role_file.unlink()

    def delete_role(self, name: str) -> None:
        self._script("role", name, "--delete")

    def add_user(self, name: str, password: str, roles: list[str]) -> None:
        """A file-realm user on every node (replaced if it exists); returns once every node authenticates it."""
        self._script("user", name, password, ",".join(roles))

    def delete_user(self, name: str) -> None:
        """Remove a file-realm user; returns once no node knows it (its credentials then get 401)."""
        self._script("user", name, "--delete")

    def pid(self, node: int) -> int | None:
        """The node's process id while it runs, else None."""
        pid_dir = self.instance_dir if self.nodes == 1 else self.instance_dir / f"node-{node}"
        try:
            pid = int((pid_dir / "es.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def client(self, hosts: list[str] | None = None, **kwargs):
        """An elasticsearch-py client on every node (or ``hosts``), as the superuser (``kwargs`` override)."""
        from elasticsearch import Elasticsearch

        options = {
            "ca_certs": self.ca_certs,
            "basic_auth": (self.username, self.password),
            "request_timeout": 60,
            **kwargs,
        }
        return Elasticsearch(hosts or self.urls, **options)

    def heal(self) -> None:
        """Every node running again and the cluster green (what a test that killed or stopped nodes left)."""
        if any(self.pid(n) is None for n in range(1, self.nodes + 1)):
            self.start()
        with self.client() as client:
            client.cluster.health(wait_for_status="green", wait_for_nodes=str(self.nodes), timeout="120s")
