"""Kafka client throughput: confluent-kafka (librdkafka) against aiokafka (pure Python) on a real broker.

Each contender produces the same N ECS flow documents (about 1.1 KB of JSON each, keyed by exporter address, the
document id in a header) into a fresh topic of 6 partitions with acks=all and the idempotent producer, each in
the configuration its documentation recommends for throughput (lz4, 20 ms linger, 200 KB batches), collecting one
delivery report per record; then reads them back (partitions assigned directly, no group). Every record must be
acknowledged without error at a distinct offset, and every record must be read back, or the run fails.

Client CPU is the producing or consuming process's own (user + system, all threads: librdkafka's included);
the broker's is not counted. Each phase runs in a fresh process so that one client's background threads never
bill the other. Runs are interleaved (run 1 of every contender, then run 2 ...); medians are printed.

    python bench/bench_kafka_client.py            # 200k records, 3 runs each
    python bench/bench_kafka_client.py --quick    # 50k records, 3 runs each

The broker is KAFKA_BOOTSTRAP, or the shared one of ``scripts/kafka.sh`` (started, and then stopped, when it
was not running). aiokafka is measured only when installed (``pip install 'aiokafka[lz4]'``): flowsink does not
depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from flowsink.generate.documents import flow_documents

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 6
POOL = 20_000  # distinct documents, cycled: generating every record afresh would measure the generator
# Confluent's throughput advice (batch.size 100-200 KB, linger.ms 10-100, lz4), with acks=all kept: flowsink
# acknowledges a datagram only once the broker has every record of it.
LINGER_MS = 20
BATCH_BYTES = 200_000
COMPRESSION = "lz4"

Record = tuple[bytes, bytes, bytes]  # key, value, id header


def records(count: int) -> list[Record]:
    pool = []
    for doc in flow_documents(min(count, POOL)):
        doc.pop("_index")
        doc_id = doc.pop("_id").encode()
        pool.append((doc["observer"]["ip"].encode(), orjson.dumps(doc), doc_id))
    return [pool[n % len(pool)] for n in range(count)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    seconds: float
    cpu: float
    count: int
    problems: list[str] = field(default_factory=list)


def _check_acks(acks: list[tuple[int, int]], errors: list[str], count: int) -> list[str]:
    problems = [f"{len(errors)} delivery errors, first: {errors[0]}"] if errors else []
    if len(acks) != count:
        problems.append(f"{len(acks)} successful delivery reports for {count} records")
    if len(set(acks)) != len(acks):
        problems.append("two records were acknowledged at the same (partition, offset)")
    return problems


def _check_read(got: int, count: int, read: int, size: int) -> list[str]:
    if got != count or read != size:
        return [f"read {got} of {count} records, {read} of {size} bytes"]
    return []


# ---- confluent-kafka ---------------------------------------------------------------------------------------


def confluent_produce(bootstrap: str, topic: str, data: list[Record]) -> Phase:
    from confluent_kafka import Producer

    acks: list[tuple[int, int]] = []
    errors: list[str] = []

    def delivered(err, msg) -> None:  # one call per record, from poll()/flush(), with its offset or its error
        if err is None:
            acks.append((msg.partition(), msg.offset()))
        else:
            errors.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": COMPRESSION,
            "linger.ms": LINGER_MS,
            "batch.size": BATCH_BYTES,
            "queue.buffering.max.messages": 500_000,
        }
    )
    start, cpu = time.perf_counter(), cpu_seconds()
    for key, value, doc_id in data:
        while True:
            try:
                producer.produce(topic, value, key, headers=[("id", doc_id)], on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: serve delivery reports until there is room
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    phase = Phase(time.perf_counter() - start, cpu_seconds() - cpu, len(data))
    phase.problems = _check_acks(acks, errors, len(data)) + ([f"{left} records unflushed"] if left else [])
    return phase


def confluent_consume(bootstrap: str, topic: str, count: int, size: int) -> Phase:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    start, cpu = time.perf_counter(), cpu_seconds()
    got = read = 0
    deadline = time.monotonic() + 120
    while got < count and time.monotonic() < deadline:
        # consume() waits for num_messages or the timeout: never ask for more than are left.
        for msg in consumer.consume(num_messages=min(10_000, count - got), timeout=1.0):
            if msg.error() is None:
                got += 1
                read += len(msg.value())
    phase = Phase(time.perf_counter() - start, cpu_seconds() - cpu, got)
    consumer.close()
    phase.problems = _check_read(got, count, read, size)
    return phase


# ---- aiokafka ----------------------------------------------------------------------------------------------


def aiokafka_produce(bootstrap: str, topic: str, data: list[Record]) -> Phase:
    from aiokafka import AIOKafkaProducer

    async def run() -> Phase:
        acks: list[tuple[int, int]] = []
        errors: list[str] = []
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type=COMPRESSION,
            linger_ms=LINGER_MS,
            max_batch_size=BATCH_BYTES,
        )
        await producer.start()
        start, cpu = time.perf_counter(), cpu_seconds()
        try:
            # send() queues the record (waiting only for buffer room) and returns a future per record that
            # resolves to its RecordMetadata (partition, offset) or raises its error.
            futures = [
                await producer.send(topic, value, key=key, headers=[("id", i)]) for key, value, i in data
            ]
            for outcome in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    errors.append(repr(outcome))
                else:
                    acks.append((outcome.partition, outcome.offset))
            phase = Phase(time.perf_counter() - start, cpu_seconds() - cpu, len(data))
        finally:
            await producer.stop()
        phase.problems = _check_acks(acks, errors, len(data))
        return phase

    return asyncio.run(run())


def aiokafka_consume(bootstrap: str, topic: str, count: int, size: int) -> Phase:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> Phase:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        got = read = 0
        try:
            partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            start, cpu = time.perf_counter(), cpu_seconds()
            deadline = time.monotonic() + 120
            while got < count and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for batch in batches.values():
                    got += len(batch)
                    read += sum(len(record.value) for record in batch)
            phase = Phase(time.perf_counter() - start, cpu_seconds() - cpu, got)
        finally:
            await consumer.stop()
        phase.problems = _check_read(got, count, read, size)
        return phase

    return asyncio.run(run())


# ---- harness -----------------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    produce: Callable[[str, str, list[Record]], Phase]
    consume: Callable[[str, str, int, int], Phase]
    produce_rate: list[float] = field(default_factory=list)
    produce_cpu: list[float] = field(default_factory=list)
    consume_rate: list[float] = field(default_factory=list)
    consume_cpu: list[float] = field(default_factory=list)


def _child(target: Callable[..., Phase], args: tuple, out: multiprocessing.Queue) -> None:
    try:
        out.put(target(*args))
    except BaseException as exc:
        out.put(exc)
        raise


def in_fresh_process(target: Callable[..., Phase], *args: object) -> Phase:
    """Run one phase in a forked process, so its CPU figure is its own and no client threads outlive it."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child, args=(target, args, out))
    child.start()
    result = out.get(timeout=600)
    child.join(60)
    if isinstance(result, BaseException):
        raise result
    return result


def ensure_broker() -> tuple[str, bool]:
    """(bootstrap, started_here): KAFKA_BOOTSTRAP, or the shared broker of scripts/kafka.sh."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"], False
    script = ["bash", str(REPO / "scripts" / "kafka.sh")]
    status = subprocess.run([*script, "status"], capture_output=True, text=True, check=False).stdout
    done = subprocess.run([*script, "start"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit("bench_kafka_client.py: scripts/kafka.sh start failed")
    return done.stdout.strip().splitlines()[-1], not status.startswith("running")


def create_topic(bootstrap: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=60)
    # Metadata reaches the broker's cache a moment after the controller answers.
    deadline = time.monotonic() + 30
    while len(admin.list_topics(topic, timeout=10).topics[topic].partitions) < PARTITIONS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic} has not got its {PARTITIONS} partitions")
        time.sleep(0.2)
    return topic


def delete_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap}
    )  # held: a dropped client cancels its pending requests
    admin.delete_topics([topic])[topic].result(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50k records")
    args = parser.parse_args()
    count = 50_000 if args.quick else args.records

    contenders = [Contender("confluent-kafka", confluent_produce, confluent_consume)]
    if importlib.util.find_spec("aiokafka") is not None:
        contenders.append(Contender("aiokafka", aiokafka_produce, aiokafka_consume))
    else:
        print("aiokafka is not installed: measuring confluent-kafka alone", file=sys.stderr)

    bootstrap, started_here = ensure_broker()
    data = records(count)
    size = sum(len(value) for _, value, _ in data)
    failures: list[str] = []
    try:
        for run in range(1, args.runs + 1):
            for c in contenders:
                topic = create_topic(bootstrap)
                try:
                    produced = in_fresh_process(c.produce, bootstrap, topic, data)
                    consumed = in_fresh_process(c.consume, bootstrap, topic, count, size)
                finally:
                    delete_topic(bootstrap, topic)
                failures += [f"{c.name} run {run}: {p}" for p in produced.problems + consumed.problems]
                c.produce_rate.append(count / produced.seconds)
                c.produce_cpu.append(produced.cpu / count * 100_000)
                c.consume_rate.append(count / consumed.seconds)
                c.consume_cpu.append(consumed.cpu / count * 100_000)
                print(
                    f"run {run} {c.name}: produce {c.produce_rate[-1]:,.0f} rec/s "
                    f"({c.produce_cpu[-1]:.2f} CPU-s/100k), consume {c.consume_rate[-1]:,.0f} rec/s "
                    f"({c.consume_cpu[-1]:.2f} CPU-s/100k)",
                    file=sys.stderr,
                )
    finally:
        if started_here:
            subprocess.run(["bash", str(REPO / "scripts" / "kafka.sh"), "stop"], check=False)

    import confluent_kafka

    med = statistics.median
    versions = {
        "confluent-kafka": f"{importlib.metadata.version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})",
        "aiokafka": importlib.metadata.version("aiokafka") if len(contenders) == 2 else "",
    }
    lines = [
        "## Kafka clients: confluent-kafka against aiokafka",
        "",
        f"{count:,} records of {size / count:.0f} bytes (ECS flow documents), {PARTITIONS} partitions, one broker at "
        f"{bootstrap}; acks=all, idempotent, {COMPRESSION}, linger {LINGER_MS} ms, batches of {BATCH_BYTES:,} "
        f"bytes; client CPU only, client start-up excluded; medians of {args.runs} runs.",
        "",
        "| client | produce rec/s | produce CPU-s per 100k | consume rec/s | consume CPU-s per 100k |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in contenders:
        lines.append(
            f"| {c.name} {versions[c.name]} | {med(c.produce_rate):,.0f} | {med(c.produce_cpu):.2f} | "
            f"{med(c.consume_rate):,.0f} | {med(c.consume_cpu):.2f} |"
        )
    if len(contenders) == 2:
        fast, slow = contenders
        lines += [
            "",
            f"confluent-kafka / aiokafka: produce {med(fast.produce_rate) / med(slow.produce_rate):.1f}x the records/s "
            f"at {med(slow.produce_cpu) / med(fast.produce_cpu):.1f}x less CPU; consume "
            f"{med(fast.consume_rate) / med(slow.consume_rate):.1f}x the records/s at "
            f"{med(slow.consume_cpu) / med(fast.consume_cpu):.1f}x less CPU.",
        ]
    if failures:
        lines += ["", "**Failed checks:**", *[f"- {f}" for f in failures]]
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
