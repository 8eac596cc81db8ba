"""nginx's upstreams in the Compose stack, kept in step with the live ingest replicas (the ``nginx-watch`` service).

    flowsink stack watch --docker [--service ingest] [--config /etc/nginx/flowsink/nginx.conf]

What the local stack's nginx_watch does (``local.watch``), for replicas that Compose creates, restarts and
removes. Every ``interval`` it asks Docker's DNS for the service name (the address of every running replica)
and each known replica's ``/readyz``, then renders nginx's configuration with one server line per replica
address (``nginx.docker_settings``: a single ``server ingest:PORT`` would make the consistent hash round-robin)
and makes nginx reload it when anything changed:

- a replica that does not answer two checks in a row is marked ``down``: it keeps its place on the hash ring, so only its
  exporters move, to the next replica, and they come back when it answers again (a killed replica restarts
  under the restart policy at the same address);
- a new address (``--scale ingest=N`` up), or a replica marked down, is put in once /readyz says ready;
- an address that has been gone from DNS for ``forget_after_s`` (a replica removed by scaling down) leaves the
  ring.

nginx reads the file this writes (a volume both containers mount) and runs in this container's PID namespace
(``pid: service:nginx``), where its master is process 1: SIGHUP makes it reload without closing a listening
socket. The first configuration is written once at least one replica answers; nginx's command waits for it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from flowsink.stack import log
from flowsink.stack.nginx import docker_settings, render

DEFAULT_CONFIG = Path("/etc/nginx/flowsink/nginx.conf")


def resolve(name: str) -> set[str]:
    """IPv4 addresses ``name`` resolves to (Docker's DNS: one per running replica); empty when none."""
    try:
        return {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM)}
    except socket.gaierror:
        return set()


def probe(address: str, port: int = 8080, timeout_s: float = 0.5) -> str:
    """``ready`` (/readyz 200), ``alive`` (it answers, not ready: starting, or no Elasticsearch yet) or ``dead``."""
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/readyz", timeout=timeout_s) as answer:
            return "ready" if answer.status == 200 else "alive"
    except urllib.error.HTTPError:
        return "alive"
    except (urllib.error.URLError, OSError, ValueError):
        return "dead"


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))


@dataclass
class ReplicaSet:
    """Replicas on the ring, which of them are down, and when each was last seen in DNS.

    A replica on the ring stays up while it answers at all, and is marked down after ``misses_to_fail`` checks
    without an answer. A new or down replica joins (returns) only once /readyz says ready, i.e. its UDP
    receivers are bound: its HTTP server answers before that (a restarted node first drains its queue), and
    datagrams sent meanwhile would hit a closed port.
    """

    misses_to_fail: int = 2
    forget_after_s: float = 60.0
    misses: dict[str, int] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)

    def update(self, resolved: set[str], states: dict[str, str], now: float) -> None:
        for address in resolved:
            self.last_seen[address] = now
        # With nothing on the ring yet (the first configuration), answering is enough: replicas that cannot
        # reach Elasticsearch yet still queue what they receive, and nginx waits for this first file.
        first = not self.misses
        for address in list(self.last_seen):
            if address not in resolved and now - self.last_seen[address] > self.forget_after_s:
                del self.last_seen[address]
                self.misses.pop(address, None)
                continue
            state = states.get(address, "dead")
            up = address in self.misses and self.misses[address] < self.misses_to_fail
            if state == "ready" or ((up or first) and state == "alive"):
                self.misses[address] = 0
            elif address in self.misses and state == "dead":
                self.misses[address] += 1

    @property
    def ring(self) -> list[str]:
        return sorted(self.misses, key=_ip_key)

    @property
    def down(self) -> frozenset[str]:
        down = frozenset(a for a, n in self.misses.items() if n >= self.misses_to_fail)
        # with every replica gone, marking them all down would only turn datagrams into errors
        return frozenset() if down and len(down) == len(self.misses) else down


def write_config(path: Path, text: str) -> None:
    """Replace the file in one rename, so nginx never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    os.replace(partial, path)


def reload_nginx(pid: int = 1) -> None:
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        log("nginx is not running (yet): it reads the configuration when it starts")


def watch(service: str, config: Path, interval_s: float = 0.5, forget_after_s: float = 60.0) -> None:
    """Run until SIGTERM; see the module's docstring."""
    replicas = ReplicaSet(forget_after_s=forget_after_s)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    written: tuple[list[str], frozenset[str]] | None = None
    while not stopping:
        resolved = resolve(service)
        candidates = resolved | set(replicas.misses)
        # in parallel: a dead replica's address costs a whole timeout
        with ThreadPoolExecutor(max(1, len(candidates))) as pool:
            states = dict(zip(candidates, pool.map(probe, candidates), strict=True))
        replicas.update(resolved, states, time.monotonic())
        state = (replicas.ring, replicas.down)
        if state[0] and state != written:
            write_config(config, render(docker_settings(*state)))
            if written is not None:
                reload_nginx()
            log(f"nginx upstreams: {', '.join(state[0])}; down: {', '.join(sorted(state[1])) or 'none'}")
            written = state
        time.sleep(interval_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", default="ingest", help="Compose service of the ingest replicas")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="nginx configuration to write")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between checks")
    parser.add_argument(
        "--forget-after", type=float, default=60.0, help="seconds a removed replica stays on the ring"
    )
