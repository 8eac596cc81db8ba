"""Flows API: POST throughput and GET latency, against peers measured in the same run.

1. POST throughput: concurrent clients POST batches of 1,000 rows (24 hours x 500 keys) to one API process
   (``python -m flowsink.api``, read-your-writes on, and off). Peer: the same rows as plain documents through
   Elasticsearch's ``_bulk`` (1,000 per request, same concurrency): what storing rows costs with no queue, no
   validation, no exactness.
2. GET latency for an hour of 10k keys, and how it moves as accepted rows grow (100k rows, then more), for the
   same 10k keys. Peer: the naive design (every row a document, summed at read with a ``composite``
   aggregation), fed the same rows; its read cost grows with the rows.

Prints a markdown section; exits 0.

    python bench/bench_api.py --quick      # ~2 minutes: 8 s throughput runs, growth to 500k rows
    python bench/bench_api.py              # 20 s runs, growth to 2M rows (--max-rows 10000000 for the full target)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ensure_elasticsearch

BATCH = 1000
CLIENTS = 48
HOT_HOUR = 500_000
HOT_KEYS = 10_000
JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- data


def throughput_bodies(count: int, seed: int) -> list[bytes]:
    """Pre-serialised POST bodies (the client shares the two cores: it must not spend them on JSON)."""
    rng = random.Random(seed)
    keys = [(f"app-{rng.randrange(60)}", f"svc-{rng.randrange(60)}", f"vpc-{i % 7}") for i in range(500)]
    bodies = []
    for _ in range(count):
        rows = []
        for _ in range(BATCH):
            src, dst, vpc = rng.choice(keys)
            rows.append(
                {"src_app": src, "dest_app": dst, "vpc_id": vpc, "bytes_tx": rng.randrange(1 << 32),
                 "bytes_rx": rng.randrange(1 << 32), "hour": rng.randrange(24)}
            )  # fmt: skip
        bodies.append(orjson.dumps(rows))
    return bodies


def hot_batch(index: int) -> list[dict]:
    """Batch ``index`` of the hot hour: 1,000 of its 10k keys, round robin, so 10 batches cover every key."""
    start = (index * BATCH) % HOT_KEYS
    return [
        {"src_app": f"src-{k % 100:03d}", "dest_app": f"dst-{k // 100:03d}", "vpc_id": "vpc-hot",
         "bytes_tx": index + 1, "bytes_rx": 2 * index + 1, "hour": HOT_HOUR}
        for k in range(start, start + BATCH)
    ]  # fmt: skip


def bulk_body(index: str, rows_json: bytes) -> bytes:
    action = orjson.dumps({"index": {"_index": index}})
    return b"".join(action + b"\n" + orjson.dumps(row) + b"\n" for row in orjson.loads(rows_json))


# ---------------------------------------------------------------- the API process


class ApiServer:
    def __init__(self, es_url: str, prefix: str, *extra: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
        with socket_port() as port:
            self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "flowsink.api", "--port", str(self.port), "--es", es_url, "--index-prefix", prefix,
            "--queue-dir", str(self.workdir / "queue"), "--no-auth", "--rate-limit-rows-per-s", "1e12",
            "--rate-limit-burst-rows", "1000000000", *extra,
        ]  # fmt: skip
        self.log_file = open(self.workdir / "api.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT)

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        for _ in range(600):
            try:
                async with session.get(self.url + "/openapi.json") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("API server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log_file.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# ---------------------------------------------------------------- phase 1: POST throughput


async def drive(send, bodies: list[bytes], seconds: float) -> tuple[float, list[float]]:
    """Run CLIENTS senders over ``bodies`` for ``seconds``; returns (rows per second, request latencies)."""
    latencies: list[float] = []
    done_rows = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(1 << 62))

    async def client() -> None:
        nonlocal done_rows
        while time.perf_counter() < deadline:
            body = bodies[next(counter) % len(bodies)]
            started = time.perf_counter()
            await send(body)
            latencies.append(time.perf_counter() - started)
            done_rows += BATCH

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return done_rows / (time.perf_counter() - started), latencies


async def post_throughput(session, es_url: str, prefix: str, bodies, seconds: float, *extra: str) -> tuple:
    server = ApiServer(es_url, prefix, *extra)
    try:
        await server.wait_ready(session)

        async def send(body: bytes) -> None:
            async with session.post(
                server.url + "/flows", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                if r.status != 202:
                    raise RuntimeError(f"POST answered {r.status}: {await r.text()}")
                await r.read()

        return await drive(send, bodies, seconds)
    finally:
        server.stop()


async def bulk_throughput(session, es_url: str, index: str, bodies, seconds: float) -> tuple:
    bulk_bodies = [bulk_body(index, body) for body in bodies]

    async def send(body: bytes) -> None:
        async with session.post(
            f"{es_url}/_bulk", data=body, headers={"Content-Type": "application/x-ndjson"}
        ) as r:
            result = orjson.loads(await r.read())
            if r.status != 200 or result.get("errors"):
                raise RuntimeError(f"_bulk failed: {r.status}")

    return await drive(send, bulk_bodies, seconds)


# ---------------------------------------------------------------- phase 2: GET latency as rows grow


async def naive_read(es: AsyncElasticsearch, index: str) -> int:
    """The naive design's GET: sum every row of the hour per key at read time (composite aggregation)."""
    keys, after = 0, None
    while True:
        sources = [{k: {"terms": {"field": k}}} for k in ("src_app", "dest_app", "vpc_id")]
        composite = {"size": 10_000, "sources": sources, **({"after": after} if after else {})}
        response = await es.search(
            index=index, size=0, query={"term": {"hour": HOT_HOUR}},
            aggs={"k": {"composite": composite, "aggs": {"tx": {"sum": {"field": "bytes_tx"}},
                                                         "rx": {"sum": {"field": "bytes_rx"}}}}},
        )  # fmt: skip
        buckets = response["aggregations"]["k"]["buckets"]
        keys += len(buckets)
        after = response["aggregations"]["k"].get("after_key")
        if len(buckets) < 10_000:
            return keys


async def time_reads(read, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await read()
        latencies.append(time.perf_counter() - started)
    return latencies


async def wait_folded(es: AsyncElasticsearch, prefix: str) -> None:
    for _ in range(600):
        await es.indices.refresh(index=f"{prefix}-aggregates")
        if (await es.count(index=f"{prefix}-aggregates", query={"term": {"kind": "d"}}))["count"] == 0:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("compaction did not catch up")


async def send_all(session, api_url: str, es_url: str, naive: str, bodies: list[bytes]) -> None:
    """POST every body to the API and the same rows to the naive peer's index, 8 at a time."""
    pending = list(bodies)

    async def worker() -> None:
        while pending:
            body = pending.pop()
            async with session.post(api_url + "/flows", data=body, headers=JSON) as r:
                assert r.status == 202, await r.text()
            async with session.post(f"{es_url}/_bulk", data=bulk_body(naive, body), headers=NDJSON) as r:
                assert r.status == 200

    await asyncio.gather(*(worker() for _ in range(8)))


async def growth(session, es: AsyncElasticsearch, es_url: str, prefix: str, stages: list[int], reads: int):
    """GET p50/p99 of the hot hour (API and naive peer) after each stage of accepted rows."""
    naive = f"{prefix}-naive"
    await es.indices.create(
        index=naive,
        settings={"index": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}},
        mappings={"properties": {"src_app": {"type": "keyword"}, "dest_app": {"type": "keyword"},
                                 "vpc_id": {"type": "keyword"}, "bytes_tx": {"type": "long"},
                                 "bytes_rx": {"type": "long"}, "hour": {"type": "long"}}},
    )  # fmt: skip
    server = ApiServer(es_url, prefix, "--compact-interval-s", "2")
    results = []
    try:
        await server.wait_ready(session)
        sent = 0
        next_batch = 0
        for target in stages:
            log(f"  growth: sending up to {target:,} rows")
            bodies = []
            while sent < target:
                bodies.append(orjson.dumps(hot_batch(next_batch)))
                next_batch += 1
                sent += BATCH

            await send_all(session, server.url, es_url, naive, bodies)
            await wait_folded(es, prefix)
            await es.indices.refresh(index=naive)

            async def api_read() -> None:
                async with session.get(f"{server.url}/flows?hour={HOT_HOUR}") as r:
                    rows = orjson.loads(await r.read())
                    assert len(rows) == HOT_KEYS, len(rows)

            async def peer_read() -> None:
                assert await naive_read(es, naive) == HOT_KEYS

            await time_reads(api_read, 5)  # warm caches for both
            await time_reads(peer_read, 2)
            api = await time_reads(api_read, reads)
            peer = await time_reads(peer_read, max(5, reads // 4))
            results.append((sent, api, peer))
    finally:
        server.stop()
    return results


# ---------------------------------------------------------------- main


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


async def run(args: argparse.Namespace) -> list[str]:
    es_url, es_version = ensure_elasticsearch()
    prefix = f"bench-api-{uuid.uuid4().hex[:8]}"
    es = AsyncElasticsearch(es_url, serializer=OrjsonSerializer(), request_timeout=120)
    lines = [
        "## Flows API (`bench/bench_api.py`)",
        "",
        f"Elasticsearch {es_version}; {CLIENTS} concurrent clients, batches of {BATCH} rows; one API process "
        f"(`python -m flowsink.api`); {'quick run' if args.quick else 'full run'}. Client and server share the machine.",
        "",
    ]
    connector = aiohttp.TCPConnector(limit=64)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=120)
        ) as session:
            bodies = throughput_bodies(64, seed=1)
            log("POST throughput ...")
            runs: dict[str, list[tuple[float, list[float]]]] = {"api": [], "api_no_ryw": [], "bulk": []}
            for attempt in range(args.runs):
                runs["api"].append(
                    await post_throughput(session, es_url, f"{prefix}-r{attempt}", bodies, args.seconds)
                )
                runs["api_no_ryw"].append(
                    await post_throughput(
                        session, es_url, f"{prefix}-n{attempt}", bodies, args.seconds, "--no-read-your-writes"
                    )
                )
                runs["bulk"].append(
                    await bulk_throughput(session, es_url, f"{prefix}-bulk", bodies, args.seconds)
                )
            bulk_rate = statistics.median(rate for rate, _ in runs["bulk"])
            lines += [
                f"### POST /flows throughput (median of {args.runs} runs of {args.seconds:g} s)",
                "",
                "| contender | rows/s | ratio to raw `_bulk` | request p50 ms | request p99 ms |",
                "|---|---:|---:|---:|---:|",
            ]
            names = {
                "api": "POST /flows (durable + applied, read-your-writes: default)",
                "api_no_ryw": "POST /flows, read_your_writes off",
                "bulk": "peer: raw `_bulk` of the same rows, one doc per row",
            }
            for key, label in names.items():
                rate = statistics.median(r for r, _ in runs[key])
                latencies = [x for _, lat in runs[key] for x in lat]
                lines.append(
                    f"| {label} | {rate:,.0f} | {rate / bulk_rate:.2f} | {ms(quantile(latencies, 0.5))} | "
                    f"{ms(quantile(latencies, 0.99))} |"
                )
            log("GET latency as rows grow ...")
            stages = [100_000] + [s for s in (500_000, 2_000_000, 10_000_000) if s <= args.max_rows]
            grown = await growth(session, es, es_url, f"{prefix}-g", stages, args.reads)
            base_p99 = quantile(grown[0][1], 0.99)
            base_peer = quantile(grown[0][2], 0.99)
            lines += [
                "",
                f"### GET /flows?hour=N, an hour with {HOT_KEYS:,} keys, as accepted rows grow",
                "",
                f"{args.reads} sequential GETs per stage through HTTP after the compactor caught up; the naive peer "
                "(every row a document, composite aggregation at read) is timed on Elasticsearch directly, "
                "without HTTP or JSON rendering.",
                "",
                "| rows accepted | API p50 ms | API p99 ms | API p99 / p99 at 100k | naive p50 ms | naive p99 ms | "
                "naive p99 / p99 at 100k |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for sent, api, peer in grown:
                lines.append(
                    f"| {sent:,} | {ms(quantile(api, 0.5))} | {ms(quantile(api, 0.99))} | "
                    f"{quantile(api, 0.99) / base_p99:.2f} | {ms(quantile(peer, 0.5))} | {ms(quantile(peer, 0.99))} | "
                    f"{quantile(peer, 0.99) / base_peer:.2f} |"
                )
            if args.max_rows < 10_000_000:
                lines += [
                    "",
                    f"Growth measured to {stages[-1]:,} rows (`--max-rows 10000000` runs the full target).",
                ]
    finally:
        await es.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
        await es.close()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about two minutes)")
    parser.add_argument("--seconds", type=float, help="length of one throughput run")
    parser.add_argument("--runs", type=int, help="throughput runs per contender")
    parser.add_argument("--max-rows", type=int, help="grow the hot hour up to this many accepted rows")
    parser.add_argument("--reads", type=int, help="GETs timed per stage")
    args = parser.parse_args()
    args.seconds = args.seconds or (8.0 if args.quick else 20.0)
    args.runs = args.runs or (1 if args.quick else 3)
    args.max_rows = args.max_rows or (500_000 if args.quick else 2_000_000)
    args.reads = args.reads or (40 if args.quick else 200)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print("\n".join(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
