"""For the node and pipeline tests: a minimal NetFlow v5 encoder, a node subprocess, metric scraping.

The encoder is deliberately tiny and independent of ``flowsink.generate``: the tests check flowsink's
decoders against bytes written from Cisco's v5 layout, not against flowsink's own generator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

V5_HEADER = struct.Struct("!HHIIIIBBH")
V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")


@dataclass
class V5Exporter:
    """One simulated v5 exporter; every flow gets a unique (source ip, source port) so duplicates show up."""

    engine_id: int = 1
    first_flow: int = 0  # exporters with different first_flow (multiples of 1 << 24) never share a flow key
    sequence: int = 0
    flows_sent: int = 0
    boot_s: int = field(default_factory=lambda: int(time.time()) - 3600)

    def datagram(self, count: int = 30) -> bytes:
        now = int(time.time())
        uptime_ms = (now - self.boot_s) * 1000
        header = V5_HEADER.pack(5, count, uptime_ms, now, 0, self.sequence, 0, self.engine_id, 0)
        records = []
        for _ in range(count):
            n = self.first_flow + self.flows_sent
            src = bytes([10, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])
            records.append(
                V5_RECORD.pack(
                    src, b"\xc6\x33\x64\x01", b"\x00" * 4, 1, 2, 3, 300 + n % 1000,
                    uptime_ms - 2000, uptime_ms - 1000, 1024 + (n >> 24), 443, 0x18, 6, 0, 0, 0, 24, 24,
                )
            )  # fmt: skip
            self.flows_sent += 1
        self.sequence += count
        return header + b"".join(records)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict[str, float]:
    """``/metrics`` as ``{"name{labels}": value}`` (labels as printed by prometheus-client)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def metric_sum(values: dict[str, float], name: str, **labels: str) -> float:
    """Sum of every series of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in values.items():
        base = key.split("{", 1)[0]
        if base != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


@dataclass
class NodeProcess:
    """``flowsink run --config`` as a real subprocess, with its own ports, run dir and index prefix."""

    tmp: Path
    es_url: str
    prefix: str
    settings: dict[str, Any] = field(default_factory=dict)
    udp_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def __post_init__(self) -> None:
        config = {
            "node": {"name": "test", "run_dir": str(self.tmp / "run")},
            "elasticsearch": {"url": [self.es_url], "index_prefix": self.prefix, "startup_timeout_s": 20},
            "receive": {"host": "127.0.0.1", "ports": [self.udp_port], "processes": 1},
            "http": {"host": "127.0.0.1", "port": self.http_port},
            "pipeline": {"batch_max_wait_ms": 50, "shutdown_timeout_s": 20},
            "api": {"enabled": False},
            "logging": {"level": "INFO"},
        }
        for section, values in self.settings.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:  # a top-level key (output)
                config[section] = values
        self.config_path = self.tmp / "flowsink.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/metrics"

    def start(self, wait_ready: bool = True, timeout_s: float = 60.0) -> None:
        self.log_path = self.tmp / f"node-{int(time.time() * 1000)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSINK_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowsink.cli", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait_ready:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/readyz", timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"node not ready within {timeout_s}s:\n{self.log()}")

    def send(self, payloads: list[bytes], rate_per_s: float = 0.0) -> None:
        """Send datagrams to the node's UDP port, paced at ``rate_per_s`` (0: as fast as the socket takes)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            started = time.monotonic()
            for i, payload in enumerate(payloads):
                sock.sendto(payload, ("127.0.0.1", self.udp_port))
                if rate_per_s:
                    ahead = started + (i + 1) / rate_per_s - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        time.sleep(0.3)  # children die by PR_SET_PDEATHSIG; give the kernel a moment to release the ports

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"node did not stop on SIGTERM within {timeout_s}s:\n{self.log()}") from None

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace")[-6000:]
            if self.log_path and self.log_path.exists()
            else ""
        )


def count_docs(es: Any, prefix: str, kind: str = "flows") -> int:
    es.indices.refresh(index=f"{prefix}-{kind}-*", ignore_unavailable=True, allow_no_indices=True)
    return es.count(index=f"{prefix}-{kind}-*", ignore_unavailable=True, allow_no_indices=True)["count"]


def wait_for_count(es: Any, prefix: str, expected: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        count = count_docs(es, prefix)
        if count >= expected:
            return count
        time.sleep(0.5)
    return count


def distinct_flows(es: Any, prefix: str) -> tuple[int, int]:
    """(number of distinct (observer, source ip, source port) keys, highest copies of any one key).

    The encoder above gives every flow its own source ip and port, so a key seen twice is a duplicate
    document, whatever its ``_id``.
    """
    index = f"{prefix}-flows-*"
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    buckets: list[dict[str, Any]] = []
    after = None
    while True:
        composite: dict[str, Any] = {
            "size": 10000,
            "sources": [
                {"observer": {"terms": {"field": "observer.ip"}}},
                {"ip": {"terms": {"field": "source.ip"}}},
                {"port": {"terms": {"field": "source.port"}}},
            ],
        }
        if after:
            composite["after"] = after
        response = es.search(index=index, size=0, aggs={"keys": {"composite": composite}})
        page = response["aggregations"]["keys"]
        buckets.extend(page["buckets"])
        after = page.get("after_key")
        if not page["buckets"] or not after:
            break
    return len(buckets), max((b["doc_count"] for b in buckets), default=0)


def cleanup_prefix(es: Any, prefix: str) -> None:
    """Delete the indices and templates a test created under ``prefix`` (never anything else)."""
    es.options(ignore_status=404).indices.delete(
        index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all"
    )
    for name in (
        es.options(ignore_status=404)
        .indices.get_index_template(name=f"{prefix}-*")
        .get("index_templates", [])
    ):
        es.options(ignore_status=404).indices.delete_index_template(name=name["name"])
    components = es.options(ignore_status=404).cluster.get_component_template(name=f"{prefix}-*")
    for name in components.get("component_templates", []):
        es.options(ignore_status=404).cluster.delete_component_template(name=name["name"])


class TcpProxy:
    """A TCP relay to Elasticsearch that a test can cut (connections reset, port closed) and restore.

    It makes Elasticsearch unreachable from one node without stopping the shared cluster other tests use.
    """

    def __init__(self, target_url: str) -> None:
        host_port = target_url.split("://", 1)[1].rstrip("/")
        host, _, port = host_port.partition(":")
        self.target = (host, int(port or 9200))
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the relay thread
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
