"""Shared fixtures: a real Elasticsearch for the whole session, and private ones for tests that crash it.

The session node comes from ``scripts/elasticsearch.sh`` (Maven Central's integ-test-zip on a local JDK) unless
``ES_URL`` names a cluster to use instead. Tests that kill or stop Elasticsearch must use ``private_es`` so that
they never disturb the shared node other tests index into.

Markers: ``integration`` (real servers, tools or sockets) and ``slow``; ``make test-fast`` runs the rest.
A test that asks for Elasticsearch is marked ``integration`` here, whatever its module says.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from es_cluster_support import SecureCluster

REPO = Path(__file__).resolve().parent.parent
ES_SCRIPT = REPO / "scripts" / "elasticsearch.sh"
FIXTURES = REPO.parent / "shared" / "fixtures"
# every fixture that brings up or reaches an Elasticsearch (es, private_es, ...) depends on this one
ELASTICSEARCH_FIXTURE = "es_url"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses Elasticsearch ``integration`` before ``-m`` selects (so test-fast skips it)."""
    for item in items:
        if ELASTICSEARCH_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def _run_service_script(script: Path, action: str, env: dict[str, str], timeout: float = 300) -> str:
    """``bash script action`` with ``env`` added; its stdout, stripped. Its stderr (progress, the service's last
    log lines on failure) is passed on and raised with."""
    done = subprocess.run(
        ["bash", str(script), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/{script.name} {action} ({env}) failed:\n{done.stderr}")
    return done.stdout.strip()


def _run_es_script(action: str, name: str, port: int) -> str:
    return _run_service_script(ES_SCRIPT, action, {"ES_NAME": name, "ES_PORT": str(port)})


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    """URL of the shared Elasticsearch: ``ES_URL`` if set, else a local node started for the session."""
    if os.environ.get("ES_URL"):
        yield os.environ["ES_URL"].rstrip("/")
        return
    status = _run_es_script("status", "main", 9200)
    started_here = not status.startswith("running")
    url = _run_es_script("start", "main", 9200)
    try:
        yield url
    finally:
        if started_here and not os.environ.get("FLOWSINK_KEEP_ES"):
            _run_es_script("stop", "main", 9200)


@pytest.fixture(scope="session")
def es_version(es_url: str, pytestconfig: pytest.Config) -> str:
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url)
    nodes = client.nodes.info(node_id="_local")["nodes"]
    version = next(iter(nodes.values()))["version"]
    line = f"[conftest] integration tests use Elasticsearch {version} at {es_url}"
    sys.stderr.write(f"\n{line}\n")
    # Captured stderr shows only on failure; the terminal reporter puts the version in every test log.
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(line)
    return version


@pytest.fixture
def es(es_url: str, es_version: str):
    """An elasticsearch-py client on the shared node."""
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=60)
    yield client
    client.close()


@pytest.fixture
def unique_prefix() -> str:
    """A lower-case prefix for index names, so tests sharing one cluster never see each other's documents."""
    return f"t{uuid.uuid4().hex[:10]}"


def _free_port_pair(candidates: list[int], offset: int, what: str, count: int = 1) -> int:
    """The first of ``count`` consecutive ports from ``candidates`` that are free together with each port +
    ``offset``; several test runs may share a machine, so the candidates are tried in random order."""
    import random
    import socket

    candidates = list(candidates)
    random.shuffle(candidates)
    for port in candidates:
        try:
            for p in [q for first in range(port, port + count) for q in (first, first + offset)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {count} free port(s) for {what} in {min(candidates)}-{max(candidates) + offset}")


def _free_es_port(count: int = 1) -> int:
    """The first of ``count`` consecutive HTTP ports in 9210-9299 whose transport ports (+100) are free too."""
    return _free_port_pair(list(range(9210, 9300 - count + 1)), 100, "a private Elasticsearch", count)


@dataclass
class PrivateElasticsearch:
    """A node of its own, for tests that kill, stop or restart Elasticsearch."""

    name: str
    port: int
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        return _run_es_script("start", self.name, self.port)

    def stop(self) -> None:
        _run_es_script("stop", self.name, self.port)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        _run_es_script("kill", self.name, self.port)


@pytest.fixture
def private_es(es_url: str) -> Iterator[PrivateElasticsearch]:
    """A separate single node (own port, data dir and heap), stopped and wiped after the test."""
    if os.environ.get("ES_URL"):
        pytest.skip("ES_URL points at an external cluster; crash tests need a local node they may kill")
    node = PrivateElasticsearch(name=f"private-{uuid.uuid4().hex[:6]}", port=_free_es_port())
    node.start()
    try:
        yield node
    finally:
        node.stop()
        import shutil

        shutil.rmtree(REPO / ".run" / f"es-{node.name}", ignore_errors=True)


def _start_secure_cluster(nodes: int) -> SecureCluster:
    """A fresh secure instance on free ports; a start that lost a race for a port is tried once more elsewhere."""
    import shutil

    for attempt in (1, 2):
        cluster = SecureCluster(name=f"secure-{uuid.uuid4().hex[:6]}", port=_free_es_port(nodes), nodes=nodes)
        try:
            cluster.start()
            return cluster
        except RuntimeError as failed:
            cluster.stop()
            shutil.rmtree(cluster.instance_dir, ignore_errors=True)
            if attempt == 2 or "is taken by another process" not in str(failed):
                raise
    raise AssertionError("unreachable")


def _secure_cluster_fixture(nodes: int) -> Iterator[SecureCluster]:
    import shutil

    cluster = _start_secure_cluster(nodes)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.instance_dir, ignore_errors=True)


# A secure node costs a JVM start of tens of seconds (a 3-node cluster one or two minutes on a loaded machine) and
# 0.7-0.8 GiB of memory each: each kind is started once per session, at its first use, and every test gets it
# whole (the function-scoped fixtures below restart what an earlier test killed or stopped).
@pytest.fixture(scope="session")
def _secure_es_session() -> Iterator[SecureCluster]:
    yield from _secure_cluster_fixture(1)


@pytest.fixture(scope="session")
def _es_cluster_session() -> Iterator[SecureCluster]:
    yield from _secure_cluster_fixture(3)


@pytest.fixture
def secure_es(_secure_es_session: SecureCluster) -> SecureCluster:
    """A private single node with security on: ``url``, ``ca_certs``, ``username``/``password`` (superuser),
    ``env`` (the ``cluster.env`` assignments), ``client()``; ``kill(1)``/``start()``/``stop()`` if a test must."""
    _secure_es_session.heal()
    return _secure_es_session


@pytest.fixture
def es_cluster(_es_cluster_session: SecureCluster) -> SecureCluster:
    """A private 3-node secure cluster (replicas possible): ``urls``, ``ca_certs``, ``username``/``password``,
    ``env``, ``client()``, ``kill(n)``, ``start(n)``, ``start()``, ``stop()``, ``pid(n)``. Green with three nodes
    at the start of every test, whatever the test before did."""
    _es_cluster_session.heal()
    return _es_cluster_session


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/fixtures``: real-device datagrams (see its SOURCES.md)."""
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture
def flowsink_templates(es, unique_prefix: str) -> Iterator[str]:
    """flowsink's templates installed under ``unique_prefix`` (indices ``<prefix>-flows-*`` ... get its
    mappings); yields the prefix, then deletes the prefix's indices and templates."""
    from flowsink.sinks.elasticsearch.index_templates import (
        TemplateSettings,
        install_templates,
        remove_templates,
    )

    settings = TemplateSettings(name_prefix=unique_prefix, refresh_interval="1s")
    install_templates(es, settings)
    try:
        yield unique_prefix
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{unique_prefix}-*", expand_wildcards="all")
        remove_templates(es, settings)


# ---- Kafka ---------------------------------------------------------------------------------------------------

KAFKA_SCRIPT = REPO / "scripts" / "kafka.sh"


def _run_kafka_script(action: str, name: str, port: int) -> str:
    # A cold cache fetches the broker's jars from Maven Central first (about a minute here).
    return _run_service_script(
        KAFKA_SCRIPT, action, {"KAFKA_NAME": name, "KAFKA_PORT": str(port)}, timeout=600
    )


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap address of the shared broker: ``KAFKA_BOOTSTRAP`` if set, else ``scripts/kafka.sh``'s broker on
    127.0.0.1:9092 (started for the session when not running, and then stopped unless ``FLOWSINK_KEEP_KAFKA``).
    Never stop or kill it in a test: use ``private_kafka``."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    started_here = not _run_kafka_script("status", "main", 9092).startswith("running")
    bootstrap = _run_kafka_script("start", "main", 9092)
    try:
        yield bootstrap
    finally:
        if started_here and not os.environ.get("FLOWSINK_KEEP_KAFKA"):
            _run_kafka_script("stop", "main", 9092)


def _free_kafka_port() -> int:
    """A client port in 19100-19898 whose controller port (+1) is free too."""
    return _free_port_pair(list(range(19100, 19900, 2)), 1, "a private Kafka broker")


@dataclass
class PrivateKafka:
    """A broker of its own (own ports, data dir and log), for tests that kill, stop or restart Kafka."""

    name: str
    port: int
    bootstrap: str = field(init=False)
    instance_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.instance_dir = Path(os.environ.get("FLOWSINK_RUN_DIR", REPO / ".run")) / f"kafka-{self.name}"

    def __str__(self) -> str:
        return self.bootstrap

    def start(self) -> str:
        """Start (or keep) the broker; returns once a metadata request lists it. Data survive a restart."""
        return _run_kafka_script("start", self.name, self.port)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 60 s."""
        _run_kafka_script("stop", self.name, self.port)

    def kill(self) -> None:
        """SIGKILL, as a crash would; returns once the process is gone."""
        _run_kafka_script("kill", self.name, self.port)

    def status(self) -> str:
        """``running <bootstrap>`` or ``stopped``."""
        return _run_kafka_script("status", self.name, self.port)

    @property
    def pid(self) -> int | None:
        """The broker's pid while this instance's pid file names one."""
        try:
            return int((self.instance_dir / "kafka.pid").read_text())
        except (OSError, ValueError):
            return None


@pytest.fixture
def private_kafka() -> Iterator[PrivateKafka]:
    """A separate broker on its own ports, started; stopped and wiped after the test."""
    broker = PrivateKafka(name=f"private-{uuid.uuid4().hex[:6]}", port=_free_kafka_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        import shutil

        shutil.rmtree(broker.instance_dir, ignore_errors=True)


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """``make(partitions=6, bootstrap=None) -> name``: a fresh topic (one replica) with a leader for every
    partition, on ``bootstrap`` (default: the shared ``kafka_broker``); every topic made is deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    made: list[tuple[str, AdminClient]] = []

    def make(partitions: int = 6, bootstrap: str | None = None) -> str:
        # Asked for only here, so that tests on a private broker never start the shared one.
        admin = AdminClient({"bootstrap.servers": bootstrap or request.getfixturevalue("kafka_broker")})
        name = f"t{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=60)
        made.append((name, admin))
        # The controller answers before the broker's metadata cache has the new partitions' leaders.
        deadline = time.monotonic() + 30
        while True:
            topic = admin.list_topics(name, timeout=10).topics[name]
            leaders = [p.leader for p in topic.partitions.values()]
            if topic.error is None and len(leaders) == partitions and min(leaders) >= 0:
                return name
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} has no leader for its {partitions} partitions after 30 s")
            time.sleep(0.2)

    yield make
    for name, admin in made:
        # A private broker that its test stopped has taken its topics with it.
        with contextlib.suppress(Exception):
            admin.delete_topics([name])[name].result(timeout=30)
