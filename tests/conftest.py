"""Shared fixtures: a real Elasticsearch for the whole session, and private ones for tests that crash it.

The session node comes from ``scripts/elasticsearch.sh`` (Maven Central's integ-test-zip on a local JDK) unless
``ES_URL`` names a cluster to use instead. Tests that kill or stop Elasticsearch must use ``private_es`` so that
they never disturb the shared node other tests index into.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from es_cluster_support import SecureCluster

REPO = Path(__file__).resolve().parent.parent
ES_SCRIPT = REPO / "scripts" / "elasticsearch.sh"
FIXTURES = REPO.parent / "shared" / "fixtures"


def _run_es_script(action: str, name: str, port: int) -> str:
    env = dict(os.environ, ES_NAME=name, ES_PORT=str(port))
    done = subprocess.run(
        ["bash", str(ES_SCRIPT), action], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/elasticsearch.sh {action} ({name}) failed:\n{done.stderr}")
    return done.stdout.strip()


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


def _free_es_port(count: int = 1) -> int:
    """The first of ``count`` consecutive HTTP ports in 9210-9299 whose transport ports (+100) are free too;
    several test runs may share a machine."""
    import random
    import socket

    candidates = list(range(9210, 9300 - count + 1))
    random.shuffle(candidates)
    for port in candidates:
        try:
            for p in [q for first in range(port, port + count) for q in (first, first + 100)]:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {count} free port(s) for a private Elasticsearch in 9210-9299")


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
    from flowsink.sinks.templates import TemplateSettings, install_templates, remove_templates

    settings = TemplateSettings(name_prefix=unique_prefix, refresh_interval="1s")
    install_templates(es, settings)
    try:
        yield unique_prefix
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{unique_prefix}-*", expand_wildcards="all")
        remove_templates(es, settings)
