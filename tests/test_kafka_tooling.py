"""scripts/kafka.sh and the Kafka fixtures on a real Apache Kafka broker, with flowsink's client (confluent-kafka).

What the Kafka sink and spine will rely on: a topic of 6 partitions takes records with acks=all from the
idempotent producer and reports each one's offset, or each one's error when the broker is away; records
acknowledged before a kill -9 are there after a restart, and so is a consumer group's committed position.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import _free_kafka_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
EXPORTERS = [f"192.0.2.{n}" for n in range(1, 7)]


def produce(bootstrap: str, topic: str, count: int, **config: object) -> tuple[list, list]:
    """``count`` records keyed by exporter with acks=all and idempotence; (acks, errors) from the delivery
    reports: acks as (partition, offset, value), errors as (KafkaError, value)."""
    acks: list[tuple[int, int, bytes]] = []
    errors: list[tuple[KafkaError, bytes]] = []

    def delivered(err, msg) -> None:
        if err is None:
            acks.append((msg.partition(), msg.offset(), msg.value()))
        else:
            errors.append((err, msg.value()))

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5, **config}
    )
    for n in range(count):
        producer.produce(
            topic, b"record-%06d" % n, EXPORTERS[n % len(EXPORTERS)].encode(), on_delivery=delivered
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    return acks, errors


def consume(
    bootstrap: str, topic: str, count: int, group: str, commit_after: int | None = None
) -> list[bytes]:
    """Read ``count`` records as member of ``group`` from its committed position (earliest without one), and
    commit what was read: after ``commit_after`` records (then stop), or after the last."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    stop_at = commit_after or count
    values: list[bytes] = []
    processed: dict[int, int] = {}  # partition -> offset of the last record read
    deadline = time.monotonic() + 60
    try:
        while len(values) < stop_at and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=min(500, stop_at - len(values)), timeout=1.0):
                assert msg.error() is None, msg.error()
                values.append(msg.value())
                processed[msg.partition()] = msg.offset()
        # The next offset to read, for each partition: commit(message=) would commit one partition only.
        done = [TopicPartition(topic, p, offset + 1) for p, offset in processed.items()]
        if done:
            consumer.commit(offsets=done, asynchronous=False)
    finally:
        consumer.close()
    return values


def script(action: str, name: str, port: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "kafka.sh"), action],
        env={**os.environ, "KAFKA_NAME": name, "KAFKA_PORT": str(port), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_topic_of_six_partitions_takes_and_gives_back_every_record(kafka_broker, kafka_topic):
    topic = kafka_topic(partitions=6)
    acks, errors = produce(kafka_broker, topic, 3000)

    assert errors == []
    assert len(acks) == 3000
    assert len({(p, o) for p, o, _ in acks}) == 3000, "two records acknowledged at one offset"
    assert {p for p, _, _ in acks} <= set(range(6))
    # One exporter's records stay on one partition, in order: what keeps its templates before its data.
    by_exporter: dict[bytes, set[int]] = {}
    for partition, _, value in acks:
        n = int(value.split(b"-")[1])
        by_exporter.setdefault(EXPORTERS[n % 6].encode(), set()).add(partition)
    assert all(len(parts) == 1 for parts in by_exporter.values()), by_exporter

    values = consume(kafka_broker, topic, 3000, group=f"g{uuid.uuid4().hex[:8]}")
    assert sorted(values) == sorted(v for _, _, v in acks)


def test_start_is_idempotent(private_kafka):
    pid = private_kafka.pid
    assert pid is not None
    started = time.monotonic()
    assert private_kafka.start() == private_kafka.bootstrap
    assert time.monotonic() - started < 30
    assert private_kafka.pid == pid, "a second start must reuse the running broker"
    assert private_kafka.status() == f"running {private_kafka.bootstrap}"


@pytest.mark.slow
def test_kill9_then_start_keeps_acknowledged_records_and_committed_offsets(private_kafka, kafka_topic):
    bootstrap = private_kafka.bootstrap
    topic = kafka_topic(partitions=6, bootstrap=bootstrap)
    group = f"g{uuid.uuid4().hex[:8]}"
    acks, errors = produce(bootstrap, topic, 2000)
    assert errors == [] and len(acks) == 2000
    first = consume(bootstrap, topic, 2000, group, commit_after=700)
    assert len(first) == 700

    pid = private_kafka.pid
    private_kafka.kill()
    assert not Path(f"/proc/{pid}").exists()
    assert not port_open(private_kafka.port)
    private_kafka.start()

    # The group resumes after what it committed; together the two reads are every acknowledged record, once.
    rest = consume(bootstrap, topic, 1300, group)
    assert sorted(first + rest) == sorted(v for _, _, v in acks)
    everything = consume(bootstrap, topic, 2000, f"g{uuid.uuid4().hex[:8]}")
    assert sorted(everything) == sorted(v for _, _, v in acks)


@pytest.mark.slow
def test_delivery_report_gives_each_record_its_error_while_the_broker_is_down(private_kafka, kafka_topic):
    bootstrap = private_kafka.bootstrap
    topic = kafka_topic(partitions=6, bootstrap=bootstrap)
    private_kafka.stop()

    acks, errors = produce(bootstrap, topic, 20, **{"message.timeout.ms": 3000})
    assert acks == []
    assert sorted(v for _, v in errors) == [b"record-%06d" % n for n in range(20)]
    assert {e.code() for e, _ in errors} == {KafkaError._MSG_TIMED_OUT}

    private_kafka.start()
    acks, errors = produce(bootstrap, topic, 20)
    assert errors == [] and len(acks) == 20


def test_stop_leaves_no_process(private_kafka):
    pid = private_kafka.pid
    private_kafka.stop()
    assert not Path(f"/proc/{pid}").exists()
    assert private_kafka.pid is None
    assert not port_open(private_kafka.port) and not port_open(private_kafka.port + 1)
    assert private_kafka.status() == "stopped"
    leftovers = subprocess.run(
        ["pgrep", "-f", str(private_kafka.instance_dir)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []
    private_kafka.stop()  # a second stop is a no-op


@pytest.mark.slow
def test_start_fails_with_the_broker_log_when_the_controller_port_is_taken(tmp_path):
    port = _free_kafka_port()
    name = f"private-{uuid.uuid4().hex[:6]}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        done = script("start", name, port, FLOWSINK_RUN_DIR=str(tmp_path))
    assert done.returncode == 1
    assert "exited during startup" in done.stderr
    assert "Address already in use" in done.stderr or "BindException" in done.stderr, done.stderr[-3000:]
    assert script("status", name, port, FLOWSINK_RUN_DIR=str(tmp_path)).stdout.strip() == "stopped"
    assert not (tmp_path / f"kafka-{name}" / "kafka.pid").exists()
