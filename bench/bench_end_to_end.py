"""End to end: flows/s from UDP datagrams to documents searchable in Elasticsearch, through a real node.

Contenders, on the same Elasticsearch in the same run, each given fresh flows every round:

- ``parallel_bulk`` (the ceiling): elasticsearch-py's ``helpers.parallel_bulk`` (4 threads, 500 actions per
  request, orjson serializer) indexing the very documents the node makes of those datagrams (decoded before
  the clock starts), ``create`` with their deterministic ids, into daily indices with flowsink's templates;
- ``node, deterministic ids``: ``flowsink run`` as a subprocess with its defaults (receivers = cores, one
  pipeline worker per partition, ``create`` + decoder ids); the clock runs from the first datagram sent
  until the last document is searchable (refresh + count);
- ``node, auto ids``: the same with ``pipeline.deterministic_ids: false`` (``index`` op, ids made by
  Elasticsearch), which shows what replay-safety costs.

Rounds are interleaved so load from other work on the machine falls on every contender alike; medians are
reported with ratios against ``parallel_bulk``. During one round of the node with deterministic ids, py-spy
samples each pipeline worker and the top frames (own time, and inclusive time of flowsink's functions) are
printed, to say where the time goes. Prints a markdown section; exits 0.

    python bench/bench_end_to_end.py            # 150k flows per round, 3 rounds
    python bench/bench_end_to_end.py --quick    # 30k flows per round, 3 rounds
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from elasticsearch import ApiError, Elasticsearch, TransportError, helpers
from elasticsearch.serializer import OrjsonSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flowsink.bulk import index_name
from flowsink.decode import FlowDecoder
from flowsink.sinks.elasticsearch.index_templates import TemplateSettings, install_templates
from run import ensure_elasticsearch

FLOWS_PER_DATAGRAM = 30
V5_HEADER = struct.Struct("!HHIIIIBBH")
V5_RECORD = struct.Struct("!4s4s4sHHIIIIHHxBBBHHBBxx")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- traffic


@dataclass
class Exporter:
    """A NetFlow v5 exporter whose every flow has its own (source ip, source port)."""

    engine_id: int
    first_flow: int
    sequence: int = 0
    boot_s: int = field(default_factory=lambda: int(time.time()) - 3600)

    def datagrams(self, flows: int) -> list[bytes]:
        out = []
        for _ in range(flows // FLOWS_PER_DATAGRAM):
            now = int(time.time())
            uptime = (now - self.boot_s) * 1000
            parts = [
                V5_HEADER.pack(5, FLOWS_PER_DATAGRAM, uptime, now, 0, self.sequence, 0, self.engine_id, 0)
            ]
            for k in range(FLOWS_PER_DATAGRAM):
                n = self.first_flow + self.sequence + k
                parts.append(
                    V5_RECORD.pack(
                        n.to_bytes(4, "big"), b"\xc6\x33\x64\x01", b"\0\0\0\0", 1, 2, 3, 300 + n % 1000,
                        uptime - 2000, uptime - 1000, 1024 + n % 50000, 443, 0x18, 6, 0, 0, 0, 24, 24,
                    )
                )  # fmt: skip
            self.sequence += FLOWS_PER_DATAGRAM
            out.append(b"".join(parts))
        return out


def send_all(port: int, payloads: list[bytes], exporters: int) -> None:
    """Blast the datagrams from ``exporters`` sockets (distinct source ports spread over the receivers)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(exporters)]
    try:
        for i, payload in enumerate(payloads):
            socks[i % exporters].sendto(payload, ("127.0.0.1", port))
            if i % 200 == 199:
                time.sleep(0.002)  # stays well inside the receive buffer; a sender can outrun any reader
    finally:
        for s in socks:
            s.close()


def count(es: Elasticsearch, prefix: str) -> int:
    pattern = f"{prefix}-flows-*"
    es.indices.refresh(index=pattern, ignore_unavailable=True, allow_no_indices=True)
    return es.count(index=pattern, ignore_unavailable=True, allow_no_indices=True)["count"]


def wait_count(es: Elasticsearch, prefix: str, target: int, timeout_s: float = 600) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if count(es, prefix) >= target:
                return time.monotonic()
        except (ApiError, TransportError) as exc:  # a shared cluster under load may refuse one search
            log(f"count failed, retrying: {exc}")
        time.sleep(0.1)
    raise RuntimeError(f"{prefix}: {count(es, prefix)} of {target} documents after {timeout_s}s")


# ---------------------------------------------------------------- contenders


class ParallelBulk:
    name = "parallel_bulk (ceiling)"

    def __init__(self, es_url: str, prefix: str) -> None:
        self.es = Elasticsearch(es_url, serializer=OrjsonSerializer(), request_timeout=120)
        self.prefix = prefix
        self.total = 0

    def round(self, payloads: list[bytes]) -> float:
        decoder = FlowDecoder()
        actions = []
        for payload in payloads:
            for doc in decoder.decode(payload, "127.0.0.1", time.time_ns()).documents:
                doc_id = doc.pop("_id")
                actions.append(
                    {
                        "_op_type": "create",
                        "_index": index_name(doc, self.prefix),
                        "_id": doc_id,
                        "_source": doc,
                    }
                )
        started = time.monotonic()
        for ok, item in helpers.parallel_bulk(self.es, actions, thread_count=4, chunk_size=500):
            if not ok:
                raise RuntimeError(f"parallel_bulk item failed: {item}")
        self.total += len(actions)
        done = wait_count(self.es, self.prefix, self.total)
        return len(actions) / (done - started)

    def close(self) -> None:
        self.es.close()


class NodeContender:
    def __init__(self, es_url: str, prefix: str, deterministic_ids: bool, workdir: Path) -> None:
        self.name = "node, deterministic ids" if deterministic_ids else "node, auto ids"
        self.prefix = prefix
        self.es = Elasticsearch(es_url, request_timeout=120)
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.http_port = free_port(socket.SOCK_STREAM)
        self.run_dir = workdir / prefix
        config = {
            "node": {"run_dir": str(self.run_dir)},
            "elasticsearch": {"url": [es_url], "index_prefix": prefix},
            "receive": {"host": "127.0.0.1", "ports": [self.udp_port]},
            "http": {"host": "127.0.0.1", "port": self.http_port},
            "pipeline": {"deterministic_ids": deterministic_ids},
            "api": {"enabled": False},
        }
        config_path = workdir / f"{prefix}.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{prefix}.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowsink.cli", "run", "--config", str(config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("FLOWSINK_")},
            )
        self._wait_ready()
        self.total = 0

    def _wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"node not ready: {self.log_path.read_text()[-2000:]}")

    def worker_pids(self) -> list[int]:
        pids = json.loads((self.run_dir / "pids.json").read_text())
        return [pid for name, pid in pids.items() if name.startswith("pipeline-")]

    def receiver_drops(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(("flowsink_udp_receive_drops{", "flowsink_queue_dropped_total{"))
        )

    def round(self, payloads: list[bytes], profile_s: float = 0.0) -> tuple[float, list[Path]]:
        flows = len(payloads) * FLOWS_PER_DATAGRAM
        started = time.monotonic()
        profiles = start_profiles(self.worker_pids(), profile_s) if profile_s else []
        send_all(self.udp_port, payloads, exporters=4)
        self.total += flows
        done = wait_count(self.es, self.prefix, self.total)
        outputs = finish_profiles(profiles)
        return flows / (done - started), outputs

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.es.close()


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- py-spy


def start_profiles(pids: list[int], seconds: float) -> list[tuple[subprocess.Popen, Path]]:
    if not shutil.which("py-spy"):
        return []
    out = []
    for pid in pids:
        path = Path(tempfile.mkstemp(prefix=f"pyspy-{pid}-", suffix=".txt")[1])
        proc = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
             "--format", "raw", "--output", str(path), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out.append((proc, path))
    return out


def finish_profiles(profiles: list[tuple[subprocess.Popen, Path]]) -> list[Path]:
    for proc, _ in profiles:
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
    return [path for _, path in profiles if path.exists() and path.stat().st_size]


def top_frames(paths: list[Path], limit: int = 12) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(own time per frame, inclusive time per flowsink frame), as shares of the samples, from raw stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if not stack or not samples.isdigit():
                continue
            n = int(samples)
            frames = stack.split(";")
            helper = any(
                (f.startswith("loop (") and "pipeline.py" in f)
                or (f.startswith("_worker (") and "thread.py" in f)
                for f in frames
            )
            if helper and "wait" in frames[-1]:
                continue  # idle helper threads (gauge timer, indexer between batches): not where time goes
            total += n
            own[_short(frames[-1])] += n
            for frame in set(frames):
                if "flowsink" in frame:
                    inclusive[_short(frame)] += n
    if not total:
        return [], []
    return (
        [(f, n / total) for f, n in own.most_common(limit)],
        [(f, n / total) for f, n in inclusive.most_common(limit)],
    )


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    module = where.rstrip(")").rsplit("/", 1)[-1].split(":")[0]
    return f"{name} ({module})"


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30k flows per round instead of 150k")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    flows = 30_000 if args.quick else 150_000
    es_url, es_version = ensure_elasticsearch()
    tag = uuid.uuid4().hex[:6]
    prefixes = {"bulk": f"bench-e2e-bulk-{tag}", "on": f"bench-e2e-on-{tag}", "off": f"bench-e2e-off-{tag}"}
    admin = Elasticsearch(es_url, request_timeout=120)
    for prefix in prefixes.values():
        install_templates(admin, TemplateSettings(name_prefix=prefix))
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    contenders: list[Any] = []
    results: dict[str, list[float]] = collections.defaultdict(list)
    profile_paths: list[Path] = []
    drops = 0.0
    try:
        contenders = [
            ParallelBulk(es_url, prefixes["bulk"]),
            NodeContender(es_url, prefixes["on"], True, workdir),
            NodeContender(es_url, prefixes["off"], False, workdir),
        ]
        exporters = [Exporter(engine_id=i, first_flow=i << 28) for i in range(1, 4)]
        for round_ in range(args.rounds):
            for contender in contenders:
                payloads = exporters[contenders.index(contender)].datagrams(flows)
                if isinstance(contender, ParallelBulk):
                    rate = contender.round(payloads)
                else:
                    profile_s = 8 if round_ == args.rounds - 1 and "deterministic" in contender.name else 0
                    rate, paths = contender.round(payloads, profile_s)
                    profile_paths += paths
                    drops += contender.receiver_drops()
                results[contender.name].append(rate)
                log(f"round {round_ + 1}: {contender.name}: {rate:,.0f} flows/s")
    finally:
        for contender in contenders:
            contender.close()
        for prefix in prefixes.values():
            admin.options(ignore_status=404).indices.delete(index=f"{prefix}-*", allow_no_indices=True)
            remove_templates_quietly(admin, prefix)
        admin.close()
    report(results, flows, args.rounds, es_version, drops, profile_paths)
    shutil.rmtree(workdir, ignore_errors=True)
    for path in profile_paths:
        path.unlink(missing_ok=True)
    return 0


def remove_templates_quietly(es: Elasticsearch, prefix: str) -> None:
    try:
        from flowsink.sinks.elasticsearch.index_templates import remove_templates

        remove_templates(es, TemplateSettings(name_prefix=prefix))
    except Exception as exc:  # leftovers are harmless templates under a bench prefix
        log(f"could not remove templates {prefix}-*: {exc}")


def report(
    results: dict[str, list[float]],
    flows: int,
    rounds: int,
    es_version: str,
    drops: float,
    profiles: list[Path],
) -> None:
    ceiling = statistics.median(results["parallel_bulk (ceiling)"])
    print("## End to end: UDP to searchable in Elasticsearch\n")
    print(
        f"{flows:,} NetFlow v5 flows per round ({flows // FLOWS_PER_DATAGRAM:,} datagrams of 30), {rounds} "
        f"interleaved rounds, Elasticsearch {es_version} (shared, single node), {os.cpu_count()} cores shared "
        "with the sender and Elasticsearch. Clock: first datagram sent (node) or first action (parallel_bulk) "
        "to the last document counted after a refresh.\n"
    )
    print("| contender | median flows/s | runs | ratio to parallel_bulk |")
    print("|---|---:|---|---:|")
    for name, rates in results.items():
        median = statistics.median(rates)
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"| {name} | {median:,.0f} | {runs} | {median / ceiling:.2f} |")
    on = results.get("node, deterministic ids")
    off = results.get("node, auto ids")
    if on and off:
        print(
            f"\nDeterministic ids (create, replay-safe) vs auto ids (index): "
            f"{statistics.median(on) / statistics.median(off):.2f}x the throughput."
        )
    print(f"\nUDP kernel drops + queue drops during the node runs: {drops:.0f}.")
    own, inclusive = top_frames(profiles)
    if own:
        print(
            "\n### Where a pipeline worker's time goes (py-spy, busy samples of the last deterministic-ids round)\n"
        )
        print("| own time | frame |\n|---:|---|")
        for frame, share in own:
            print(f"| {share:.0%} | `{frame}` |")
        print("\n| inclusive | flowsink frame |\n|---:|---|")
        for frame, share in inclusive:
            print(f"| {share:.0%} | `{frame}` |")
    else:
        print("\n(py-spy not available or no samples: `pip install py-spy` to see where the time goes)")


if __name__ == "__main__":
    sys.exit(main())
