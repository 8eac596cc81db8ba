"""For the flows API tests: a real API server process (``python -m flowsink.api``) on a free port, a client,
and the hourly sums a set of rows must give."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import urllib3

TOKEN = "test-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiClient:
    """POST/GET helpers against an API at ``http://127.0.0.1:<port>``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = urllib3.PoolManager(maxsize=16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, body: bytes | list, headers: dict | None = None):
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.http.request(
            "POST", self.url + "/flows", body=data,
            headers={**AUTH, "Content-Type": "application/json", **(headers or {})}, retries=False, timeout=60,
        )  # fmt: skip

    def get(self, query: str, headers: dict | None = None):
        return self.http.request(
            "GET", f"{self.url}/flows?{query}", headers=headers if headers is not None else AUTH, retries=False,
            timeout=60,
        )  # fmt: skip

    def get_hour(self, hour: int) -> list[dict]:
        response = self.get(f"hour={hour}")
        assert response.status == 200, response.data
        # json, not orjson: sums beyond 64 bits must stay exact integers
        return json.loads(response.data)


class ApiProcess(ApiClient):
    """One API server subprocess; ``kill`` is SIGKILL (a crash), ``start`` again reuses port and queue."""

    def __init__(self, es_url: str, prefix: str, queue_dir: Path, *extra: str) -> None:
        super().__init__(free_port())
        self.es_url = es_url
        self.prefix = prefix
        self.queue_dir = queue_dir
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.log_path = queue_dir.parent / f"api-{self.port}.log"

    def start(self, timeout_s: float = 60.0) -> ApiProcess:
        cmd = [
            sys.executable, "-m", "flowsink.api", "--port", str(self.port), "--es", self.es_url,
            "--index-prefix", self.prefix, "--queue-dir", str(self.queue_dir), "--token", TOKEN,
            "--token", "test-token-2", *self.extra,
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed when it exits
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if (
                    self.http.request("GET", self.url + "/openapi.json", retries=False, timeout=2).status
                    == 200
                ):
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"API server not up after {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def expected_sums(rows: list[dict]) -> dict[int, list[dict]]:
    """What GET /flows must answer for each hour, computed from the rows sent."""
    sums: dict[tuple, list[int]] = {}
    for row in rows:
        key = (row["hour"], row["src_app"], row["dest_app"], row["vpc_id"])
        acc = sums.setdefault(key, [0, 0])
        acc[0] += row["bytes_tx"]
        acc[1] += row["bytes_rx"]
    by_hour: dict[int, list[dict]] = {}
    for (hour, src, dst, vpc), (tx, rx) in sorted(sums.items()):
        by_hour.setdefault(hour, []).append(
            {"src_app": src, "dest_app": dst, "vpc_id": vpc, "bytes_tx": tx, "bytes_rx": rx, "hour": hour}
        )
    return by_hour


def delete_indices(es, prefix: str) -> None:
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
